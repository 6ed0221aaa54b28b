"""DeepLIFT with the Rescale rule (Shrikumar, Greenside & Kundaje 2017, arXiv:1704.02685).

DeepLIFT explains the *difference* S_c(x) - S_c(x0) between the image and a reference x0
(a black image by default: zeros in the model's normalised input space). It runs the model
once on the images and their references stacked into one batch (2N rows), then one backward
pass that carries *multipliers* instead of derivatives: through a linear layer the gradient,
through each nonlinearity the difference quotient (f(x) - f(x0)) / (x - x0) (the derivative
where the two are closer than 1e-10), through a max-pool the quotient of what reaches each
input from the windows' changes, as Captum defines it (``layers.MaxPool2d._rescale``),
through a product the average multipliers (``layers.joins``). The attribution is
(x - x0) * multiplier, and it sums to S_c(x) - S_c(x0) exactly ("summation to delta").

How minicnn differs from Captum's DeepLift, which it otherwise matches (tested): where
max-pooling windows overlap, minicnn adds what reaches an input from each window (Captum's
max_unpool keeps one); the fallback to the gradient is each image's own (Captum's takes the
first image's for the whole batch, Captum #1276); the rule is applied per node, so a layer
used twice is two nodes (Captum's hooks confuse a reused ReLU module, #1104); and a product
of two branches gets its exact rule (Captum sees only the gradient there, #1085).
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_images
from minicnn.engine.layers.rules import Rescale
from minicnn.saliency.baselines import baseline_like
from minicnn.saliency.gradient import CHUNK_SIZE, check_targets, one_hot, resolve_targets

__all__ = ["deeplift"]


def deeplift(model, x, target=None, baseline=None, return_gap=False):
    """DeepLIFT-Rescale attributions of the pre-softmax score, shaped like x (N, C, H, W).

    - target: None (each image's predicted class), an int, or a sequence of N ints
    - baseline: the reference x0: None or 0 (zeros, a black image in the normalised input
      space), "zeros", "blur", a number, or an array broadcastable to x (``baselines``)
    - return_gap: also return the summation gap per image, (N,) float64: the sum of the
      attributions - (S_c(x) - S_c(x0)), 0 up to rounding (Captum's convergence delta)
    One forward pass over 2N rows (images and references) and one backward pass, CHUNK_SIZE
    rows at a time.
    """
    x = check_images(x)
    base = baseline_like(x, baseline)                                  # (N, C, H, W)
    N = len(x)
    wanted = None if target is None else check_targets(target, N)      # (N,) or None
    attributions = np.zeros_like(x)
    gap = np.zeros(N)
    rule = Rescale()
    step = max(CHUNK_SIZE // 2, 1)                                     # 2 rows per image
    for start in range(0, N, step):
        rows = slice(start, min(start + step, N))
        B = rows.stop - rows.start
        both = np.concatenate([x[rows], base[rows]])                   # (2B, C, H, W)
        scores = model.forward(both)                                   # (2B, K)
        targets = resolve_targets(None if wanted is None else wanted[rows], scores[:B])
        seed = one_hot(np.concatenate([targets, targets]), scores.shape[1], scores.dtype)
        multipliers = model.backward(seed, rule=rule)[:B]              # (B, C, H, W)
        attributions[rows] = (x[rows] - base[rows]) * multipliers
        k = np.arange(B)
        change = scores[k, targets].astype(np.float64) - scores[B + k, targets]
        gap[rows] = attributions[rows].sum(axis=(1, 2, 3), dtype=np.float64) - change
    return (attributions, gap) if return_gap else attributions
