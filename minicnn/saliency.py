"""Saliency by backpropagation: the vanilla gradient and the methods that came after it.

The vanilla recipe (Simonyan, Vedaldi & Zisserman 2013, arXiv:1312.6034, §3), one function
per step:

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

The later methods, each checked against Captum (Kokhlikyan et al. 2020) in tests/test_methods.py:

- ``deconvnet`` (Zeiler & Fergus 2014) and ``guided_backprop`` (Springenberg et al. 2014,
  arXiv:1412.6806): the same backward pass with a different rule at every ReLU;
- ``input_x_gradient`` (Shrikumar et al. 2016, arXiv:1605.01713): x * dS_c/dx;
- ``smoothgrad`` (Smilkov et al. 2017, arXiv:1706.03825): any of these averaged over noisy
  copies of the image; also SmoothGrad-squared and VarGrad (Adebayo et al. 2018);
- ``integrated_gradients`` (Sundararajan, Taly & Yan 2017, arXiv:1703.01365): gradients
  along the straight path from a baseline to the image, times (image - baseline);
- ``grad_cam`` and ``guided_grad_cam`` (Selvaraju et al. 2017, arXiv:1610.02391): a coarse
  class map from a conv layer's activations weighted by their mean gradient;
- ``occlusion`` (Zeiler & Fergus 2014, §4.2): how much the score drops when a window of the
  image is replaced by a baseline; no gradient at all.

``METHODS`` maps each name to its function. Every function takes a batch: x is (N, C, H, W),
``target`` is None (each image's predicted class), an int, or a sequence of N ints, and the
result is per image.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from minicnn.layers import Conv2d, ReLU
from minicnn.progress import Progress

__all__ = [
    "gradient",
    "saliency_map",
    "colored_gradient",
    "grayscale_gradient",
    "resolve_targets",
    "check_targets",
    "one_hot",
    "backprop",
    "softmax",
    "probability_gradient",
    "guided_backprop",
    "deconvnet",
    "input_x_gradient",
    "smoothgrad",
    "SMOOTHGRAD_KINDS",
    "integrated_gradients",
    "integration_points",
    "IG_METHODS",
    "blur",
    "grad_cam",
    "default_cam_layer",
    "upsample_bilinear",
    "guided_grad_cam",
    "occlusion",
    "METHODS",
    "get_method",
]


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
    """An int or a sequence of n ints -> int64 (n,), each in 0..k-1 (only >= 0 if k is None)."""
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
    bad = targets[(targets < 0) | (targets >= (k if k is not None else np.iinfo(np.int64).max))]
    if bad.size:
        valid = f"the model has {k} classes, valid targets are 0..{k - 1}" if k is not None \
            else "class indices start at 0"
        raise ValueError(f"target {int(bad[0])} is out of range: {valid}")
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


# ============================================================================ shared checks

def _check_input(x) -> np.ndarray:
    """x must be a float32 or float64 numpy array shaped (N, C, H, W)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected x as a numpy.ndarray shaped (N, C, H, W), "
                        f"got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"expected x shaped (N, C, H, W), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"expected x of dtype float32 or float64, got {x.dtype}")
    return x


def _positive_int(value, what: str) -> int:
    """An int >= 1, or a TypeError/ValueError naming `what`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{what} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be an int >= 1, got {value!r}")
    return int(value)


def _choice(value, choices, what: str):
    """`value` if it is one of `choices`, else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices are {', '.join(choices)}")
    return value


def _row_batches(total: int, batch_size: int):
    """range(total) in consecutive chunks of at most batch_size, as index arrays."""
    for start in range(0, total, batch_size):
        yield np.arange(start, min(start + batch_size, total))


def _sum_rows_per_image(total: np.ndarray, image_of_row: np.ndarray, values: np.ndarray):
    """total[n] += the sum of the rows of `values` that belong to image n (in place)."""
    for n in np.unique(image_of_row):
        total[n] += values[image_of_row == n].sum(axis=0)


