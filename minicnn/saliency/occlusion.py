"""Occlusion (Zeiler & Fergus 2014, section 4.2): how much the class score drops when a window
of the image is replaced by a baseline; no gradient at all. Re-exported by
``minicnn.saliency``.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_images, check_int
from minicnn._progress import progress_bar
from minicnn.saliency.baselines import baseline_like
from minicnn.saliency.gradient import in_chunks, row_batches

__all__ = ["occlusion", "occlusion_windows"]


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
    x = check_images(x)
    N, C, H, W = x.shape
    boxes = occlusion_windows((H, W), window, stride)             # [(y0, y1, x0, x1)]
    batch_size = check_int(batch_size, "batch_size", 1)
    base = baseline_like(x, baseline)                             # (N, C, H, W)
    scores, targets = in_chunks(model, x, target)                 # (N, K), (N,)
    clean = scores[np.arange(N), targets]                         # (N,)
    drops = np.zeros((N, H, W), np.float64)                       # summed drops per pixel
    covers = np.zeros((H, W), np.int64)                           # windows covering each pixel
    for y0, y1, x0, x1 in boxes:
        covers[y0:y1, x0:x1] += 1
    P = len(boxes)
    with progress_bar(N * P, "occlusion", progress) as bar:
        for rows in row_batches(N * P, batch_size):
            image, box = rows // P, rows % P                      # image-major
            hidden = x[image]                                     # (B, C, H, W), a copy
            for j, (n, p) in enumerate(zip(image, box)):
                y0, y1, x0, x1 = boxes[p]
                hidden[j, :, y0:y1, x0:x1] = base[n, :, y0:y1, x0:x1]
            drop = clean[image] - model.predict(hidden)[np.arange(len(rows)), targets[image]]
            for j, (n, p) in enumerate(zip(image, box)):
                y0, y1, x0, x1 = boxes[p]
                drops[n, y0:y1, x0:x1] += drop[j]
            bar.update(len(rows))
    per_pixel = (drops / covers)[:, None]                         # (N, 1, H, W)
    return np.repeat(per_pixel, C, axis=1).astype(x.dtype)        # (N, C, H, W)


def occlusion_windows(size, window=8, stride=4) -> list[tuple[int, int, int, int]]:
    """The windows ``occlusion`` hides on an image of ``size`` (H, W): [(y0, y1, x0, x1)],
    rows first, y1 and x1 exclusive and cut off at the image's edge."""
    H, W = size
    wh, ww = _int_pair(window, "window")
    sh, sw = _int_pair(stride, "stride")
    if wh > H or ww > W:
        raise ValueError(f"occlusion: window {(wh, ww)} is larger than the image {(H, W)}")
    if sh > wh or sw > ww:
        raise ValueError(f"occlusion: stride {(sh, sw)} must be at most the window {(wh, ww)}")
    return [(y, min(y + wh, H), c, min(c + ww, W))
            for y in _window_starts(H, wh, sh) for c in _window_starts(W, ww, sw)]


def _int_pair(value, what: str):
    """An int >= 1 or a pair of them -> (int, int)."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{what} must be an int or a pair (h, w) of ints >= 1, got {value!r}")
    return tuple(check_int(v, what, 1) for v in pair)


def _window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Captum's window positions along one axis: ceil((size - window) / stride) + 1 of them."""
    count = -(-(size - window) // stride) + 1
    return np.arange(count) * stride
