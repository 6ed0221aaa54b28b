"""Benchmark: saliency maps for a dataset on Dask workers against one process (issue 14).

    python examples/bench_dask.py [--images 1280] [--chunk 64] [--rounds 2]

The job is the one ``minicnn attribute`` runs: read ``--images`` PNG files (the first images
of the cluttered test split, written to a temporary folder; random pixels if the Fashion-MNIST
files are absent), compute the vanilla gradient of the predicted class with the shipped model,
write the maps and predictions into a Zarr store, ``--chunk`` images per task. Three ways:

- (a) one process, minicnn's 2 threads (``MINICNN_NUM_THREADS=2``), no Dask: the very task
  function of the workers (``attribute_chunk``) called chunk after chunk;
- (b) a LocalCluster of 1 worker process x 1 thread;
- (c) a LocalCluster of 2 worker processes x 1 thread each.

Each runs in its own subprocess, after an untimed warm-up (Numba's kernels loaded or
compiled, the model loaded on every worker); the timed part is from the first task submitted
to the last chunk marked complete, plus the predictions CSV. ``--rounds`` rounds alternate
the three; the median is reported. The targets: (c) / (b) >= 1.8 and (c) within 15% of (a).

It also measures the scheduler's cost per task on the 2-worker cluster: the time of
``--noop`` tasks that do nothing, divided by their number (the scheduler's throughput), and
the round trip of one tiny task (submit to result). From those figures it prints the
throughput to expect on 10 and 100 machines and the smallest chunk that keeps the scheduler
off the critical path. Rerun on a quiet machine before quoting the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPS = {"a": "1 process, minicnn 2 threads, no Dask",
          "b": "LocalCluster 1 worker x 1 thread",
          "c": "LocalCluster 2 workers x 1 thread"}


def write_images(folder: Path, n: int) -> str:
    """n 64x64 PNGs -> what they are."""
    import numpy as np
    from PIL import Image
    try:
        from minicnn.io.datasets import make_cluttered
        pixels = make_cluttered(range(n), "test", 0).images           # (n, 64, 64, 3)
        kind = "cluttered test split"
    except FileNotFoundError:
        pixels = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        kind = "random pixels (no Fashion-MNIST files)"
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / f"{i:05d}.png")
    return kind


# ----------------------------------------------------------------------------- the workers

def single_process(folder: str, work: str, chunk: int) -> float:
    """(a): the job's tasks called in this process, one after another -> seconds."""
    from minicnn.cluster import store
    from minicnn.cluster.attribute import (ChunkTask, attribute_chunk, predictions_path,
                                           write_predictions)
    from minicnn.cluster.sources import folder_source
    from minicnn.cluster.workers import file_sha256
    from minicnn.engine.kernels.fast import allocator
    from minicnn.io.images import Preprocess
    from minicnn.io.weights import default_weights_path, load
    allocator.tune()  # as the minicnn command does (and its Dask workers)

    def job(out, limit=None):
        weights = default_weights_path().resolve()
        model = load(weights)
        prep = Preprocess.from_meta(model.meta)
        src, names = folder_source(folder)
        names = names[:limit] if limit else names
        sha = file_sha256(weights)
        attrs = store.identity(sha, weights, ["gradient"], (prep.crop, prep.crop), chunk,
                               names, src.describe())
        group = store.prepare(out, attrs, names, overwrite=True)
        start = time.perf_counter()
        for k, (a, b) in enumerate(store.chunk_bounds(len(names), chunk)):
            attribute_chunk(ChunkTask(k, a, b, tuple(names[a:b]), src, str(out), None, sha,
                                      ("gradient",)))
        write_predictions(group, predictions_path(out))
        return time.perf_counter() - start

    job(Path(work) / "warm.zarr", limit=chunk)                          # untimed warm-up
    return job(Path(work) / "timed.zarr")


def on_cluster(folder: str, work: str, chunk: int, workers: int, noop: int) -> dict:
    """(b) or (c): attribute_dataset on a LocalCluster -> {"seconds", and for 2 workers the
    scheduler's cost per task}."""
    from minicnn.cluster.attribute import attribute_dataset
    from minicnn.cluster.client import connect
    from minicnn.cluster.sources import folder_source
    _, names = folder_source(folder)
    warm = Path(work) / "warm"
    warm.mkdir()
    for name in names[:chunk * workers * 2]:
        shutil.copy(Path(folder) / name, warm / name)
    out = {}
    with connect(workers=workers) as client:
        client.wait_for_workers(workers)
        attribute_dataset(warm, ["gradient"], Path(work) / "warm.zarr", chunk=chunk,
                          client=client)                                # untimed warm-up
        for addr in client.scheduler_info()["workers"]:     # and surely on every worker
            client.submit(_warm, chunk, pure=False, workers=[addr]).result()
        start = time.perf_counter()
        attribute_dataset(folder, ["gradient"], Path(work) / "timed.zarr", chunk=chunk,
                          client=client)
        out["seconds"] = time.perf_counter() - start
        if noop:
            out.update(scheduler_cost(client, noop))
    return out