# ============================================================================ ReLU rules, x * grad

def guided_backprop(model, x, target=None) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2014), shaped like x (N, C, H, W).

    The backward pass of ``gradient``, except that each ReLU passes the signal back only where
    BOTH its forward input was positive (as the gradient does) AND the incoming signal is
    positive (as deconvnet does); everything else is the ordinary chain rule.
    """
    return backprop(model, _check_input(x), target, relu_rule="guided")[0]


def deconvnet(model, x, target=None) -> np.ndarray:
    """Deconvnet (Zeiler & Fergus 2014, in Springenberg et al.'s phrasing), shaped like x.

    The backward pass of ``gradient``, except that each ReLU passes the signal back where the
    INCOMING signal is positive, whatever its forward input was (the gradient instead passes
    where the forward input was positive); every other layer backpropagates as usual.
    """
    return backprop(model, _check_input(x), target, relu_rule="deconvnet")[0]


def input_x_gradient(model, x, target=None) -> np.ndarray:
    """x * dS_target/dx, elementwise, shaped like x (Shrikumar et al. 2016).

    For a linear model S = w.x + b this is each input's contribution w_i x_i to the score.
    """
    return _check_input(x) * gradient(model, x, target)


# ============================================================================ SmoothGrad

SMOOTHGRAD_KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")
DEFAULT_SAMPLES = 50


def smoothgrad(model, x, target=None, method=gradient, n_samples=None, noise_level=0.15,
               seed=None, noise=None, kind="smoothgrad", batch_size=50,
               progress=False) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017): a method averaged over noisy copies of x.

    For each image n and sample s, the noisy copy is x_n + e_sn with e_sn ~ N(0, sigma_n^2)
    per pixel and sigma_n = noise_level * (max(x_n) - min(x_n)), the paper's relative noise
    level (it found 10-20% good). `method` runs on every copy, always for the class resolved
    on the CLEAN image (so `target=None` means the clean prediction, not each copy's).

    - method: any function (model, x, target) -> array shaped like x, or a name in METHODS
      (gradient, guided_backprop, deconvnet, input_x_gradient, ...)
    - n_samples: noisy copies per image; default 50, or noise.shape[0] when `noise` is given
    - seed: seeds numpy.random.default_rng; the noise is drawn in x's dtype, sample by sample
      in the order (s, n), so the result does not depend on batch_size
    - noise: the exact noise to add instead of drawing it (noise_level and seed then unused):
      shape (n_samples, N, C, H, W), or (n_samples, 1, C, H, W) for the same noise on every
      image; copy (s, n) is x[n] + noise[s, n]
    - kind: "smoothgrad" mean of the maps; "smoothgrad_sq" mean of their squares;
      "vargrad" their variance, mean of squares minus squared mean (Adebayo et al. 2018);
      the same three as Captum's NoiseTunnel
    - batch_size: noisy copies per forward/backward pass; at most this many copies (and
      their gradients) are in memory at once
    - progress: draw a progress bar on stderr
    Returns an array shaped like x (N, C, H, W), in x's dtype.
    """
    x = _check_input(x)
    method = get_method(method) if isinstance(method, str) else method
    if not callable(method):
        raise TypeError(f"smoothgrad: method must be a function (model, x, target) or a name "
                        f"in {', '.join(METHODS)}, got {type(method).__name__}")
    kind = _choice(kind, SMOOTHGRAD_KINDS, "smoothgrad kind")
    batch_size = _positive_int(batch_size, "batch_size")
    if noise is None:
        n_samples = _positive_int(DEFAULT_SAMPLES if n_samples is None else n_samples,
                                  "n_samples")
        draw = _drawn_noise(x, noise_level, seed)
    else:
        noise = _check_noise(noise, x, n_samples)
        n_samples = noise.shape[0]
        draw = _given_noise(noise, len(x))
    if target is None:  # the clean images' predictions
        targets = resolve_targets(None, model.forward(x))        # (N,)
    else:  # no forward pass needed: `method` checks the range on the first batch
        targets = check_targets(target, len(x))                  # (N,)

    N = len(x)
    total = np.zeros(x.shape, np.float64)                          # sum of maps, per image
    total_sq = np.zeros(x.shape, np.float64) if kind != "smoothgrad" else None
    with Progress(n_samples * N, kind, enabled=progress) as bar:
        for rows in _row_batches(n_samples * N, batch_size):
            image = rows % N                       # row r: sample r // N of image r % N
            noisy = x[image] + draw(rows)                          # (B, C, H, W)
            maps = np.asarray(method(model, noisy, targets[image]))
            if maps.shape != noisy.shape:
                raise ValueError(f"smoothgrad: method {getattr(method, '__name__', method)} "
                                 f"returned shape {maps.shape}, expected the input's shape "
                                 f"{noisy.shape}")
            _sum_rows_per_image(total, image, maps)
            if total_sq is not None:
                _sum_rows_per_image(total_sq, image, np.square(maps, dtype=np.float64))
            bar.update(len(rows))
    mean = total / n_samples
    if kind == "smoothgrad":
        return mean.astype(x.dtype)
    mean_sq = total_sq / n_samples
    return (mean_sq if kind == "smoothgrad_sq" else mean_sq - mean * mean).astype(x.dtype)


def _drawn_noise(x, noise_level, seed):
    """rows -> Gaussian noise (len(rows), C, H, W) scaled by each row's image's sigma."""
    if isinstance(noise_level, (bool, np.bool_)) or not isinstance(noise_level, Real) \
            or not noise_level >= 0:
        raise ValueError(f"noise_level must be a number >= 0 (a fraction of each image's "
                         f"value range), got {noise_level!r}")
    span = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))           # (N,)
    sigma = (noise_level * span).astype(x.dtype).reshape(-1, 1, 1, 1)  # (N, 1, 1, 1)
    rng = np.random.default_rng(seed)
    N = len(x)

    def draw(rows):
        e = rng.standard_normal((len(rows),) + x.shape[1:], dtype=x.dtype)  # (B, C, H, W)
        return e * sigma[rows % N]
    return draw


