"""``attribute_dataset``: saliency maps for every image of a folder or of the test split,
computed by Dask workers and written by them into a Zarr store (``store.py``).

The driver (the process that calls this) checks everything first: the methods, the
images, the model, the store (a store of another model or method set is refused unless
``overwrite``), the scheduler. It then submits one task per chunk of images still to do:
a task names its images, the store and the weights file; the worker reads the images,
takes the model from its cache (loaded once per worker thread, ``workers.model_for``),
runs ``saliency.attribute`` (one forward pass shared by the one-pass methods) on the
predicted class, and writes its chunk of every array, then the chunk's completion mark.
The driver only counts finished chunks for the progress bar: the maps never pass through
it. At the end it writes the predictions as a CSV file beside the store
(``predictions_path``: ``maps.zarr`` -> ``maps_predictions.csv``) from the store's small arrays.

A worker that dies is replaced and its tasks run again elsewhere: Dask does that in a
running cluster, ``client.connect`` in a LocalCluster that is still starting. A chunk is
written whole before it is marked, so nothing is lost or counted twice. A job interrupted
some other way, or whose workers cannot start at all (``WorkerStartError``), is resumed
by running it again: the chunks marked complete are skipped.

An image that cannot be read is recorded (``ok`` False, the reason in ``error``, a NaN
map, class -1) and the job goes on.
"""
from __future__ import annotations

import csv
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minicnn._checks import check_int
from minicnn._progress import progress_bar
from minicnn.cluster import store
from minicnn.cluster.client import WorkerStartError, connect
from minicnn.cluster.sources import Source, folder_source, read_pixels, split_source
from minicnn.cluster.workers import file_sha256, model_for

