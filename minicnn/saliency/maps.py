"""From an attribution to a map: the one place where an attribution becomes an (H, W) picture
per image.

- ``saliency_map``: the paper's map (Simonyan, Vedaldi & Zisserman 2013, arXiv:1312.6034, §3,
  top of p. 4), M(i, j) = max over colour channels c of |w(c, i, j)|;
- ``to_map``: any method's output -> (N, H, W): an attribution (N, C, H, W) by the paper's max
  over channels of |.| (or, signed, by the sum over channels), a coarse map (N, h, w) such as
  Grad-CAM's by bilinear upsampling to the image;
- ``upsample_bilinear``: that resize, exactly as torch's bilinear interpolation.
Re-exported by ``minicnn.saliency``.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_array

__all__ = ["saliency_map", "to_map", "upsample_bilinear"]


def saliency_map(grad) -> np.ndarray:
    """The paper's saliency map: (N, C, H, W) -> (N, H, W), max over channels of |grad|."""
    grad = check_array(grad, "grad", 4, "(N, C, H, W)")
    return np.abs(grad).max(axis=1)                                  # (N, H, W)


def to_map(attribution, size, signed: bool = False) -> np.ndarray:
    """A method's output -> one map per image at the image's size (H, W), float64.

    - attribution: (N, C, H, W) (gradient, guided backprop, SmoothGrad, ...) or (N, h, w) (a
      coarse map such as Grad-CAM's at its layer's resolution)
    - size: (H, W) of the images
    - signed: False (the paper's max over channels of |.|, always >= 0); True keeps the sign
      by summing over channels instead (the signed comparison of Adebayo et al. 2018). A
      coarse map is returned as it is (only resized) either way.
    Returns (N, H, W) float64.
    """
    a = check_array(attribution, "attribution")
    H, W = (int(s) for s in size)
    if a.ndim == 4 and a.shape[2:] == (H, W):
        m = a.sum(axis=1) if signed else np.abs(a).max(axis=1)        # (N, H, W)
        return m.astype(np.float64)
    if a.ndim == 3:
        a = a.astype(np.float64)
        return a if a.shape[1:] == (H, W) else upsample_bilinear(a, (H, W))   # (N, H, W)
    raise ValueError(f"attribution must be shaped (N, C, {H}, {W}) or (N, h, w), got shape "
                     f"{a.shape}")


def upsample_bilinear(maps, size) -> np.ndarray:
    """Bilinear resize (N, h, w) -> (N, H, W), as torch.nn.functional.interpolate(
    mode="bilinear", align_corners=False).

    Output row i samples the input at src = (i + 0.5) * h / H - 0.5 (pixel centres line up),
    clamped to >= 0; it mixes rows floor(src) and floor(src) + 1 (the last row repeats past
    the edge) with weights 1 - frac(src) and frac(src). Rows first, then columns.
    """
    maps = check_array(maps, "upsample_bilinear: maps", 3, "(N, h, w)")
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