def _check_noise(noise, x, n_samples) -> np.ndarray:
    """noise shaped (S, N or 1, C, H, W), S == n_samples if that is given -> x's dtype."""
    noise = np.asarray(noise)
    N = len(x)
    if noise.dtype.kind != "f":
        raise TypeError(f"noise must hold floats, got dtype {noise.dtype}")
    if noise.ndim != 5 or noise.shape[1] not in (1, N) or noise.shape[2:] != x.shape[1:]:
        raise ValueError(f"noise must be shaped (n_samples, {N}, *{x.shape[1:]}) or "
                         f"(n_samples, 1, *{x.shape[1:]}), got {noise.shape}")
    if n_samples is not None and _positive_int(n_samples, "n_samples") != noise.shape[0]:
        raise ValueError(f"noise holds {noise.shape[0]} samples but n_samples={n_samples}; "
                         f"leave n_samples out when passing noise")
    return noise.astype(x.dtype, copy=False)


def _given_noise(noise, N):
    """rows -> noise[s, n] for row r = s * N + n (n = 0 when one noise serves every image)."""
    def draw(rows):
        image = rows % N if noise.shape[1] == N else np.zeros_like(rows)
        return noise[rows // N, image]                             # (B, C, H, W)
    return draw


# ============================================================================ integrated gradients

IG_METHODS = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle",
              "gausslegendre")