__all__ = ["attribute_dataset", "ChunkTask", "attribute_chunk", "write_predictions",
           "predictions_path", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 64   # images per task; see the chunk-size rule in the benchmarks


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs for chunk k of a job (small: names, not pixels)."""

    k: int
    start: int
    stop: int
    names: tuple          # the images of the chunk
    source: Source
    store: str            # the store's path, as every worker sees it
    model: str | None     # the weights file (None: the shipped model of the worker's install)
    model_sha256: str
    methods: tuple


def attribute_chunk(task: ChunkTask) -> int:
    """Run on a worker: compute and write chunk ``task.k`` -> how many images of it could
    not be read."""
    from minicnn import saliency
    from minicnn.io.images import Preprocess, to_input
    model = model_for(task.model, task.model_sha256)
    prep = Preprocess.from_meta(model.meta)
    pixels, errors = read_pixels(task.source, task.names, prep)   # (B, H, W, 3)
    ok = np.array([e is None for e in errors])
    B, H, W = len(task.names), prep.crop, prep.crop
    maps = {name: np.full((B, H, W), np.nan, np.float32) for name in task.methods}
    predictions = {"class": np.full(B, -1, np.int32), "score": np.full(B, np.nan, np.float32),
                   "probability": np.full(B, np.nan, np.float32), "ok": ok,
                   "error": np.array([e or "" for e in errors], dtype=str)}
    if ok.any():
        x = to_input(pixels[ok], prep)                                 # (b, 3, H, W)
        scores, targets, results = saliency.attribute(model, x, list(task.methods))
        probs = saliency.softmax(scores)                               # (b, K)
        rows = np.arange(len(targets))
        predictions["class"][ok] = targets
        predictions["score"][ok] = scores[rows, targets]
        predictions["probability"][ok] = probs[rows, targets]
        for name in task.methods:
            maps[name][ok] = saliency.to_map(results[name], (H, W))    # (b, H, W)
    store.write_chunk(store.open_store(task.store, "r+"), task.k, task.start, task.stop,
                      maps, predictions)
    return int((~ok).sum())


def attribute_dataset(source=None, methods=("gradient",), out="maps.zarr", *, split=None,
                      n=None, model=None, workers=None, scheduler=None,
                      chunk: int = DEFAULT_CHUNK, overwrite: bool = False,
                      progress: bool = False, data_dir=None, client=None) -> dict:
    """Maps of ``methods`` for every image of ``source`` (a folder, recursively) or of the
    first ``n`` images of the cluttered test split (``split="test"``), into the Zarr store
    ``out``.

    - methods: names in ``saliency.METHODS`` (a list or a comma-separated string)
    - model: a weights .npz path, every worker seeing the same file (None: the shipped model)
    - workers: a LocalCluster of that many worker processes (default: one per CPU); or
      scheduler: the address of an existing cluster; or client: a distributed.Client to use
    - chunk: images per task and per Zarr chunk
    - overwrite: replace a store of another model, method set or image list
    - progress: a progress bar (chunks done) on stderr
    Raises, before any work: SourceError (no folder, no image, -n too large),
    DatasetNotFoundError, WeightsFileError, StoreError, OutputPathError, SchedulerError,
    ValueError / TypeError for bad arguments. WorkerStartError (a SchedulerError) if the
    LocalCluster cannot start its workers: the store is kept, to be resumed.
    Returns {"store", "csv" (the predictions, beside the store), "n_images", "chunks",
    "computed" (indices of the chunks computed by this call), "skipped" (chunks already
    complete), "unreadable" [(image, reason)], "seconds"}.
    """
    from minicnn.io.atomic import check_output_dir, check_output_file
    from minicnn.io.images import Preprocess
    from minicnn.io.weights import default_weights_path, load
    from minicnn.saliency import get_method
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = [get_method(m).name for m in methods]
    if not methods:
        raise ValueError("methods must name at least one method")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods holds a name twice: {','.join(methods)}")
    chunk = check_int(chunk, "chunk", 1)
    if (source is None) == (split is None):
        raise ValueError("give a source folder or split='test', not both and not neither")
    path = Path(out)
    if path.is_file():
        raise store.StoreError(f"{path}: is a file, not a Zarr store (a folder)")
    check_output_dir(path)
    check_output_file(predictions_path(path), ".csv")
    weights = Path(default_weights_path() if model is None else model).resolve()
    loaded = load(weights)
    prep = Preprocess.from_meta(loaded.meta)
    if split is not None:
        if split != "test":
            raise ValueError(f"unknown split {split!r}; the only one is 'test'")
        if n is None:
            raise ValueError("split='test' needs n, the number of images")
        seed = int(loaded.meta.get("dataset", {}).get("seed", 0))
        src, names = split_source(n, seed, prep, data_dir)
    else:
        src, names = folder_source(source)
    sha = file_sha256(weights)
    attrs = store.identity(sha, weights, methods, (prep.crop, prep.crop), chunk, names,
                           src.describe(), loaded.meta.get("class_names", ()))
    group = store.prepare(path, attrs, names, overwrite)
    done = store.done_chunks(group)
    bounds = store.chunk_bounds(len(names), chunk)
    todo = [k for k in range(len(bounds)) if not done[k]]
    store_path = str(path.resolve())
    tasks = [ChunkTask(k, a, b, tuple(names[a:b]), src, store_path,
                       None if model is None else str(weights), sha, tuple(methods))
             for k, (a, b) in ((k, bounds[k]) for k in todo)]
    started = time.perf_counter()
    if tasks:
        if client is not None:
            _run(client, tasks, progress)
        else:
            try:
                with connect(workers, scheduler) as new:
                    _run(new, tasks, progress)
            except WorkerStartError as e:
                raise WorkerStartError(
                    f"{e}; {path} keeps its {len(bounds) - len(todo)} complete chunk(s) "
                    f"of {len(bounds)}: run the same command again to resume it") from e
    seconds = time.perf_counter() - started
    csv_path, unreadable = write_predictions(group, predictions_path(path))
    return {"store": path, "csv": csv_path, "n_images": len(names), "chunks": len(bounds),
            "computed": todo, "skipped": len(bounds) - len(todo), "unreadable": unreadable,
            "seconds": seconds}


def _run(client, tasks, progress: bool) -> None:
    """Submit the tasks; count them as they finish; the first failure stops the job."""
    from distributed import as_completed
    job = uuid.uuid4().hex[:8]
    futures = [client.submit(attribute_chunk, t, key=f"minicnn-chunk-{t.k}-{job}",
                             pure=False) for t in tasks]
    images = {f.key: t.stop - t.start for f, t in zip(futures, tasks)}
    with progress_bar(sum(images.values()), "attribute", progress) as bar:
        try:
            for future in as_completed(futures):
                future.result()              # re-raises a task's exception here
                bar.update(images[future.key])
        finally:
            client.cancel([f for f in futures if not f.done()])


def predictions_path(store_path) -> Path:
    """Where the predictions CSV of a store goes: beside it, not inside (Zarr would warn
    about a file it does not know): maps.zarr -> maps_predictions.csv."""
    store_path = Path(store_path)
    return store_path.parent / f"{store_path.stem}_predictions.csv"


def write_predictions(group, path) -> tuple[Path, list]:
    """The predictions CSV from the store (written whole or not at all) -> (path, [(image,
    reason) of each unreadable image])."""
    from minicnn.io.atomic import atomic_write
    names = group["class"][:], group["score"][:], group["probability"][:]
    classes, scores, probs = names
    ok, errors, images = group["ok"][:], group["error"][:], group["image"][:]
    class_names = list(group.attrs.get("class_names", []))
    done = store.done_chunks(group)
    chunk = int(group.attrs["chunk"])

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            w = csv.writer(f)
            w.writerow(["index", "image", "ok", "class", "class_name", "score", "probability",
                        "error"])
            for i in range(len(images)):
                if not done[i // chunk]:
                    continue                        # not computed (an interrupted job)
                c = int(classes[i])
                w.writerow([i, images[i], bool(ok[i]), c,
                            class_names[c] if 0 <= c < len(class_names) else "",
                            f"{scores[i]:.6g}", f"{probs[i]:.6g}", errors[i]])
    unreadable = [(str(images[i]), str(errors[i])) for i in range(len(images))
                  if done[i // chunk] and not ok[i]]
    return atomic_write(path, write), unreadable
