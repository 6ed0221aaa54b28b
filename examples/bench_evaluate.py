"""Benchmark: ``minicnn evaluate`` against the same evaluation written with PyTorch + Captum.

    python examples/bench_evaluate.py [--images 300] [--curve-images 50] [--rounds 2] [--threads 2]

Both sides score the first ``--images`` images of the cluttered Fashion-MNIST test split with
the shipped model, method by method: the map of the true class, the pointing game and
threshold localisation on every image, deletion and insertion curves (2 x 17 forward passes
per image) on the first ``--curve-images``. The metric code is the same on both sides
(``minicnn.experiments.metrics``, ``localize``); what differs is who computes the maps and
runs the curves' forward passes:

- minicnn: ``run_evaluation(model, methods=[m], baselines=False, graphcut_limit=0)`` for each
  one-pass method m, then once with all of them together, as ``minicnn evaluate`` runs them
  (``saliency.attribute`` shares one forward pass and the backward passes that agree);
- PyTorch: the same loop over batches of 100 with Captum's Saliency, GuidedBackprop,
  Deconvolution, InputXGradient, LayerGradCam(relu_attributions=True) and
  GuidedGradCam(interpolate_mode="bilinear") on the same weights in torch.nn (float32, eval),
  the curves' forward passes in torch. Captum has no shared passes: "all together" is the sum.

The script prints images/s of both and their time ratio per method, and checks that the two
sides computed the same evaluation (pointing-game hits equal, curve areas within 1e-3):
a benchmark of two different jobs would mean nothing. Each library runs in ITS OWN subprocess
with the same threads, in ``--rounds`` alternating rounds (the median is reported, and the
range of the per-round ratios). Graph cut (OpenCV, the same on both sides) is left out.
Needs the Fashion-MNIST files (see ``minicnn.io.datasets``). Rerun on a quiet machine before
quoting the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradient", "guided_backprop", "deconvnet", "input_x_gradient", "grad_cam",
           "guided_grad_cam")
BATCH = 100


# ----------------------------------------------------------------------------- the workers

def minicnn_worker(n_images, curve_images):
    """{method or "all": (seconds, result rows)} from run_evaluation itself."""
    import minicnn
    from minicnn.engine.kernels.fast import allocator
    from minicnn.experiments.evaluate import run_evaluation
    allocator.tune()  # as the minicnn command does: freed arrays reused, not faulted in
    model = minicnn.load()
    # warm-up, untimed: the dataset files read, the kernels compiled or loaded from the cache
    run_evaluation(model, 10, list(METHODS), progress=False, slow_limit=0, graphcut_limit=0,
                   curve_limit=2, baselines=False)
    out = {}
    for name in METHODS + ("all",):
        chosen = list(METHODS) if name == "all" else [name]
        start = time.perf_counter()
        result = run_evaluation(model, n_images, chosen, progress=False, batch_size=BATCH,
                                slow_limit=0, graphcut_limit=0, curve_limit=curve_images,
                                baselines=False)
        out[name] = (time.perf_counter() - start, result["rows"])
    return out


class _TorchModel:
    """What the metrics call on a model (``forward`` and ``predict``, the forward that no
    backward follows, on numpy), run by torch without autograd."""

    def __init__(self, net):
        self.net = net

    def forward(self, x):
        import torch
        with torch.no_grad():
            return self.net(torch.from_numpy(x)).numpy()

    predict = forward


def captum_worker(n_images, curve_images):
    """The same evaluation loop with Captum's maps and torch's forward passes."""
    import numpy as np
    import torch
    from captum import attr

    import minicnn
    from minicnn import saliency
    from minicnn.experiments.evaluate import _score_maps, _subset, _Tally
    from minicnn.io.datasets import make_cluttered
    from minicnn.io.images import Preprocess, to_input
    from minicnn.saliency.gradcam import default_cam_layer

    sys.path.insert(0, str(ROOT / "examples"))
    from bench_smoothgrad import torch_net

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model = minicnn.load()
    net = torch_net(model)
    for p in net.parameters():
        p.requires_grad_(False)
    cam = net[model.index(default_cam_layer(model))]
    explain = {
        "gradient": lambda x, t: attr.Saliency(net).attribute(x, target=t, abs=False),
        "guided_backprop": lambda x, t: attr.GuidedBackprop(net).attribute(x, target=t),
        "deconvnet": lambda x, t: attr.Deconvolution(net).attribute(x, target=t),
        "input_x_gradient": lambda x, t: attr.InputXGradient(net).attribute(x, target=t),
        "grad_cam": lambda x, t: attr.LayerGradCam(net, cam).attribute(
            x, target=t, relu_attributions=True)[:, 0],
        "guided_grad_cam": lambda x, t: attr.GuidedGradCam(net, cam).attribute(
            x, target=t, interpolate_mode="bilinear"),
    }
    prep = Preprocess.from_meta(model.meta)
    seed = int(model.meta.get("dataset", {}).get("seed", 0))
    wrapped = _TorchModel(net)

    def evaluate(name, n_images, curve_images):
        tally = _Tally()
        for first in range(0, n_images, BATCH):
            indices = np.arange(first, min(first + BATCH, n_images))
            batch = make_cluttered(indices, "test", seed)
            x = to_input(batch.images, prep)                       # (B, 3, 64, 64) float32
            targets = batch.labels
            xt = torch.from_numpy(x).requires_grad_(True)
            maps = saliency.to_map(explain[name](xt, targets.tolist()).detach().numpy(),
                                   x.shape[2:])
            _score_maps(tally, wrapped, x, targets, maps, _subset(batch, indices >= 0),
                        indices, 0, curve_images, 256)
        return tally.summary(name)

    for name in METHODS:                                # warm-up, untimed, as for minicnn
        evaluate(name, 10, 2)
    out = {}
    for name in METHODS:
        start = time.perf_counter()
        row = evaluate(name, n_images, curve_images)
        out[name] = (time.perf_counter() - start, [row])
    out["all"] = (sum(seconds for seconds, _ in out.values()),
                  [rows[0] for _, rows in out.values()])
    return out


def run_worker(library, args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "MINICNN_NUM_THREADS"):
        env[var] = str(args.threads)
    out = subprocess.run([sys.executable, __file__, "--worker", library, "--images",
                          str(args.images), "--curve-images", str(args.curve_images)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"{library} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report

def check_same_work(ours, theirs):
    """Stop if the two sides did not compute the same evaluation. Float32 maps of two engines
    may order a near-tie differently, so a rate may differ by an image or two."""
    import math
    for name in METHODS:
        a = {row["method"]: row for row in ours[name][1]}[name]
        b = {row["method"]: row for row in theirs[name][1]}[name]
        for key, value in a.items():
            if not isinstance(value, float) or (math.isnan(value) and math.isnan(b[key])):
                continue
            tol = 1e-3 if key.endswith("_auc") else 2.0 / a["n_images"]
            if not abs(value - b[key]) <= tol:
                sys.exit(f"{name}: {key} is {value} in minicnn and {b[key]} in the Captum "
                         f"loop; the two sides did not do the same work")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--curve-images", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--worker", choices=["minicnn", "captum"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        work = minicnn_worker if args.worker == "minicnn" else captum_worker
        print(json.dumps(work(args.images, args.curve_images)))
        return
    load = os.getloadavg()[0]
    rounds = [(run_worker("minicnn", args), run_worker("captum", args))
              for _ in range(args.rounds)]
    for ours, theirs in rounds:
        check_same_work(ours, theirs)
    print(f"# minicnn evaluate vs the same loop in PyTorch + Captum: {args.images} test images "
          f"(curves on {args.curve_images}), {args.threads} threads per process, {args.rounds} "
          f"rounds; load average {load:.1f} at the start\n")
    print("| method | minicnn images/s | Captum loop images/s | time ratio | ratio per round |")
    print("|---|---|---|---|---|")
    for name in METHODS + ("all",):
        ours = statistics.median(r[0][name][0] for r in rounds)
        theirs = statistics.median(r[1][name][0] for r in rounds)
        ratios = sorted(r[0][name][0] / r[1][name][0] for r in rounds)
        label = "all six (minicnn shares passes)" if name == "all" else name
        print(f"| {label} | {args.images / ours:.0f} | {args.images / theirs:.0f} | "
              f"{ours / theirs:.2f} | {ratios[0]:.2f}-{ratios[-1]:.2f} |")
    print(f"\nBoth sides computed the same evaluation (pointing hits, localisation, curve areas "
          f"compared). Load average at the end {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
