"""Teaching point 2 (Simonyan et al. 2013, §3, eq. 2): the saliency is a first-order Taylor term.

    S_c(I0 + d) ~ S_c(I0) + w . d,   w = dS_c/dI at I0.

A network of ReLU, max-pool, convolution and linear layers is piecewise linear: near I0, as
long as no ReLU changes sign and no max-pool changes its winner, S_c is *exactly* linear and
the error of the first-order term is zero (up to rounding). That is stronger than the usual
O(|d|^2) of a smooth function. Once d is large enough to cross a kink, the gradient changes
and the error appears. We detect "a switch happened" as "the gradient at I0 + d differs from
the gradient at I0", which for a piecewise-linear function is the same thing.

    python examples/teach_taylor.py            # the shipped model on a sample image
"""
import json
from pathlib import Path

import numpy as np

import minicnn
from minicnn.saliency import backprop, gradient


def taylor_table(model, x0, target, sizes, seed=0):
    """For each |d| in `sizes` (random direction, float64): (|d|, error, switched).

    error = |S_c(x0 + d) - S_c(x0) - w . d|; switched = gradient at x0 + d != gradient at x0.
    """
    model.astype(np.float64)
    x0 = x0.astype(np.float64)
    w, scores, _ = backprop(model, x0, target)
    s0 = scores[0, target]
    u = np.random.default_rng(seed).normal(size=x0.shape)
    u /= np.linalg.norm(u)
    rows = []
    for size in sizes:
        d = size * u
        s = model.forward(x0 + d)[0, target]
        error = abs(s - s0 - float((w * d).sum()))
        w_d = gradient(model, x0 + d, target)
        switched = not np.allclose(w_d, w, rtol=1e-9, atol=1e-12 * np.abs(w).max())
        rows.append((size, error, switched))
    return rows


def main():
    root = Path(__file__).resolve().parent
    samples = json.loads((root / "images" / "samples.json").read_text())["images"]
    name, info = next(iter(samples.items()))
    model = minicnn.load()
    from minicnn.io.images import Preprocess, read_image, to_input
    prep = Preprocess.from_meta(model.meta)
    x0 = to_input(read_image(root / "images" / name, prep), prep)
    c = info["label"]
    print(f"{name}, class {info['class']}: S_c(x0 + d) vs S_c(x0) + w.d, d random, float64")
    print(f"{'|d|':>9s} {'|error|':>11s}  gradient changed?")
    for size, error, switched in taylor_table(model, x0, c, [10.0 ** -k for k in range(7, -2, -1)]):
        print(f"{size:9.0e} {error:11.3e}  {'yes: some ReLU/max-pool switched' if switched else 'no'}")
    print("While no unit switches, the linear term is exact (error at rounding level); the "
          "error appears once |d| is large enough to cross a kink.")


if __name__ == "__main__":
    main()
