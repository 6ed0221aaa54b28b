"""Benchmark: converting a VGG19-sized ONNX file (575 MB) with ``minicnn.io.onnx``, time and
peak memory, against the straightforward way measured in the same run; and the converted
network's speed against the same network built by minicnn's own layout.

The file: the onnx wheel's light VGG19 (onnx/backend/test/data/light/light_vgg19.onnx, weights
as ConstantOfShape nodes) with every weight replaced by seeded random float32 values of its
shape, written once into the cache folder (``--file`` to give another).

Each measurement runs in its own fresh process, which reports its wall time and its peak
resident memory (ru_maxrss): the two converters would otherwise share one process's peak.

- minicnn: ``convert_onnx(file, out.npz)``, the whole ``minicnn convert``: the initializers'
  bytes read straight into the layers' arrays, the rest parsed by onnx, the .npz written;
- baseline: ``onnx.load(file)`` and ``numpy_helper.to_array`` of every initializer, what a
  converter built on the onnx package's loader holds before it has built anything;
- speed: forward + gradient to the input at 1 x 3 x 224 x 224, the network from the .npz and
  ``minicnn.io.zoo.build("vgg19")`` (torchvision's VGG19 layout, random weights), the median
  of ``--reps`` repetitions each.

The issue's targets: conversion < 20 s and peak < 2 x the file's size. Numbers depend on the
machine and its load; rerun on a quiet one.

Usage:  python examples/bench_onnx.py [--file VGG19.onnx] [--reps 3] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def make_vgg19(path: Path, seed: int = 0) -> Path:
    """The light VGG19 with seeded random weights (He's scale), written to ``path``."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    model = onnx.load(light / "light_vgg19.onnx")
    shapes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            nodes.append(node)
            continue
        shape = tuple(int(d) for d in shapes[node.input[0]])
        value = rng.standard_normal(shape, dtype=np.float32)
        value *= np.float32(np.sqrt(2.0 / np.prod(shape[1:])) if len(shape) > 1 else 0.01)
        weights.append(numpy_helper.from_array(value, node.output[0]))
        del value
    kept = [t for t in model.graph.initializer if not t.name.endswith("__SHAPE")]
    inputs = [i for i in model.graph.input if not i.name.endswith("__SHAPE")]
    graph = helper.make_graph(nodes, "vgg19", inputs, list(model.graph.output), kept + weights)
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = 7
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, path)
    return path


# --- what each fresh process runs ---------------------------------------------------------

def _peak_mb():
    """This process's peak resident memory, MiB: Linux's VmHWM, which starts afresh at exec
    (ru_maxrss would carry over the parent's peak into the child)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024                          # kB -> MiB
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def worker_minicnn(file, out):
    import minicnn  # noqa: F401  (imports are not the conversion)
    from minicnn.io.onnx import convert_onnx
    start_mb, t = _peak_mb(), time.perf_counter()
    convert_onnx(file, out)
    return {"seconds": time.perf_counter() - t, "peak_mb": _peak_mb(), "start_mb": start_mb}


def worker_baseline(file, out):
    import onnx
    from onnx import numpy_helper
    start_mb, t = _peak_mb(), time.perf_counter()
    model = onnx.load(file)
    arrays = [numpy_helper.to_array(tensor) for tensor in model.graph.initializer]
    assert arrays
    return {"seconds": time.perf_counter() - t, "peak_mb": _peak_mb(), "start_mb": start_mb}


def worker_speed(npz, reps):
    import numpy as np
    import minicnn
    from minicnn.io import zoo
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    times = {}
    for name, model in (("converted", minicnn.load(npz)), ("zoo vgg19", zoo.build("vgg19"))):
        runs = []
        for _ in range(reps + 1):                   # the first run compiles and warms up
            t = time.perf_counter()
            scores = model.forward(x)
            one_hot = np.zeros_like(scores)
            one_hot[0, int(np.argmax(scores))] = 1
            model.backward(one_hot)
            runs.append(time.perf_counter() - t)
        times[name] = sorted(runs[1:])[len(runs[1:]) // 2]
        del model
    return times


def run_worker(name, *args):
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"import examples.bench_onnx as b; "
            f"print(json.dumps(b.worker_{name}(*{list(args)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=None,
                        help="a VGG19-sized .onnx (default: made once in the cache folder)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the converted .npz")
    args = parser.parse_args(argv)
    file = args.file
    if file is None:
        file = Path(os.environ.get("MINICNN_TEST_CACHE", Path.home() / ".cache" /
                                   "minicnn-tests")) / "bench" / "vgg19_random.onnx"
        if not file.is_file():
            print(f"making {file} ...", flush=True)
            make_vgg19(file)
    size_mb = file.stat().st_size / 2 ** 20
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "vgg19.npz")
        ours = run_worker("minicnn", str(file), out)
        base = run_worker("baseline", str(file), out)
        speed = run_worker("speed", out, args.reps)
        if args.keep:
            os.replace(out, ROOT / "vgg19_from_onnx.npz")
    print(f"\nVGG19-sized ONNX file: {file} ({size_mb:,.0f} MiB)\n")
    print("| what | wall time | peak RSS | peak / file size |")
    print("| --- | --- | --- | --- |")
    for label, r in (("minicnn convert_onnx (whole conversion, .npz written)", ours),
                     ("baseline: onnx.load + numpy_helper.to_array", base)):
        print(f"| {label} | {r['seconds']:.2f} s | {r['peak_mb']:,.0f} MiB (imports "
              f"{r['start_mb']:,.0f}) | {r['peak_mb'] / size_mb:.2f}x |")
    print(f"\ntargets: conversion < 20 s: {'yes' if ours['seconds'] < 20 else 'NO'}; "
          f"peak < 2 x file: {'yes' if ours['peak_mb'] < 2 * size_mb else 'NO'}")
    print(f"\nforward + input gradient, 1 x 3 x 224 x 224, median of {args.reps}: converted "
          f"{speed['converted']:.3f} s, zoo vgg19 {speed['zoo vgg19']:.3f} s (ratio "
          f"{speed['converted'] / speed['zoo vgg19']:.2f})")


if __name__ == "__main__":
    main()