def integration_points(steps: int, method: str = "gausslegendre"):
    """Where on the path, and with what weight, integrated gradients samples the gradient.

    Returns (alphas, weights), two float64 arrays of shape (steps,): the path points
    baseline + alpha * (x - baseline) and the quadrature weights. The rules are Captum's, so
    that results match its IntegratedGradients with the same n_steps and method:

    - riemann_left, riemann_right, riemann_middle: alphas = linspace(0, 1 - 1/n),
      linspace(1/n, 1), linspace(1/(2n), 1 - 1/(2n)), all n points; weights 1/n;
    - riemann_trapezoid: alphas = linspace(0, 1, n), weights 1/n halved at both ends. NOTE:
      Captum's rule; the points are 1/(n-1) apart, so the weights sum to (n-1)/n rather
      than 1 and this method's completeness gap shrinks only like 1/n;
    - gausslegendre: numpy's Gauss-Legendre nodes and weights, mapped from [-1, 1] to [0, 1].
    Riemann rules need steps >= 2 (Captum asserts it), Gauss-Legendre steps >= 1.
    Captum computes the Riemann points with float32 torch.linspace and rounds the weights to
    float32; here both are exact float64, so float64 results agree with Captum's to about
    1e-7 relative, not to the last bit.
    """
    method = _choice(method, IG_METHODS, "integrated gradients method")
    n = _positive_int(steps, "steps")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1), 0.5 * weights
    if n < 2:
        raise ValueError(f"steps must be >= 2 for {method} (Captum's rule), got {n}")
    weights = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n), weights
    first, last = {"riemann_left": (0.0, 1 - 1 / n), "riemann_right": (1 / n, 1.0),
                   "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n))}[method]
    return np.linspace(first, last, n), weights


def integrated_gradients(model, x, target=None, baseline=None, steps=50,
                         method="gausslegendre", batch_size=50, return_gap=False,
                         progress=False):
    """Integrated gradients (Sundararajan, Taly & Yan 2017), shaped like x (N, C, H, W).

    IG_i = (x_i - b_i) * integral over a in [0, 1] of dS_c/dx_i at b + a (x - b), the
    integral replaced by sum_k w_k * gradient at alpha_k (``integration_points``).
    Completeness: the attributions sum to S_c(x) - S_c(b), up to the quadrature error.

    - baseline b: None or 0 (black in the model's input space: zeros), "zeros", "blur"
      (``blur(x)``: each image Gaussian-blurred, sigma = BLUR_SIGMA pixels), a number, or an
      array broadcastable to x's shape (e.g. (C, 1, 1) channel means or (N, C, H, W))
    - steps, method: the quadrature, see ``integration_points`` (method is one of IG_METHODS)
    - batch_size: path points per forward/backward pass (bounded memory)
    - return_gap: also return the completeness gap per image, (N,) float64:
      sum of the attributions - (S_c(x) - S_c(b)); Captum's convergence delta
    - progress: draw a progress bar on stderr
    Returns attributions (N, C, H, W) in x's dtype, or (attributions, gap).
    """
    x = _check_input(x)
    alphas, weights = integration_points(steps, method)
    batch_size = _positive_int(batch_size, "batch_size")
    base = _baseline(x, baseline)                                 # (N, C, H, W)
    scores = model.forward(x)                                     # (N, K)
    targets = resolve_targets(target, scores)                     # (N,)
    N = len(x)
    diff = x - base                                               # (N, C, H, W)
    total = np.zeros(x.shape, np.float64)                         # sum_k w_k grad_k, per image
    with Progress(len(alphas) * N, "integrated gradients", enabled=progress) as bar:
        for rows in _row_batches(len(alphas) * N, batch_size):
            step, image = rows // N, rows % N                     # step-major, as Captum
            a = alphas[step].astype(x.dtype).reshape(-1, 1, 1, 1)   # (B, 1, 1, 1)
            grad = gradient(model, base[image] + a * diff[image], targets[image])
            w = weights[step].reshape(-1, 1, 1, 1)                # (B, 1, 1, 1)
            _sum_rows_per_image(total, image, w * grad)
            bar.update(len(rows))
    attributions = (total * diff).astype(x.dtype)
    if not return_gap:
        return attributions
    rows = np.arange(N)
    change = scores[rows, targets] - model.forward(base)[rows, targets]   # S_c(x) - S_c(b)
    gap = attributions.sum(axis=(1, 2, 3), dtype=np.float64) - change
    return attributions, gap


BASELINES = ("zeros", "blur")
BLUR_SIGMA = 5.0  # pixels; about a tenth of the shipped model's 64-pixel input


def _baseline(x, baseline) -> np.ndarray:
    """None, 0, "zeros", "blur", a number or an array -> an array shaped like x."""
    if baseline is None:
        return np.zeros_like(x)
    if isinstance(baseline, str):
        kind = _choice(baseline, BASELINES, "baseline")
        return np.zeros_like(x) if kind == "zeros" else blur(x)
    if isinstance(baseline, (bool, np.bool_)):
        raise TypeError("baseline must be a number, an array, 'zeros' or 'blur', got a bool")
    arr = np.asarray(baseline)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"baseline must be a number, an array, 'zeros' or 'blur', got "
                        f"{type(baseline).__name__} of dtype {arr.dtype}")
    try:
        arr = np.broadcast_to(arr, x.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {arr.shape} does not broadcast to x's shape "
                         f"{x.shape}") from None
    return np.ascontiguousarray(arr, dtype=x.dtype)


