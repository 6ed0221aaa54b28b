"""Image-specific class saliency by backpropagation (Simonyan, Vedaldi & Zisserman 2013, §3).

The recipe, one function per step:

1. ``gradient``: forward the image, take the class score S_c *before* the softmax, and
   backpropagate a one-hot gradient on S_c down to the pixels: w = dS_c/dI, shaped like I.
2. ``saliency_map``: M(i, j) = max over colour channels of |w(c, i, j)|   (paper, top of p. 4).
3. Show M as an image (``minicnn.viz``).

Why the score and not the probability: the softmax couples the classes, so the probability of
c can rise by *lowering* the other scores; its gradient mixes in every other class's gradient
(see ``examples/teach_softmax_vs_score.py``). dS_c/dI asks only "what makes c score higher".

``colored_gradient`` and ``grayscale_gradient`` are the two pictures of the blog post in
``shared/seed`` (its figure came from a popular PyTorch visualisation repository); they
normalise differently from the paper's map, as their docstrings say.

Every function takes a batch: x is (N, C, H, W) and the result is per image.
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = [
    "gradient",
    "saliency_map",
    "colored_gradient",
    "grayscale_gradient",
    "resolve_targets",
    "one_hot",
    "backprop",
    "softmax",
    "probability_gradient",
]


def resolve_targets(target, scores: np.ndarray) -> np.ndarray:
    """Turn `target` into one class index per image -> int64 (N,).

    - None: each image's predicted class (argmax of its scores);
    - an int: the same class for every image;
    - a sequence of N ints: one class per image.
    Raises ValueError naming the valid range when a class is out of range.
    """
    n, k = scores.shape
    if target is None:
        return scores.argmax(axis=1).astype(np.int64)
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target must be an int, a sequence of {n} ints or None, got a bool")
    if isinstance(target, Integral):
        targets = np.full(n, int(target), dtype=np.int64)
    else:
        arr = np.asarray(target)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise TypeError(f"target must be an int, a sequence of {n} ints or None, "
                            f"got {type(target).__name__} {arr.dtype} of shape {arr.shape}")
        if len(arr) != n:
            raise ValueError(f"got {len(arr)} targets for a batch of {n} images")
        targets = arr.astype(np.int64)
    bad = targets[(targets < 0) | (targets >= k)]
    if bad.size:
        raise ValueError(f"target {int(bad[0])} is out of range: the model has {k} classes, "
                         f"valid targets are 0..{k - 1}")
    return targets


def one_hot(targets: np.ndarray, num_classes: int, dtype) -> np.ndarray:
    """(N,) class indices -> (N, K) array with a single 1 per row: dL/dS for L = S_target."""
    seed = np.zeros((len(targets), num_classes), dtype=dtype)
    seed[np.arange(len(targets)), targets] = 1
    return seed


def backprop(model, x, target=None, relu_rule: str = "gradient"):
    """One forward and one backward of a one-hot gradient on the pre-softmax target score.

    Returns (grad (N, C, H, W), scores (N, K), targets (N,)). The building block of every
    gradient-based method; `relu_rule` picks how ReLU layers pass the gradient back
    ("gradient", "guided" or "deconvnet", see minicnn.layers.ReLU.backward).
    """
    scores = model.forward(x)                                # (N, K), pre-softmax
    targets = resolve_targets(target, scores)                # (N,)
    grad = model.backward(one_hot(targets, scores.shape[1], scores.dtype), relu_rule=relu_rule)
    return grad, scores, targets


def gradient(model, x, target=None) -> np.ndarray:
    """Vanilla gradient dS_target/dx of the pre-softmax score, shaped like x (N, C, H, W).

    target: None (each image's predicted class), an int, or a sequence of N ints.
    """
    return backprop(model, x, target)[0]


def _check_grad(grad) -> np.ndarray:
    grad = np.asarray(grad)
    if grad.ndim != 4:
        raise ValueError(f"expected a gradient shaped (N, C, H, W), got shape {grad.shape}")
    if grad.dtype.kind != "f":
        raise TypeError(f"expected a floating-point gradient, got dtype {grad.dtype}")
    return grad


def saliency_map(grad) -> np.ndarray:
    """The paper's saliency map: (N, C, H, W) -> (N, H, W), max over channels of |grad|."""
    return np.abs(_check_grad(grad)).max(axis=1)


def colored_gradient(grad) -> np.ndarray:
    """The signed gradient as an RGB picture: (N, 3, H, W) -> (N, H, W, 3) in [0, 1].

    Each image is min-max normalised on its own, so 0.5-ish grey is "no gradient" only
    roughly: the zero maps to -min / (max - min). Unlike the paper's map this keeps the sign
    and the colour channel, which is why it looks like a ghost of the object in colours.
    """
    g = _check_grad(grad).astype(np.float64)
    lo = g.min(axis=(1, 2, 3), keepdims=True)
    hi = g.max(axis=(1, 2, 3), keepdims=True)
    g = (g - lo) / np.where(hi > lo, hi - lo, 1.0)
    return g.transpose(0, 2, 3, 1)                           # (N, H, W, 3)


def grayscale_gradient(grad, percentile: float = 99.0) -> np.ndarray:
    """The post's grayscale picture: (N, C, H, W) -> (N, H, W) in [0, 1].

    Sums |grad| over channels (the paper takes the max), then maps the image's minimum to 0
    and its `percentile`-th percentile to 1, clipping above, so a few extreme pixels do not
    leave the rest black. Use `saliency_map` for the paper's exact definition.
    """
    g = np.abs(_check_grad(grad).astype(np.float64)).sum(axis=1)        # (N, H, W)
    lo = g.min(axis=(1, 2), keepdims=True)
    hi = np.percentile(g, percentile, axis=(1, 2), keepdims=True)
    return np.clip((g - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) scores, computed stably."""
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probability_gradient(model, x, target=None) -> np.ndarray:
    """Gradient of the softmax *probability* p_target, shaped like x. For teaching only.

    By the chain rule through the softmax, dp_c/dS_k = p_c (1[k = c] - p_k), so
    dp_c/dx = p_c (dS_c/dx - sum_k p_k dS_k/dx): the score gradient of c minus a
    probability-weighted mix of every class's. One backward pass with that row of the softmax
    Jacobian as the seed gives it. Compare with `gradient`, which the paper uses.
    """
    scores = model.forward(x)                                # (N, K)
    targets = resolve_targets(target, scores)                # (N,)
    p = softmax(scores.astype(np.float64))                   # (N, K)
    p_c = p[np.arange(len(targets)), targets][:, None]       # (N, 1)
    seed = p_c * (one_hot(targets, p.shape[1], np.float64) - p)
    return model.backward(seed.astype(scores.dtype))
