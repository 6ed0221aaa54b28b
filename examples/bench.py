"""Benchmark: forward + gradient to the input (the saliency computation), minicnn vs PyTorch CPU.

For each case the network is built twice with the same architecture and random weights
(VGG16 and AlexNet by hand in torchvision's layout, since torchvision does not import here;
ResNet and SqueezeNet from minicnn.io.zoo and from tests/helpers/torchvision_like.py),
once in minicnn and once in torch.nn. PyTorch runs ResNet's BatchNorm as a layer in eval mode,
minicnn has it folded into the convolutions, as ``from_torch`` does by default: each library
the way a user runs it; and each library runs in ITS OWN subprocess with 2
threads: thread pools of two libraries in one process distort both timings, and each process
reports its own peak RSS.
One timed repetition = forward, one-hot on the predicted class, backward to the input.
After warm-up the median of several repetitions is reported. On a shared machine the load
changes from minute to minute, so each case runs in several rounds (``--rounds``), each a
minicnn process then a PyTorch process: the table gives the median over rounds of each
library's median, their ratio, the range of the per-round ratios, and the "ratio of best":
each library's fastest repetition of the whole run, the figure least disturbed by other
tenants of a shared machine (each repetition is one whole forward + backward).

Also measured: the reference (readable) kernels on the small net, and start-up time of a
fresh process that imports minicnn and computes one gradient (Numba cache warm, and cold
with an empty cache directory).

Usage:  python examples/bench.py [--reps 7] [--rounds 3] [--threads 2] [--no-vgg] [--cases ...]
On a loaded machine 2-thread BLAS waits for descheduled threads at every GEMM; compare with
--threads 1 to see how much of a difference is load rather than code.
Prints a Markdown table. Numbers depend on the machine and on its load: rerun on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

THREADS = int(os.environ.get("BENCH_THREADS", 2))  # set by --threads, inherited by workers
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M"]
# the shipped model's shape: (out_channels, then a MaxPool2d(2)?) per conv
SMALL_CFG = [32, "M", 64, 64, "M", 128, 128, "M", 192, "M"]

CASES = {  # name: (architecture, input shape)
    "vgg16": ("vgg16", (1, 3, 224, 224)),
    "alexnet": ("alexnet", (1, 3, 224, 224)),
    "small": ("small", (1, 3, 64, 64)),
    "small-b50": ("small", (50, 3, 64, 64)),
    "resnet18": ("resnet18", (1, 3, 224, 224)),
    "resnet50": ("resnet50", (1, 3, 224, 224)),
    "squeezenet1_1": ("squeezenet1_1", (1, 3, 224, 224)),
    "mobilenet_v2": ("mobilenet_v2", (1, 3, 224, 224)),
    "mobilenet_v3_large": ("mobilenet_v3_large", (1, 3, 224, 224)),
    "efficientnet_b0": ("efficientnet_b0", (1, 3, 224, 224)),
    "densenet121": ("densenet121", (1, 3, 224, 224)),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", (1, 3, 224, 224)),
}
GRAPHS = ("resnet18", "resnet50", "squeezenet1_1")  # skip connections and branches: the zoo
# The networks deployed on CPUs: minicnn's zoo against torchvision's own model code (imported
# beside torch 2.13 as tests/helpers/torchvision_oracle.py does), random weights on both sides
MOBILE = ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "densenet121",
          "shufflenet_v2_x1_0")


# ----------------------------------------------------------------------------- architectures

def layer_specs(arch):
    """The architecture as (name, kind, args) triples shared by both builders.

    conv args: (in, out, kernel, stride, padding); maxpool args: (kernel, stride)."""
    if arch == "alexnet":  # torchvision's layout and names
        return [("features.0", "conv", (3, 64, 11, 4, 2)), ("features.1", "relu", ()),
                ("features.2", "maxpool", (3, 2)),
                ("features.3", "conv", (64, 192, 5, 1, 2)), ("features.4", "relu", ()),
                ("features.5", "maxpool", (3, 2)),
                ("features.6", "conv", (192, 384, 3, 1, 1)), ("features.7", "relu", ()),
                ("features.8", "conv", (384, 256, 3, 1, 1)), ("features.9", "relu", ()),
                ("features.10", "conv", (256, 256, 3, 1, 1)), ("features.11", "relu", ()),
                ("features.12", "maxpool", (3, 2)),
                ("avgpool", "adaptive", (6,)), ("flatten", "flatten", ()),
                ("classifier.0", "dropout", ()), ("classifier.1", "linear", (9216, 4096)),
                ("classifier.2", "relu", ()), ("classifier.3", "dropout", ()),
                ("classifier.4", "linear", (4096, 4096)), ("classifier.5", "relu", ()),
                ("classifier.6", "linear", (4096, 1000))]
    cfg = VGG16_CFG if arch == "vgg16" else SMALL_CFG
    specs, c, i = [], 3, 0
    for v in cfg:
        if v == "M":
            specs.append((f"features.{i}", "maxpool", (2, 2)))
            i += 1
        else:
            specs += [(f"features.{i}", "conv", (c, v, 3, 1, 1)), (f"features.{i + 1}", "relu", ())]
            c, i = v, i + 2
    if arch == "vgg16":
        specs.append(("avgpool", "adaptive", (7,)))
        specs.append(("flatten", "flatten", ()))
        dims = [512 * 7 * 7, 4096, 4096, 1000]
    else:
        specs.append(("flatten", "flatten", ()))
        dims = [192 * 4 * 4, 128, 10]
    j = 0
    for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        specs.append((f"classifier.{j}", "linear", (d_in, d_out)))
        if k < len(dims) - 2:
            specs += [(f"classifier.{j + 1}", "relu", ()), (f"classifier.{j + 2}", "dropout", ())]
            j += 3
    return specs


def build_minicnn(arch):
    import minicnn as mc
    if arch in GRAPHS + MOBILE:  # BatchNorm folded into the convolutions, as convert does
        from minicnn.io import zoo
        return zoo.build(arch)
    make = {"conv": lambda c_in, c_out, k, s, p: mc.Conv2d(c_in, c_out, k, s, p, rng=0),
            "relu": mc.ReLU, "maxpool": mc.MaxPool2d, "adaptive": mc.AdaptiveAvgPool2d,
            "flatten": mc.Flatten, "linear": lambda i, o: mc.Linear(i, o, rng=0),
            "dropout": mc.Dropout}
    return mc.Sequential([(name, make[kind](*args)) for name, kind, args in layer_specs(arch)])


def build_torch(arch):
    import torch.nn as nn
    if arch in MOBILE:  # torchvision's own code, eval mode: BatchNorm as a layer
        from tests.helpers.torchvision_oracle import import_torchvision
        return getattr(import_torchvision().models, arch)().eval()
    if arch in GRAPHS:  # torchvision's layout (tests/helpers), eval mode: BatchNorm as a layer
        from tests.helpers.torchvision_like import build
        return build(arch)
    make = {"conv": lambda c_in, c_out, k, s, p: nn.Conv2d(c_in, c_out, k, s, p),
            "relu": lambda: nn.ReLU(inplace=True), "maxpool": nn.MaxPool2d,
            "adaptive": nn.AdaptiveAvgPool2d, "flatten": nn.Flatten, "linear": nn.Linear,
            "dropout": nn.Dropout}
    return nn.Sequential(*[make[kind](*args) for _, kind, args in layer_specs(arch)]).eval()


# ----------------------------------------------------------------------------- workers

def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def worker(library, case, reps, warmup):
    import numpy as np
    arch, shape = CASES[case]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if library == "torch":
        import torch
        torch.set_num_threads(THREADS)
        net = build_torch(arch)
        for p in net.parameters():
            p.requires_grad_(False)

        def step():
            xt = torch.from_numpy(x).requires_grad_(True)
            scores = net(xt)
            picked = scores.gather(1, scores.argmax(1, keepdim=True))
            picked.sum().backward()
            return xt.grad
    else:
        import minicnn
        from minicnn.engine.kernels.fast import allocator
        allocator.tune()  # as the minicnn command does: freed arrays reused, not faulted in
        minicnn.use_kernels(library)  # "fast" or "reference"
        model = build_minicnn(arch)

        def step():
            scores = model(x)
            one_hot = np.zeros_like(scores)
            one_hot[np.arange(len(scores)), scores.argmax(1)] = 1.0
            return model.backward(one_hot)
    ms, min_ms = timings(step, reps, warmup)
    print(json.dumps({"ms": ms, "min_ms": min_ms, "rss_mb": peak_rss_mb()}))


def timings(step, reps, warmup):
    """(median, min) of ``reps`` calls of step(), in ms, after ``warmup`` untimed calls (each
    call one whole repetition: here forward + backward)."""
    import numpy as np
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), 1e3 * min(times)


def thread_env(**extra):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "MINICNN_NUM_THREADS"):
        env[var] = str(THREADS)
    env["BENCH_THREADS"] = str(THREADS)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_worker(library, case, reps, warmup):
    result = subprocess.run([sys.executable, __file__, "--worker", library, case, str(reps),
                             str(warmup)], capture_output=True, text=True, env=thread_env())
    if result.returncode != 0:
        raise RuntimeError(f"{library} {case} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def startup_seconds(**env):
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            "import numpy as np; from bench import build_minicnn; m = build_minicnn('small'); "
            "s = m(np.zeros((1, 3, 64, 64), np.float32)); g = np.zeros_like(s); g[0, 0] = 1; "
            "m.backward(g)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=thread_env(**env))
    return time.perf_counter() - t0


def main():
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating minicnn / PyTorch processes per case (default 3)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--no-vgg", action="store_true",
                        help="skip the ImageNet networks (VGG16, AlexNet, ResNet, SqueezeNet, "
                             "the mobile ones)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="threads for BLAS and torch in every worker (default 2)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    THREADS = args.threads
    if args.worker:
        library, case, reps, warmup = args.worker
        return worker(library, case, int(reps), int(warmup))

    print(f"# minicnn vs PyTorch: forward + input gradient, {THREADS} threads, median of "
          f"{args.reps} per process, {args.rounds} rounds (separate processes); load average "
          f"{os.getloadavg()[0]:.1f} at the start\n")
    print("| case | input | minicnn ms | PyTorch ms | ratio | ratio per round | ratio of best | "
          "minicnn peak RSS MB | PyTorch peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        arch, shape = CASES[case]
        if args.no_vgg and arch in ("vgg16", "alexnet") + GRAPHS + MOBILE:
            continue
        reps = max(3, args.reps // 2) if arch == "vgg16" else args.reps
        rounds = [(run_worker("fast", case, reps, warmup=2), run_worker("torch", case, reps, warmup=2))
                  for _ in range(args.rounds)]
        ours = median([a["ms"] for a, _ in rounds])
        theirs = median([b["ms"] for _, b in rounds])
        ratios = sorted(a["ms"] / b["ms"] for a, b in rounds)
        best = min(a["min_ms"] for a, _ in rounds) / min(b["min_ms"] for _, b in rounds)
        print(f"| {case} | {'x'.join(map(str, shape))} | {ours:.1f} | {theirs:.1f} | "
              f"{ours / theirs:.2f} | {ratios[0]:.2f}-{ratios[-1]:.2f} | {best:.2f} | "
              f"{max(a['rss_mb'] for a, _ in rounds):.0f} | "
              f"{max(b['rss_mb'] for _, b in rounds):.0f} |", flush=True)

    fast = run_worker("fast", "small", args.reps, warmup=2)
    ref = run_worker("reference", "small", 2, warmup=1)
    print(f"\nReference kernels, small net, batch 1: {ref['ms']:.0f} ms; fast {fast['ms']:.1f} ms; "
          f"reference / fast = {ref['ms'] / fast['ms']:.0f}x")

    warm = [startup_seconds()]
    cold = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(startup_seconds(NUMBA_CACHE_DIR=cache))
        warm.append(startup_seconds())
    print(f"Start-up (new process: import, build small net, one gradient): warm cache "
          f"{median(warm):.2f} s (of {', '.join(f'{t:.2f}' for t in warm)}), cold compile "
          f"{median(cold):.2f} s (of {', '.join(f'{t:.2f}' for t in cold)})")
    print(f"Load average during the run: {os.getloadavg()[0]:.1f} (other processes distort timings)")


if __name__ == "__main__":
    main()