def blur(x, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """A Gaussian-blurred copy of every image and channel: (N, C, H, W) -> (N, C, H, W).

    Separable kernel exp(-d^2 / (2 sigma^2)) for d = -R..R, R = ceil(3 sigma), normalised to
    sum 1; the image is extended by mirroring at its edges (... c b a | a b c ...). As an
    integrated-gradients baseline it keeps the colours and rough layout and removes edges and
    texture (Sturmfels, Lundberg & Lee 2020, "Visualizing the Impact of Feature Attribution
    Baselines", Distill).
    """
    x = _check_input(x)
    if not (isinstance(sigma, Real) and sigma > 0):
        raise ValueError(f"blur: sigma must be a number > 0 (pixels), got {sigma!r}")
    radius = math.ceil(3 * sigma)
    d = np.arange(-radius, radius + 1)
    kernel = np.exp(-d * d / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    return _convolve_axis(_convolve_axis(x, kernel, 2), kernel, 3)


def _convolve_axis(x, kernel, axis):
    """Correlate every line of x along `axis` with an odd, symmetric kernel; mirrored edges."""
    r = len(kernel) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    padded = np.pad(x, pad, mode="symmetric")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for i, k in enumerate(kernel):
        window = [slice(None)] * x.ndim
        window[axis] = slice(i, i + n)
        out += x.dtype.type(k) * padded[tuple(window)]
    return out


# ============================================================================ Grad-CAM

def default_cam_layer(model) -> str:
    """The layer Grad-CAM uses by default: the ReLU right after the last Conv2d if there is
    one (the rectified feature maps the classifier sees, the usual choice), else that Conv2d.
    ValueError if the model has no Conv2d."""
    convs = model.find(Conv2d)
    if not convs:
        raise ValueError(f"grad_cam: the model has no Conv2d layer to default to; pass layer= "
                         f"a layer with (N, C, h, w) output; layers are {model.names}")
    i = model.index(convs[-1])
    if i + 1 < len(model) and isinstance(model.layers[i + 1], ReLU):
        return model.names[i + 1]
    return convs[-1]


def _cam_layer_index(model, layer) -> int:
    """layer=None, a name or an index -> the layer's position, or a ValueError naming all."""
    if layer is None:
        layer = default_cam_layer(model)
    try:
        return model.index(layer)
    except (KeyError, IndexError):
        raise ValueError(f"grad_cam: no layer {layer!r} in the model; layers are "
                         f"{model.names} (or an index 0..{len(model) - 1})") from None


def _spatial_activation(model, i) -> np.ndarray:
    """The activation of layer i from the last forward, which must be (N, F, h, w)."""
    acts = model.activation(i)
    if acts.ndim != 4:
        spatial = [name for k, name in enumerate(model.names) if model.activation(k).ndim == 4]
        raise ValueError(f"grad_cam: layer {model.names[i]!r} ({type(model.layers[i]).__name__})"
                         f" has output shape {acts.shape}, not (N, C, h, w); Grad-CAM needs "
                         f"a spatial layer, one of {spatial}")
    return acts


def grad_cam(model, x, target=None, layer=None, upsample=False) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): where a conv layer's maps speak for the class.

    With A = the layer's output (N, F, h, w) and G = dS_c/dA:
    weights a_f = mean over (h, w) of G_f (global-average-pooled gradient), and
    cam = ReLU(sum_f a_f A_f).

    - layer: a name or index; None picks ``default_cam_layer(model)`` (the ReLU after the
      last Conv2d). It must have a spatial (N, F, h, w) output.
    - upsample: False returns (N, h, w) at the layer's resolution; True resizes it to x's
      (H, W) with ``upsample_bilinear`` (torch's bilinear, align_corners=False).
    Matches Captum's LayerGradCam(...).attribute(..., relu_attributions=True).
    """
    x = _check_input(x)
    i = _cam_layer_index(model, layer)
    scores = model.forward(x)                                     # (N, K)
    acts = _spatial_activation(model, i)                          # (N, F, h, w)
    targets = resolve_targets(target, scores)                     # (N,)
    grads = model.backward(one_hot(targets, scores.shape[1], scores.dtype), stop_at=i)
    weights = grads.mean(axis=(2, 3))                             # (N, F)
    cam = np.maximum(np.einsum("nf,nfhw->nhw", weights, acts), 0)  # (N, h, w)
    return upsample_bilinear(cam, x.shape[2:]) if upsample else cam


def upsample_bilinear(maps, size) -> np.ndarray:
    """Bilinear resize (N, h, w) -> (N, H, W), as torch.nn.functional.interpolate(
    mode="bilinear", align_corners=False).

    Output row i samples the input at src = (i + 0.5) * h / H - 0.5 (pixel centres line up),
    clamped to >= 0; it mixes rows floor(src) and floor(src) + 1 (the last row repeats past
    the edge) with weights 1 - frac(src) and frac(src). Rows first, then columns.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.dtype.kind != "f":
        raise ValueError(f"upsample_bilinear: expected float maps shaped (N, h, w), got "
                         f"{maps.dtype} of shape {maps.shape}")
    H, W = (int(s) for s in size)
    r0, r1, fr = _linear_taps(maps.shape[1], H, maps.dtype)
    rows = maps[:, r0, :] * (1 - fr)[:, None] + maps[:, r1, :] * fr[:, None]   # (N, H, w)
    c0, c1, fc = _linear_taps(maps.shape[2], W, maps.dtype)
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc                     # (N, H, W)


def _linear_taps(n_in: int, n_out: int, dtype):
    """For each output index: the two input indices it mixes and the second one's weight."""
    if n_in == n_out:  # torch copies when the size does not change
        i = np.arange(n_out)
        return i, i, np.zeros(n_out, dtype)
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, np.clip(src - i0, 0.0, 1.0).astype(dtype)


def guided_grad_cam(model, x, target=None, layer=None) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the upsampled Grad-CAM.

    (N, C, H, W): ``guided_backprop(x)`` * ``grad_cam(x, layer, upsample=True)``[:, None],
    fine detail from the one, class-discriminative location from the other. Matches Captum's
    GuidedGradCam(...).attribute(..., interpolate_mode="bilinear") (Captum's default mode is
    "nearest").
    """
    cam = grad_cam(model, x, target, layer, upsample=True)        # (N, H, W)
    return guided_backprop(model, x, target) * cam[:, None]       # (N, C, H, W)


# ============================================================================ occlusion

def occlusion(model, x, target=None, window=8, stride=4, baseline=0, batch_size=50,
              progress=False) -> np.ndarray:
    """Occlusion (Zeiler & Fergus 2014, §4.2): the score drop when a window is hidden.

    A window slides over the image; inside it every channel is replaced by the baseline and
    the drop S_c(x) - S_c(occluded x) is credited to each pixel of the window. A pixel's
    attribution is the mean drop over the windows that cover it. Exactly Captum's Occlusion
    with sliding_window_shapes=(C, h, w), strides=(C, sh, sw) (or any channel stride) and
    baselines=baseline.

    - window: int or (h, w), at most the image size; the window spans all channels
    - stride: int or (sh, sw), 1 <= stride <= window (Captum's rule: with a larger stride some
      pixels would never be hidden). Along an axis of size H the windows start at
      0, sh, 2 sh, ... (ceil((H - h) / sh) + 1 of them); the last may stick out past the edge
      and is cut off there, so every pixel is covered
    - baseline: a number, or an array broadcastable to x's shape: what hidden pixels become
    - batch_size: occluded images per forward pass (there is no backward pass)
    - progress: draw a progress bar on stderr
    Returns (N, C, H, W) in x's dtype, the same in every channel.
    """
    x = _check_input(x)
    N, C, H, W = x.shape
    wh, ww = _int_pair(window, "window")
    sh, sw = _int_pair(stride, "stride")
    if wh > H or ww > W:
        raise ValueError(f"occlusion: window {(wh, ww)} is larger than the image {(H, W)}")
    if sh > wh or sw > ww:
        raise ValueError(f"occlusion: stride {(sh, sw)} must be at most the window {(wh, ww)}")
    batch_size = _positive_int(batch_size, "batch_size")
    base = _baseline(x, baseline)                                 # (N, C, H, W)
    boxes = [(y, min(y + wh, H), c, min(c + ww, W))               # (y0, y1, x0, x1)
             for y in _window_starts(H, wh, sh) for c in _window_starts(W, ww, sw)]
    scores = model.forward(x)                                     # (N, K)
    targets = resolve_targets(target, scores)                     # (N,)
    clean = scores[np.arange(N), targets]                         # (N,)
    drops = np.zeros((N, H, W), np.float64)                       # summed drops per pixel
    covers = np.zeros((H, W), np.int64)                           # windows covering each pixel
    for y0, y1, x0, x1 in boxes:
        covers[y0:y1, x0:x1] += 1
    P = len(boxes)
    with Progress(N * P, "occlusion", enabled=progress) as bar:
        for rows in _row_batches(N * P, batch_size):
            image, box = rows // P, rows % P                      # image-major
            hidden = x[image]                                     # (B, C, H, W), a copy
            for j, (n, p) in enumerate(zip(image, box)):
                y0, y1, x0, x1 = boxes[p]
                hidden[j, :, y0:y1, x0:x1] = base[n, :, y0:y1, x0:x1]
            drop = clean[image] - model.forward(hidden)[np.arange(len(rows)), targets[image]]
            for j, (n, p) in enumerate(zip(image, box)):
                y0, y1, x0, x1 = boxes[p]
                drops[n, y0:y1, x0:x1] += drop[j]
            bar.update(len(rows))
    per_pixel = (drops / covers)[:, None]                         # (N, 1, H, W)
    return np.repeat(per_pixel, C, axis=1).astype(x.dtype)        # (N, C, H, W)


def _int_pair(value, what: str):
    """An int >= 1 or a pair of them -> (int, int)."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{what} must be an int or a pair (h, w) of ints >= 1, got {value!r}")
    return tuple(_positive_int(v, what) for v in pair)


def _window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Captum's window positions along one axis: ceil((size - window) / stride) + 1 of them."""
    count = -(-(size - window) // stride) + 1
    return np.arange(count) * stride


# ============================================================================ the registry

METHODS = {
    "gradient": gradient,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "input_x_gradient": input_x_gradient,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
    "occlusion": occlusion,
}


def get_method(name: str):
    """METHODS[name], or a ValueError naming the valid methods."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods are {', '.join(METHODS)}")
    return METHODS[name]
