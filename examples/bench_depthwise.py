"""Benchmark: depthwise convolutions (groups = C), minicnn vs PyTorch CPU, layer by layer.

The depthwise layers of MobileNetV2 and EfficientNet-B0 on a 1x3x224x224 input (float32,
batch 1): each layer's forward pass and its input gradient alone (what a saliency map needs
from it), timed in minicnn (``minicnn.Conv2d(..., groups=C)``: the direct loops of
``minicnn/engine/kernels/fast/depthwise.py``) and in PyTorch (``torch.nn.functional.conv2d``
for the forward pass, ``torch.ops.aten.convolution_backward`` with only the input gradient
asked for, the call autograd makes).

Each library runs in its own subprocess with the same number of threads (default 2), as in
examples/bench.py; on a shared machine the load changes from minute to minute, so the two
alternate for several rounds (``--rounds``) and the table gives the median over rounds of
each library's median time, their ratio (minicnn / PyTorch: below 1 is faster), and the
"ratio of best" (each library's fastest repetition of the whole run, the figure least
disturbed by other tenants). ``GB/s`` is what minicnn's loops stream at that speed: the
input read and the output written (forward), grad_out read and grad_x written (backward),
4 bytes each; the rest of the traffic (the per-thread padded copy) stays in cache.

Usage:  python examples/bench_depthwise.py [--reps 50] [--rounds 3] [--threads 2]
Prints a Markdown table. Numbers depend on the machine and on its load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run from a checkout without installing
sys.path.insert(0, HERE)
import bench  # noqa: E402  (its timing loop)

# (network, channels, input side, kernel, stride): every distinct depthwise layer of
# torchvision's mobilenet_v2 and efficientnet_b0 at 224x224 (padding kernel // 2)
LAYERS = [
    ("MobileNetV2", 32, 112, 3, 1), ("MobileNetV2", 96, 112, 3, 2),
    ("MobileNetV2", 144, 56, 3, 1), ("MobileNetV2", 144, 56, 3, 2),
    ("MobileNetV2", 192, 28, 3, 1), ("MobileNetV2", 192, 28, 3, 2),
    ("MobileNetV2", 384, 14, 3, 1), ("MobileNetV2", 576, 14, 3, 1),
    ("MobileNetV2", 576, 14, 3, 2), ("MobileNetV2", 960, 7, 3, 1),
    ("EfficientNet-B0", 144, 56, 5, 2), ("EfficientNet-B0", 240, 28, 5, 1),
    ("EfficientNet-B0", 240, 28, 3, 2), ("EfficientNet-B0", 480, 14, 3, 1),
    ("EfficientNet-B0", 480, 14, 5, 1), ("EfficientNet-B0", 672, 14, 5, 1),
    ("EfficientNet-B0", 672, 14, 5, 2), ("EfficientNet-B0", 1152, 7, 5, 1),
    ("EfficientNet-B0", 1152, 7, 3, 1),
]


def worker(library, reps, threads):
    """Time every layer in this process; print one JSON line per layer."""
    import numpy as np
    rng = np.random.default_rng(0)
    if library == "torch":
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(threads)
    else:
        import minicnn
        from minicnn.engine import kernels
        from minicnn.engine.kernels.fast import allocator
        allocator.tune()  # as the minicnn command does
        minicnn.use_kernels("fast")
    for net, C, size, k, s in LAYERS:
        p = k // 2
        x = rng.standard_normal((1, C, size, size)).astype(np.float32)
        w = (rng.standard_normal((C, 1, k, k)) / k).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        if library == "torch":
            xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
            out = F.conv2d(xt, wt, bt, s, p, 1, C)
            g = torch.from_numpy(rng.standard_normal(out.shape).astype(np.float32))

            def forward():
                with torch.no_grad():
                    return F.conv2d(xt, wt, bt, s, p, 1, C)

            def backward():
                return torch.ops.aten.convolution_backward(
                    g, xt, wt, None, [s, s], [p, p], [1, 1], False, [0, 0], C,
                    [True, False, False])[0]
        else:
            layer = minicnn.Conv2d(C, C, k, s, p, groups=C, rng=0)
            layer.weight, layer.bias = w, b
            out = layer.forward(x)
            g = rng.standard_normal(out.shape).astype(np.float32)
            context = kernels.active().pass_context  # what a whole pass runs inside

            def forward():
                with context():
                    return layer.forward(x)

            def backward():
                with context():
                    return layer.backward(g)
        fwd, fwd_min = bench.timings(forward, reps, warmup=5)
        bwd, bwd_min = bench.timings(backward, reps, warmup=5)
        print(json.dumps({"fwd": fwd, "fwd_min": fwd_min, "bwd": bwd, "bwd_min": bwd_min,
                          "bytes": 4 * (x.size + int(np.prod(out.shape)))}), flush=True)


def run_worker(library, reps, threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "MINICNN_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, __file__, "--worker", library, str(reps),
                             str(threads)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{library} failed:\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating minicnn / PyTorch processes (default 3)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for minicnn and torch in every worker (default 2)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        library, reps, threads = args.worker
        return worker(library, int(reps), int(threads))

    print(f"# Depthwise convolutions, minicnn vs PyTorch: batch 1, float32, {args.threads} "
          f"threads, median of {args.reps} per process, {args.rounds} rounds; load average "
          f"{os.getloadavg()[0]:.1f} at the start\n")
    rounds = [(run_worker("fast", args.reps, args.threads),
               run_worker("torch", args.reps, args.threads)) for _ in range(args.rounds)]
    print("| network | channels x side, kernel, stride | forward ms minicnn / PyTorch | "
          "ratio | ratio of best | input gradient ms minicnn / PyTorch | ratio | "
          "ratio of best | minicnn GB/s fwd / bwd |")
    print("|---|---|---|---|---|---|---|---|---|")
    total = {"fwd": [0.0, 0.0], "bwd": [0.0, 0.0]}
    for i, (net, C, size, k, s) in enumerate(LAYERS):
        cells = []
        speeds = []
        for kind in ("fwd", "bwd"):
            ours = median([a[i][kind] for a, _ in rounds])
            theirs = median([b[i][kind] for _, b in rounds])
            best = (min(a[i][kind + "_min"] for a, _ in rounds)
                    / min(b[i][kind + "_min"] for _, b in rounds))
            total[kind][0] += ours
            total[kind][1] += theirs
            cells += [f"{ours:.3f} / {theirs:.3f}", f"{ours / theirs:.2f}", f"{best:.2f}"]
            speeds.append(rounds[0][0][i]["bytes"] / (ours * 1e6))
        print(f"| {net} | {C}x{size}, {k}x{k}, {s} | " + " | ".join(cells)
              + f" | {speeds[0]:.1f} / {speeds[1]:.1f} |", flush=True)
    f, b = total["fwd"], total["bwd"]
    print(f"| all | {len(LAYERS)} layers | {f[0]:.2f} / {f[1]:.2f} | {f[0] / f[1]:.2f} | | "
          f"{b[0]:.2f} / {b[1]:.2f} | {b[0] / b[1]:.2f} | | |")
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f} (other processes distort "
          f"timings)")


if __name__ == "__main__":
    main()
