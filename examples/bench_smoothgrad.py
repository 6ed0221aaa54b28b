"""Benchmark: SmoothGrad with 50 noisy samples on one 64x64 image, minicnn vs PyTorch + Captum.

    python examples/bench_smoothgrad.py [--reps 7] [--warmup 2] [--rounds 3] [--threads 2]

Both sides compute the same thing on the shipped model (minicnn/io/data/cluttered_fmnist.npz):
50 noisy copies of one image (sigma = 0.15 x the image's value range, Smilkov et al. 2017),
one forward and one backward of the predicted class's score per copy, the 50 gradients
averaged:

- minicnn: ``saliency.smoothgrad(model, x, n_samples=50, batch_size=50)``, float32;
- PyTorch: Captum's ``NoiseTunnel(Saliency(net)).attribute(nt_type="smoothgrad",
  nt_samples=50, nt_samples_batch_size=50, abs=False)``, float32, the same weights.

All 50 copies go through in one batch on both sides. Each library runs in ITS OWN
subprocess limited to the same number of threads (thread pools of two libraries in one
process distort both). After warm-up, the median of the repetitions is reported, and the
ratio minicnn / PyTorch (issue 16's target: <= 0.85). The pair of processes runs in several
rounds (``--rounds``), alternating, because the load of a shared machine changes from minute
to minute: the medians are over every repetition of every round, and the range of the
per-round ratios is printed beside their ratio.

If the shipped weights are not there, both sides use the same random weights of the same
architecture, and the output says so. Timings depend on the machine and its load: rerun on a
quiet machine before quoting them.
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
N_SAMPLES, NOISE_LEVEL = 50, 0.15


# ----------------------------------------------------------------------------- the model

def shipped_architecture():
    """The shipped network's layer list (BatchNorm folded): names as the exported file's."""
    def conv(c_in, c_out):
        return {"type": "Conv2d", "in_channels": c_in, "out_channels": c_out,
                "kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1], "bias": True}
    pool = {"type": "MaxPool2d", "kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0]}
    plan = [(3, 32), "M", (32, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 192), "M"]
    layers, i = [], 0
    for step in plan:
        if step == "M":
            layers.append({"name": f"features.{i}", **pool})
            i += 1
        else:  # conv, (folded BatchNorm), ReLU: the BatchNorm's index is skipped
            layers.append({"name": f"features.{i}", **conv(*step)})
            layers.append({"name": f"features.{i + 2}", "type": "ReLU"})
            i += 3
    layers += [{"name": "classifier.0", "type": "Flatten"},
               {"name": "classifier.1", "type": "Linear", "in_features": 3072,
                "out_features": 128, "bias": True},
               {"name": "classifier.2", "type": "ReLU"},
               {"name": "classifier.3", "type": "Dropout", "p": 0.3},
               {"name": "classifier.4", "type": "Linear", "in_features": 128,
                "out_features": 10, "bias": True}]
    return layers


def load_model():
    """(minicnn model, True if random weights stand in for the missing shipped file)."""
    import numpy as np
    import minicnn
    from minicnn.engine.kernels.fast import allocator
    from minicnn.io.weights import default_weights_path
    allocator.tune()  # as the minicnn command does: freed arrays reused, not faulted in
    if default_weights_path().is_file():
        return minicnn.load(), False
    model = minicnn.Sequential.from_config(shipped_architecture())
    rng = np.random.default_rng(0)
    for layer in model.layers:  # He-scaled so that signals neither vanish nor explode
        for name, value in layer.parameters().items():
            fan_in = int(np.prod(value.shape[1:])) if value.ndim > 1 else 1
            std = np.sqrt(2.0 / fan_in) if value.ndim > 1 else 0.01
            setattr(layer, name, rng.normal(0, std, size=value.shape).astype(np.float32))
    return model, True


def the_image():
    """One (1, 3, 64, 64) float32 input: a shipped sample image if there is one, else noise."""
    import numpy as np
    from minicnn.io.samples import SAMPLES_DIR
    samples = sorted(SAMPLES_DIR.glob("*.png"))
    if samples:
        from minicnn.io.images import read_image, to_input
        return to_input(read_image(samples[0])), samples[0].name
    return np.random.default_rng(1).normal(size=(1, 3, 64, 64)).astype(np.float32), "noise"


def torch_net(model):
    """The same network in torch.nn (float32, eval mode), from the minicnn model."""
    import torch
    from torch import nn
    make = {
        "Conv2d": lambda c: nn.Conv2d(c["in_channels"], c["out_channels"],
                                      tuple(c["kernel_size"]), tuple(c["stride"]),
                                      tuple(c["padding"])),
        "ReLU": lambda c: nn.ReLU(),
        "MaxPool2d": lambda c: nn.MaxPool2d(tuple(c["kernel_size"]), tuple(c["stride"])),
        "Flatten": lambda c: nn.Flatten(),
        "Linear": lambda c: nn.Linear(c["in_features"], c["out_features"]),
        "Dropout": lambda c: nn.Dropout(c["p"]),
    }
    layers = []
    for cfg, layer in zip(model.config(), model.layers):
        t = make[cfg["type"]](cfg)
        for name, value in layer.parameters().items():
            getattr(t, name).data = torch.from_numpy(value.astype("float32"))
        layers.append(t)
    return nn.Sequential(*layers).eval()


# ----------------------------------------------------------------------------- the workers

def time_it(run, warmup, reps):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def worker(library, warmup, reps):
    """Runs in a subprocess: time one library, print JSON on stdout."""
    sys.path.insert(0, str(ROOT))
    from minicnn import saliency
    model, fallback = load_model()
    x, image = the_image()
    sigma = NOISE_LEVEL * float(x.max() - x.min())
    target = int(model.forward(x).argmax())
    if library == "minicnn":
        def run():
            return saliency.smoothgrad(model, x, target, n_samples=N_SAMPLES,
                                       noise_level=NOISE_LEVEL, batch_size=N_SAMPLES)
    else:
        import torch
        from captum.attr import NoiseTunnel, Saliency
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        tunnel = NoiseTunnel(Saliency(torch_net(model)))
        xt = torch.from_numpy(x)

        def run():
            return tunnel.attribute(xt, nt_type="smoothgrad", nt_samples=N_SAMPLES,
                                    nt_samples_batch_size=N_SAMPLES, stdevs=sigma,
                                    target=target, abs=False)
    times = time_it(run, warmup, reps)
    print(json.dumps({"times": times, "fallback": fallback, "image": image,
                      "sigma": sigma, "target": target}))


def measure(library, args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "MINICNN_NUM_THREADS"):
        env[var] = str(args.threads)
    out = subprocess.run([sys.executable, __file__, "--worker", library, "--reps",
                          str(args.reps), "--warmup", str(args.warmup)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"{library} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", choices=["minicnn", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.warmup, args.reps)
    load = os.getloadavg()[0]
    rounds = [{lib: measure(lib, args) for lib in ("minicnn", "torch")}
              for _ in range(args.rounds)]
    results = {lib: dict(rounds[0][lib], times=[t for r in rounds for t in r[lib]["times"]])
               for lib in ("minicnn", "torch")}
    ratios = sorted(statistics.median(r["minicnn"]["times"]) / statistics.median(r["torch"]["times"])
                    for r in rounds)
    info = results["minicnn"]
    print(f"SmoothGrad, {N_SAMPLES} samples in one batch, one 64x64 image ({info['image']}), "
          f"target class {info['target']}, sigma {info['sigma']:.3f}, {args.threads} threads "
          f"per process, median of {args.reps} after {args.warmup} warm-up, {args.rounds} "
          f"rounds; load average {load:.1f} at the start")
    if info["fallback"]:
        print("NOTE: minicnn/io/data/cluttered_fmnist.npz not found: RANDOM weights of the same "
              "architecture on both sides")
    medians = {lib: statistics.median(r["times"]) for lib, r in results.items()}
    for lib, label in (("minicnn", "minicnn smoothgrad"),
                       ("torch", "PyTorch + Captum NoiseTunnel(Saliency)")):
        t = results[lib]["times"]
        print(f"  {label:<40s} median {medians[lib] * 1e3:7.1f} ms   "
              f"(min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f})")
    best = min(results["minicnn"]["times"]) / min(results["torch"]["times"])
    print(f"  ratio minicnn / PyTorch: {medians['minicnn'] / medians['torch']:.2f} "
          f"(per round {ratios[0]:.2f}-{ratios[-1]:.2f}; of the best repetitions {best:.2f}; "
          f"target <= 0.85)")


if __name__ == "__main__":
    main()
