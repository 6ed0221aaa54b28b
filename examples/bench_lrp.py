"""Benchmark: what an LRP map costs, against a gradient on the same network (minicnn) and
against zennit 0.5.1 on PyTorch CPU, in the same run.

One timed repetition is one map: a forward pass and one backward pass, from the one-hot (the
gradient) or from the one-hot times the score under a composite (LRP, minicnn's
``Graph.backward(..., rule=...)`` and zennit's ``Gradient`` attributor). zennit's composite is
registered once, before the repetitions (its canonizers fold the BatchNorms then), as a user
explaining many images would; so are minicnn's rules (resolved from the same object every
call). Networks: VGG16 (by hand, torchvision's layout) and ResNet-50 (minicnn's zoo with its
BatchNorms folded; torchvision's own code for zennit, with its ResNetCanonizer), random
weights, 1x3x224x224, float32.

Each library runs in its own process with 2 threads (see examples/bench.py), in alternating
rounds; the table gives the median over rounds of each process's median, the ratios, and the
ratio of the fastest repetitions. Targets (issue #27): minicnn LRP / minicnn gradient <= 1.5,
minicnn LRP / zennit LRP <= 0.8.

Usage:  python examples/bench_lrp.py [--reps 5] [--rounds 3] [--cases vgg16 resnet50]
        [--rules epsilon-plus epsilon]
Needs torch, torchvision 0.29.1 (installed --no-deps, imported with
tests/helpers/torchvision_oracle.py's stubs) and zennit 0.5.1 (--no-deps) for the zennit column.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (builders, thread settings and process helpers)

CASES = {"vgg16": (1, 3, 224, 224), "resnet50": (1, 3, 224, 224)}
RULES = ("epsilon-plus", "epsilon", "epsilon-gamma-box")
KINDS = ("minicnn-gradient", "minicnn-lrp", "zennit-lrp")


def _zennit_composite(z, rule, arch):
    canonizers = [z.torchvision.ResNetCanonizer()] if arch == "resnet50" else \
        [z.torchvision.VGGCanonizer()]
    if rule == "epsilon-plus":
        return z.composites.EpsilonPlus(canonizers=canonizers)
    if rule == "epsilon-gamma-box":
        return z.composites.EpsilonGammaBox(low=-3.0, high=3.0, canonizers=canonizers)
    import torch
    return z.composites.LayerMapComposite(
        layer_map=z.composites.layer_map_base()
        + [(z.types.Convolution, z.rules.Epsilon()), (torch.nn.Linear, z.rules.Epsilon())],
        canonizers=canonizers)


def _minicnn_rule(rule):
    from minicnn import saliency
    if rule == "epsilon-gamma-box":
        return saliency.EpsilonGammaBox(-3.0, 3.0)
    return saliency.resolve_rule(rule)


def worker(kind, case, rule, reps, warmup):
    import numpy as np
    shape = CASES[case]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if kind == "zennit-lrp":
        import torch
        torch.set_num_threads(bench.THREADS)
        from tests.helpers.torchvision_oracle import import_torchvision
        tv = import_torchvision()
        import zennit as z
        import zennit.composites  # noqa: F401
        import zennit.torchvision  # noqa: F401
        from zennit.attribution import Gradient
        net = (tv.models.resnet50() if case == "resnet50" else bench.build_torch("vgg16")).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        for m in net.modules():                    # inplace ReLUs and hooks do not mix
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        context = Gradient(model=net, composite=_zennit_composite(z, rule, case))
        attributor = context.__enter__()

        def step():
            xt = torch.from_numpy(x).requires_grad_(True)
            _, relevance = attributor(xt, lambda out: torch.eye(out.shape[1])[
                out.argmax(1)] * out)
            return relevance
    else:
        from minicnn.engine.kernels.fast import allocator
        allocator.tune()
        model = bench.build_minicnn(case)
        lrp_rule = _minicnn_rule(rule) if kind == "minicnn-lrp" else None

        def step():
            scores = model(x)
            seed = np.zeros_like(scores)
            rows, top = np.arange(len(scores)), scores.argmax(1)
            if lrp_rule is None:
                seed[rows, top] = 1.0
                return model.backward(seed)
            seed[rows, top] = scores[rows, top]
            return model.backward(seed, rule=lrp_rule)
    ms, min_ms = bench.timings(step, reps, warmup)
    print(json.dumps({"ms": ms, "min_ms": min_ms, "rss_mb": bench.peak_rss_mb()}))


def run_worker(kind, case, rule, reps, warmup):
    result = subprocess.run([sys.executable, __file__, "--worker", kind, case, rule, str(reps),
                             str(warmup)], capture_output=True, text=True,
                            env=bench.thread_env())
    if result.returncode != 0:
        raise RuntimeError(f"{kind} {case} {rule} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--rules", nargs="+", choices=RULES, default=["epsilon-plus"])
    parser.add_argument("--threads", type=int, default=bench.THREADS)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    bench.THREADS = args.threads
    if args.worker:
        kind, case, rule, reps, warmup = args.worker
        return worker(kind, case, rule, int(reps), int(warmup))

    print(f"# LRP maps: minicnn against its own gradient and against zennit, {bench.THREADS} "
          f"threads, median of {args.reps} per process, {args.rounds} rounds; load average "
          f"{os.getloadavg()[0]:.1f} at the start\n")
    print("| case | rule | minicnn gradient ms | minicnn LRP ms | zennit LRP ms | "
          "LRP / gradient | minicnn / zennit | per round | of best |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        for rule in args.rules:
            rounds = [{kind: run_worker(kind, case, rule, args.reps, warmup=2) for kind in KINDS}
                      for _ in range(args.rounds)]
            ms = {kind: bench.median([r[kind]["ms"] for r in rounds]) for kind in KINDS}
            per_round = sorted(r["minicnn-lrp"]["ms"] / r["zennit-lrp"]["ms"] for r in rounds)
            best = (min(r["minicnn-lrp"]["min_ms"] for r in rounds)
                    / min(r["zennit-lrp"]["min_ms"] for r in rounds))
            print(f"| {case} | {rule} | {ms['minicnn-gradient']:.0f} | {ms['minicnn-lrp']:.0f} | "
                  f"{ms['zennit-lrp']:.0f} | "
                  f"{ms['minicnn-lrp'] / ms['minicnn-gradient']:.2f} | "
                  f"{ms['minicnn-lrp'] / ms['zennit-lrp']:.2f} | "
                  f"{per_round[0]:.2f}-{per_round[-1]:.2f} | {best:.2f} |", flush=True)


if __name__ == "__main__":
    main()