def _warm(n: int) -> None:
    """The model loaded in this worker thread and the kernels compiled, on n images."""
    import numpy as np

    from minicnn import saliency
    from minicnn.cluster.workers import file_sha256, model_for
    from minicnn.io.weights import default_weights_path
    model = model_for(None, file_sha256(default_weights_path()))
    x = np.random.default_rng(0).normal(size=(n, 3, 64, 64)).astype(np.float32)
    saliency.attribute(model, x, ["gradient"])


def _nothing(i):
    return i


def scheduler_cost(client, n: int) -> dict:
    """Per-task seconds of n no-op tasks submitted together, and one tiny task's round trip
    (median of 20)."""
    client.gather(client.map(_nothing, range(50), pure=False))          # warm
    start = time.perf_counter()
    client.gather(client.map(_nothing, range(n), pure=False))
    per_task = (time.perf_counter() - start) / n
    trips = []
    for i in range(20):
        start = time.perf_counter()
        client.submit(_nothing, i, pure=False).result()
        trips.append(time.perf_counter() - start)
    return {"per_task": per_task, "round_trip": statistics.median(trips)}


def run_setup(setup: str, folder: Path, args) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.update(MINICNN_NUM_THREADS="2" if setup == "a" else "1")
    with tempfile.TemporaryDirectory(prefix="bench_dask_") as work:
        done = subprocess.run([sys.executable, __file__, "--setup", setup, "--folder",
                               str(folder), "--work", work, "--chunk", str(args.chunk),
                               "--noop", str(args.noop)], capture_output=True, text=True,
                              env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"setup {setup} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1280)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--noop", type=int, default=2000, help="no-op tasks for the scheduler cost")
    p.add_argument("--setup", choices=sorted(SETUPS), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.setup:
        if args.setup == "a":
            result = {"seconds": single_process(args.folder, args.work, args.chunk)}
        else:
            result = on_cluster(args.folder, args.work, args.chunk,
                                1 if args.setup == "b" else 2,
                                args.noop if args.setup == "c" else 0)
        print(json.dumps(result))
        return
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_dask_images_") as tmp:
        kind = write_images(Path(tmp) / "images", args.images)
        rounds = [{s: run_setup(s, Path(tmp) / "images", args) for s in SETUPS}
                  for _ in range(args.rounds)]
    seconds = {s: statistics.median(r[s]["seconds"] for r in rounds) for s in SETUPS}
    rate = {s: args.images / seconds[s] for s in SETUPS}
    per_task = statistics.median(r["c"]["per_task"] for r in rounds)
    trip = statistics.median(r["c"]["round_trip"] for r in rounds)
    print(f"# minicnn attribute on Dask: {args.images} images ({kind}), gradient, shipped "
          f"model, chunk {args.chunk}, {args.rounds} rounds (median); load average "
          f"{load:.1f} at the start\n")
    print("| setup | seconds | images/s |")
    print("|---|---|---|")
    for s, label in SETUPS.items():
        print(f"| ({s}) {label} | {seconds[s]:.2f} | {rate[s]:.0f} |")
    print(f"\n(c)/(b) throughput: {rate['c'] / rate['b']:.2f}x (target >= 1.8)")
    print(f"(c)/(a) throughput: {rate['c'] / rate['a']:.2f} (target: within 15%, >= 0.85)")
    for r in rounds:
        print(f"  round: (c)/(b) {r['b']['seconds'] / r['c']['seconds']:.2f}, (c)/(a) "
              f"{r['a']['seconds'] / r['c']['seconds']:.2f}")
    per_worker = rate["b"]
    chunk_seconds = args.chunk / per_worker
    print(f"\nscheduler: {per_task * 1e3:.2f} ms per task ({1 / per_task:.0f} tasks/s) for "
          f"{args.noop} no-op tasks; round trip of one tiny task {trip * 1e3:.1f} ms")
    print(f"one worker: {per_worker:.0f} images/s, so a chunk of {args.chunk} takes "
          f"{chunk_seconds * 1e3:.0f} ms")
    for machines in (10, 100):
        workers = 2 * machines
        compute = workers * per_worker                       # if the scheduler keeps up
        scheduler_limit = args.chunk / per_task              # images/s the scheduler hands out
        smallest = workers * per_task * per_worker           # chunk where the two are equal
        expected = min(compute, scheduler_limit)
        print(f"{machines} machines x 2 cores ({workers} workers): {expected:,.0f}"
              f" images/s expected (workers {compute:,.0f}, scheduler at chunk {args.chunk} "
              f"{scheduler_limit:,.0f}); chunk >= {10 * smallest:,.0f} images keeps the "
              f"scheduler under 10% busy")
    print(f"\nLoad average at the end {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
