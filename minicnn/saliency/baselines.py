"""Baselines: what "the feature is absent" means when a method compares an image with a
reference (integrated gradients' starting point, occlusion's patch, insertion's start).

- zeros: 0 in the model's normalised input space, which is the dataset's mean colour;
- blur: the image Gaussian-blurred, so colours and rough layout stay and edges and texture go
  (Sturmfels, Lundberg & Lee 2020, "Visualizing the Impact of Feature Attribution Baselines",
  Distill);
- a number or an array broadcastable to x.
Re-exported by ``minicnn.saliency``.
"""
from __future__ import annotations

import math

import numpy as np

from minicnn._checks import check_choice, check_images, check_number

__all__ = ["BASELINES", "BLUR_SIGMA", "baseline_like", "blur"]


BASELINES = ("zeros", "blur")
BLUR_SIGMA = 5.0  # pixels; about a tenth of the shipped model's 64-pixel input


def baseline_like(x, baseline) -> np.ndarray:
    """None, 0, "zeros", "blur", a number or an array -> an array shaped like x (N, C, H, W),
    in x's dtype."""
    if baseline is None:
        return np.zeros_like(x)
    if isinstance(baseline, str):
        kind = check_choice(baseline, BASELINES, "baseline")
        return np.zeros_like(x) if kind == "zeros" else blur(x)
    if isinstance(baseline, (bool, np.bool_)):
        raise TypeError(f"baseline must be a number, an array, 'zeros' or 'blur', got {baseline!r}")
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
    x = check_images(x)
    sigma = check_number(sigma, "blur sigma (pixels)", above=0)
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
