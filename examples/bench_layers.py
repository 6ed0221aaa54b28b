"""Benchmark: where the time of one saliency gradient goes, layer kind by layer kind,
minicnn vs PyTorch CPU, for the networks whose whole pass is not faster than PyTorch's.

For one network of ``examples/bench.py`` (its input, 1x3x224x224 for the ImageNet networks;
float32, random weights, 2 threads, each library in its own process), the forward pass and the input gradient are split by the
kind of layer: convolutions as 1x1, depthwise (one input channel per filter) and the rest
(k x k), BatchNorm, each activation, the squeeze-and-excitation gate's product, the
additions, concatenations, pools and the classifier.

- minicnn: every layer's ``forward`` and ``backward`` timed with ``time.perf_counter`` around
  the call (the model's own loop, nothing else changed);
- PyTorch: ``torch.profiler`` on the same step; a forward operator is a direct child of the
  step's "forward" range, a backward one an ``autograd::engine::evaluate_function`` event;
  each counted with everything it called (its total CPU time). A convolution's kind is
  read from its weight's recorded shape (O, I / groups, kh, kw).

minicnn folds the BatchNorms that follow a convolution into it (as ``from_torch`` and
``convert`` do), PyTorch runs them as layers: each library as a user runs it, as in
``bench.py``. The profiler's own cost is in PyTorch's figures, so its total is above
``bench.py``'s; compare the kinds, and each library's total with its own sum of kinds.
The figure per kind is the median over ``--reps`` steps, in ms.

Usage:  python examples/bench_layers.py [--cases efficientnet_b0 densenet121] [--reps 9]
Prints a Markdown table per network. Numbers depend on the machine and on its load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the networks and the thread settings of examples/bench.py)

# PyTorch's operator (forward) or autograd node (backward) -> the kind of layer.
TORCH_KINDS = {
    "aten::conv2d": "conv", "ConvolutionBackward0": "conv",
    "aten::batch_norm": "batchnorm", "NativeBatchNormBackward0": "batchnorm",
    "CudnnBatchNormBackward0": "batchnorm",
    "aten::relu": "relu", "aten::relu_": "relu", "ReluBackward0": "relu",
    "aten::hardtanh": "relu6", "aten::hardtanh_": "relu6", "HardtanhBackward0": "relu6",
    "aten::silu": "silu", "aten::silu_": "silu", "SiluBackward0": "silu",
    "aten::sigmoid": "sigmoid", "SigmoidBackward0": "sigmoid",
    "aten::hardswish": "hardswish", "aten::hardswish_": "hardswish",
    "HardswishBackward0": "hardswish",
    "aten::hardsigmoid": "hardsigmoid", "HardsigmoidBackward0": "hardsigmoid",
    "aten::mul": "mul (gate)", "MulBackward0": "mul (gate)",
    "aten::add": "add", "aten::add_": "add", "AddBackward0": "add",
    "aten::cat": "concat", "CatBackward0": "concat",
    "aten::adaptive_avg_pool2d": "avgpool", "MeanBackward1": "avgpool",
    "aten::avg_pool2d": "avgpool", "AvgPool2DBackward0": "avgpool",
    "aten::max_pool2d": "maxpool", "MaxPool2DWithIndicesBackward0": "maxpool",
    "aten::linear": "linear", "AddmmBackward0": "linear",
    "aten::flatten": "reshape", "aten::dropout": "reshape", "ViewBackward0": "reshape",
    "ReshapeAliasBackward0": "reshape", "aten::transpose": "reshape",
    "aten::view": "reshape", "aten::chunk": "reshape", "aten::contiguous": "reshape",
}

# minicnn's layer class -> the kind of layer (Conv2d is split by its shape).
MINICNN_KINDS = {
    "BatchNorm2d": "batchnorm", "ReLU": "relu", "ReLU6": "relu6", "Hardtanh": "relu6",
    "SiLU": "silu", "Sigmoid": "sigmoid", "Hardswish": "hardswish",
    "Hardsigmoid": "hardsigmoid", "Mul": "mul (gate)", "Add": "add", "Concat": "concat",
    "AdaptiveAvgPool2d": "avgpool", "AvgPool2d": "avgpool", "MaxPool2d": "maxpool",
    "Linear": "linear", "Flatten": "reshape", "Dropout": "reshape",
    "ChannelShuffle": "reshape", "ChannelSlice": "reshape",
}


def conv_kind(weight_shape) -> str:
    """(O, I / groups, kh, kw) -> "conv 1x1", "conv depthwise kxk" or "conv kxk"."""
    out, per_group, kh, kw = weight_shape
    if per_group == 1 and out > 1 and (kh, kw) != (1, 1):
        return f"conv depthwise {kh}x{kw}"
    return "conv 1x1" if (kh, kw) == (1, 1) else f"conv {kh}x{kw}"


def minicnn_worker(case, reps):
    import numpy as np
    from minicnn.engine.kernels.fast import allocator
    allocator.tune()
    arch, shape = bench.CASES[case]
    model = bench.build_minicnn(arch)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    spent = defaultdict(float)                         # (kind, "forward"/"backward") -> s

    def timed(method, key):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            out = method(*args, **kwargs)
            spent[key] += time.perf_counter() - t0
            return out
        return call

    for layer in model.layers:
        name = type(layer).__name__
        kind = (conv_kind(layer.weight.shape) if name == "Conv2d"
                else MINICNN_KINDS.get(name, name))
        layer.forward = timed(layer.forward, (kind, "forward"))
        layer.backward = timed(layer.backward, (kind, "backward"))

    def step():
        scores = model(x)
        one_hot = np.zeros_like(scores)
        one_hot[0, scores.argmax()] = 1.0
        model.backward(one_hot)

    for _ in range(2):
        step()
    rows, totals = [], []
    for _ in range(reps):
        spent.clear()
        t0 = time.perf_counter()
        step()
        totals.append(time.perf_counter() - t0)
        rows.append(dict(spent))
    return rows, totals


def torch_worker(case, reps):
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    torch.set_num_threads(bench.THREADS)
    arch, shape = bench.CASES[case]
    net = bench.build_torch(arch)
    for module in net.modules():                       # the profile's nesting stays simple
        if hasattr(module, "inplace"):
            module.inplace = False
    for p in net.parameters():
        p.requires_grad_(False)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def step():
        xt = torch.from_numpy(x).requires_grad_(True)
        with record_function("forward"):
            scores = net(xt)
        picked = scores.gather(1, scores.argmax(1, keepdim=True))
        picked.sum().backward()

    for _ in range(2):
        step()
    rows, totals = [], []
    for _ in range(reps):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            t0 = time.perf_counter()
            step()
            totals.append(time.perf_counter() - t0)
        rows.append(_torch_kinds(prof.events()))
    return rows, totals


def _torch_kinds(events) -> dict:
    spent = defaultdict(float)
    for e in events:
        parent = e.cpu_parent
        if parent is not None and parent.name == "forward":
            kind = TORCH_KINDS.get(e.name, e.name)
            if kind == "conv":
                kind = conv_kind(e.input_shapes[1])
            spent[(kind, "forward")] += e.cpu_time_total / 1e6
        elif e.name.startswith("autograd::engine::evaluate_function: "):
            node = e.name.split(": ", 1)[1]
            kind = TORCH_KINDS.get(node, node)
            if kind == "conv":
                inner = _find(e, "aten::convolution_backward")
                kind = conv_kind(inner.input_shapes[2]) if inner else "conv"
            spent[(kind, "backward")] += e.cpu_time_total / 1e6
    return dict(spent)


def _find(event, name):
    for child in event.cpu_children:
        if child.name == name:
            return child
        found = _find(child, name)
        if found is not None:
            return found
    return None


def worker(library, case, reps):
    rows, totals = (torch_worker if library == "torch" else minicnn_worker)(case, reps)
    import numpy as np
    keys = sorted({key for row in rows for key in row})
    medians = {f"{k}|{d}": 1e3 * float(np.median([row.get((k, d), 0.0) for row in rows]))
               for k, d in keys}
    print(json.dumps({"kinds": medians, "total_ms": 1e3 * float(np.median(totals))}))


def run(library, case, reps):
    out = subprocess.run([sys.executable, __file__, "--worker", library, case, str(reps)],
                         capture_output=True, text=True, env=bench.thread_env())
    if out.returncode != 0:
        raise RuntimeError(f"{library} {case} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(case, mine, theirs):
    kinds = sorted({k.split("|")[0] for k in list(mine["kinds"]) + list(theirs["kinds"])})

    def ms(result, kind, direction):
        return result["kinds"].get(f"{kind}|{direction}", 0.0)

    rows = []
    for kind in kinds:
        a = [ms(mine, kind, d) for d in ("forward", "backward")]
        b = [ms(theirs, kind, d) for d in ("forward", "backward")]
        rows.append((sum(b), kind, a, b))
    rows.sort(reverse=True)
    shape = "x".join(map(str, bench.CASES[case][1]))
    print(f"\n### {case}, {shape}: ms per step (median of the steps), minicnn / PyTorch\n")
    print("| layer kind | forward | backward | both | ratio |")
    print("|---|---|---|---|---|")
    for _, kind, a, b in rows:
        ratio = f"{sum(a) / sum(b):.2f}" if sum(b) > 0.05 else "-"
        print(f"| {kind} | {a[0]:.1f} / {b[0]:.1f} | {a[1]:.1f} / {b[1]:.1f} | "
              f"{sum(a):.1f} / {sum(b):.1f} | {ratio} |")
    sa, sb = sum(mine["kinds"].values()), sum(theirs["kinds"].values())
    print(f"| sum of the kinds | | | {sa:.1f} / {sb:.1f} | {sa / sb:.2f} |")
    print(f"| whole step (PyTorch under the profiler) | | | {mine['total_ms']:.1f} / "
          f"{theirs['total_ms']:.1f} | |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["efficientnet_b0", "densenet121"],
                        choices=sorted(bench.CASES))
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    print(f"# time per layer kind, {bench.THREADS} threads; load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    for case in args.cases:
        table(case, run("minicnn", case, args.reps), run("torch", case, args.reps))


if __name__ == "__main__":
    main()
