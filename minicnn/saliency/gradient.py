"""Attribution by one backward pass: the class to explain, the vanilla gradient, and the
variants that change only the rule at each activation (deconvnet, guided backpropagation) or
multiply by the input. Also the checks and batching helpers the other method modules share.

Large batches: every pass over a caller's images runs through ``in_chunks``, CHUNK_SIZE images
at a time, so memory holds one chunk's activations whatever the batch (the shipped model keeps
~6.5 MB of activations per image). Each image's result is what it would be alone; a batch of
0 images gives an empty result of the right shape.

Everything here is re-exported by ``minicnn.saliency``, the module to import.
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from minicnn._checks import check_images

__all__ = ["resolve_targets", "check_targets", "one_hot", "backprop", "gradient", "softmax",
           "probability_gradient", "guided_backprop", "deconvnet", "input_x_gradient",
           "in_chunks", "CHUNK_SIZE", "row_batches", "accumulate_per_image"]

CHUNK_SIZE = 50  # images per pass over a caller's batch; the methods' batch_size default too
_INT64_MAX = int(np.iinfo(np.int64).max)


def resolve_targets(target, scores: np.ndarray) -> np.ndarray:
    """Turn `target` into one class index per image -> int64 (N,).

    - None: each image's predicted class (argmax of its scores (N, K));
    - an int: the same class for every image;
    - a sequence of N ints: one class per image.
    Raises ValueError naming the valid range when a class is out of range.
    """
    if target is None:
        return scores.argmax(axis=1).astype(np.int64)
    return check_targets(target, *scores.shape)


def check_targets(target, n: int, k: int | None = None) -> np.ndarray:
    """An int or a sequence of n ints -> int64 (n,), each in 0..k-1 (only >= 0 if k is None).

    Integers of any size are compared as integers (2**70 or a numpy uint64 is out of range,
    never wrapped around); TypeError for a non-integer, ValueError for a value out of range.
    """
    values = _target_values(target, n)
    top = _INT64_MAX if k is None else k - 1
    if values.size and (values.min() < 0 or values.max() > top):   # exact, in the array's type
        bad = next(int(v) for v in values if not 0 <= int(v) <= top)
        valid = (f"the model has {k} classes, valid targets are 0..{k - 1}" if k is not None
                 else "valid targets are 0..K-1 for a model with K classes")
        raise ValueError(f"target {bad} is out of range: {valid}")
    values = values.astype(np.int64)
    return np.full(n, values[0]) if isinstance(target, Integral) else values


def _target_values(target, n: int) -> np.ndarray:
    """An int or n ints as a 1-D integer array (object dtype for Python ints beyond int64),
    not yet checked against a range; TypeError or ValueError for the wrong type or length."""
    wrong = f"target must be an int, a sequence of {n} ints or None, got "
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(wrong + repr(target))
    if isinstance(target, Integral):
        return np.array([int(target)], dtype=object)
    values = np.asarray(target)
    if values.ndim == 1 and values.size == 0:
        values = values.astype(np.int64)           # [] has numpy's default float dtype
    if values.ndim != 1 or not (values.dtype.kind in "iu" or (
            values.dtype == object and all(isinstance(v, Integral)
                                           and not isinstance(v, (bool, np.bool_))
                                           for v in values))):
        raise TypeError(wrong + f"{type(target).__name__} {values.dtype} of shape "
                        f"{values.shape}")
    if len(values) != n:
        raise ValueError(f"got {len(values)} targets for a batch of {n} images")
    return values


def one_hot(targets: np.ndarray, num_classes: int, dtype) -> np.ndarray:
    """(N,) class indices -> (N, K) array with a single 1 per row: dL/dS for L = S_target."""
    seed = np.zeros((len(targets), num_classes), dtype=dtype)
    seed[np.arange(len(targets)), targets] = 1
    return seed


def in_chunks(model, x, target=None, work=None):
    """A pass over a batch, CHUNK_SIZE images at a time: the one place where a caller's batch
    is split, so that memory does not grow with it.

    For each chunk: the forward pass (scores (B, K) before the softmax), its targets
    (``resolve_targets``), then ``work(x_chunk, scores, targets)``, which runs right after
    that forward pass (so it may call ``model.backward``) and returns a tuple of arrays with
    one row per image; without ``work`` the pass is ``model.predict``, which keeps nothing,
    and the answer is just each image's scores and class to explain.
    Returns (scores (N, K), targets (N,), *work's arrays over all N).
    A batch of 0 images runs the model once on it, so the empty results have their shapes.
    """
    x = check_images(x)
    N = len(x)
    if target is not None and not isinstance(target, Integral):
        target = _target_values(target, N)         # one per image, sliced with its chunk
    parts = []
    for start in range(0, max(N, 1), CHUNK_SIZE):
        rows = slice(start, min(start + CHUNK_SIZE, N))
        # no work, no backward: the lighter forward that keeps nothing (Graph.predict)
        scores = (model.forward if work else model.predict)(x[rows])   # (B, K)
        targets = resolve_targets(target if target is None or isinstance(target, Integral)
                                  else target[rows], scores)           # (B,)
        parts.append((scores, targets) + (tuple(work(x[rows], scores, targets)) if work else ()))
    return tuple(p[0] if len(p) == 1 else np.concatenate(p) for p in zip(*parts))


def backprop(model, x, target=None, rule: str = "gradient", *, relu_rule: str | None = None):
    """One forward and one backward of a one-hot gradient on the pre-softmax target score.

    Returns (grad (N, C, H, W), scores (N, K), targets (N,)). The building block of every
    gradient-based method; `rule` picks how activations pass the gradient back
    ("gradient", "guided" or "deconvnet", see minicnn.engine.layers.activations);
    `relu_rule` is its old name, still accepted (``Graph.backward`` decides between them).
    """
    def backward(xc, scores, targets):
        return (model.backward(one_hot(targets, scores.shape[1], scores.dtype),
                               rule=rule, relu_rule=relu_rule),)       # (B, C, H, W)
    scores, targets, grad = in_chunks(model, x, target, backward)
    return grad, scores, targets


def gradient(model, x, target=None) -> np.ndarray:
    """Vanilla gradient dS_target/dx of the pre-softmax score, shaped like x (N, C, H, W).

    target: None (each image's predicted class), an int, or a sequence of N ints.
    """
    return backprop(model, x, target)[0]


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
    def backward(xc, scores, targets):
        p = softmax(scores.astype(np.float64))               # (B, K)
        p_c = p[np.arange(len(targets)), targets][:, None]   # (B, 1)
        seed = p_c * (one_hot(targets, p.shape[1], np.float64) - p)
        return (model.backward(seed.astype(scores.dtype)),)
    return in_chunks(model, x, target, backward)[2]


# ============================================================================ many copies per image

# SmoothGrad (noisy copies), integrated gradients (points on a path) and occlusion (occluded
# copies) each run the model on many copies of every image. They number the copies as rows
# of one long list (row r is some copy of image image_of_row[r]), run the rows batch by batch
# so that memory is bounded, and add each batch's results into their image's total.

def row_batches(total: int, batch_size: int):
    """The rows 0..total-1 in consecutive batches: yields int64 index arrays (B,), B <=
    batch_size, the last one shorter when batch_size does not divide total."""
    for start in range(0, total, batch_size):
        yield np.arange(start, min(start + batch_size, total))


def accumulate_per_image(total: np.ndarray, image_of_row: np.ndarray, values: np.ndarray):
    """In place: total[n] += the sum of the rows of ``values`` that are copies of image n.

    - total: (N, ...) float64, one running sum per image
    - image_of_row: (B,) ints in 0..N-1, the image each row of ``values`` is a copy of
    - values: (B, ...), the same trailing shape as ``total``
    Each image's rows are summed first (in values' dtype), then added to its total."""
    for n in np.unique(image_of_row):
        total[n] += values[image_of_row == n].sum(axis=0)


# =================================================================== activation rules, x * grad

def guided_backprop(model, x, target=None) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2014), shaped like x (N, C, H, W).

    The backward pass of ``gradient``, except that each ReLU passes the signal back only where
    BOTH its forward input was positive (as the gradient does) AND the incoming signal is
    positive (as deconvnet does); everything else is the ordinary chain rule. Other
    rectifiers (ReLU6, Hardswish, SiLU) pass f'(x) * max(signal, 0), gates (Sigmoid,
    Hardsigmoid) the gradient: ``minicnn.engine.layers.activations`` says why.
    """
    return backprop(model, x, target, rule="guided")[0]


def deconvnet(model, x, target=None) -> np.ndarray:
    """Deconvnet (Zeiler & Fergus 2014, in Springenberg et al.'s phrasing), shaped like x.

    The backward pass of ``gradient``, except that each ReLU passes the signal back where the
    INCOMING signal is positive, whatever its forward input was (the gradient instead passes
    where the forward input was positive); every other layer backpropagates as usual. Other
    rectifiers pass max(signal, 0) too, gates the gradient
    (``minicnn.engine.layers.activations``).
    """
    return backprop(model, x, target, rule="deconvnet")[0]


def input_x_gradient(model, x, target=None) -> np.ndarray:
    """x * dS_target/dx, elementwise, shaped like x (Shrikumar et al. 2016).

    For a linear model S = w.x + b this is each input's contribution w_i x_i to the score.
    """
    return check_images(x) * gradient(model, x, target)
