"""How good is a saliency map? Scores against ground truth, and scores against the model.

Against the object's ground truth (its box and mask, known for ``minicnn.io.datasets`` images):

- the pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop",
  arXiv:1608.00507): a hit when the map's maximum falls on the object's box;
- box IoU (intersection over union) of a predicted box with the true one, and the rate of
  IoU >= 0.5, the PASCAL VOC rule for a correct detection, as in the paper's localisation
  experiment (Simonyan et al. 2013, §3.1);
- mask precision and recall of a predicted mask against the object's pixels.

Against the model itself (Petsiuk, Das & Saenko 2018, "RISE", arXiv:1806.07421, §4.1):

- deletion: remove pixels in order of decreasing saliency, ``step`` pixels at a time, and
  follow the model's softmax probability of the class; a good map makes it fall fast, so a
  LOW area under the curve is good. Removed pixels take the value 0 of the normalised input,
  which is the dataset's mean colour (the baseline ``saliency.occlusion`` uses too);
- insertion: start from a blurred copy of the image and put the original pixels back in the
  same order; a good map makes the probability rise fast, so a HIGH area is good. The blur
  is ``saliency.blur`` (Gaussian, sigma 5 px), as RISE starts insertion from a blurred image.
The area is the trapezoid rule over the fraction of pixels changed, 0 to 1.

Baseline maps that know nothing about the model, to compare methods with:
``random_map`` (uniform noise), ``center_gaussian_map`` (objects tend to sit in the middle)
and ``sobel_map`` (edges of the image: where anything at all happens); and the saliency
detectors that came before CNNs, as the blog post "Saliency Maps for Deep Learning" opens
with them, from OpenCV's saliency module (its contrib build, ``pip install
"minicnn[localize]"``): ``spectral_residual_map`` (Hou & Zhang 2007, "Saliency Detection: A
Spectral Residual Approach": what is unexpected in the image's log spectrum) and
``fine_grained_map`` (Montabone & Soto 2010, "Human detection using a mobile platform and
novel features derived from a visual saliency mechanism": centre-surround contrast). They
find whatever stands out, with no idea of a class.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_int
from minicnn.saliency import blur, resolve_targets, softmax

__all__ = [
    "pointing_hit",
    "box_iou",
    "iou_rate",
    "mask_precision_recall",
    "deletion_curve",
    "insertion_curve",
    "perturbation_curve",
    "curve_auc",
    "saliency_order",
    "random_map",
    "center_gaussian_map",
    "sobel_map",
    "spectral_residual_map",
    "fine_grained_map",
    "BASELINE_MAPS",
    "OPENCV_BASELINES",
    "OPENCV_SALIENCY_HINT",
]


def _check_map(saliency_map) -> np.ndarray:
    smap = np.asarray(saliency_map)
    if smap.ndim != 2 or smap.dtype.kind not in "fiub":
        raise ValueError(f"expected a numeric saliency map shaped (H, W), got {smap.dtype} of "
                         f"shape {smap.shape}")
    return smap


def _check_box(box, what="box"):
    if box is None:
        return None
    box = tuple(int(v) for v in box)
    if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"{what} must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, "
                         f"got {box}")
    return box


# ============================================================================ ground truth

def pointing_hit(saliency_map, box, tolerance: int = 0) -> bool:
    """Pointing game: is the map's maximum on the box (x0, y0, x1, y1), x1/y1 exclusive?

    Ties: the FIRST maximum in row-major order is the point (``np.argmax``), the same
    convention as max-pooling's; so a constant map points at the top-left pixel. A pixel
    within ``tolerance`` pixels of the box (Chebyshev distance) also counts, as Zhang et al.
    allow 15 px on 224 px images; the default 0 means strictly inside.
    """
    smap = _check_map(saliency_map)
    x0, y0, x1, y1 = _check_box(box)
    y, x = np.unravel_index(int(np.argmax(smap)), smap.shape)
    t = int(tolerance)
    return bool(x0 - t <= x < x1 + t and y0 - t <= y < y1 + t)


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1), x1/y1 exclusive, in pixels.

    A box that is None (nothing found) has IoU 0 with anything; two empty boxes give 0.
    """
    a, b = _check_box(a, "box a"), _check_box(b, "box b")
    if a is None or b is None:
        return 0.0
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_rate(ious, threshold: float = 0.5) -> float:
    """Fraction of IoUs >= threshold (0.5: PASCAL VOC's correct detection)."""
    ious = np.asarray(ious, dtype=np.float64)
    return float((ious >= threshold).mean()) if ious.size else float("nan")


def mask_precision_recall(predicted, true) -> tuple[float, float]:
    """(precision, recall) of a predicted bool mask against the true one, both (H, W).

    precision = |pred & true| / |pred|, recall = |pred & true| / |true|. An empty prediction
    has precision 0 (it found nothing), an empty truth recall 0.
    """
    predicted, true = np.asarray(predicted, dtype=bool), np.asarray(true, dtype=bool)
    if predicted.shape != true.shape:
        raise ValueError(f"mask shapes differ: predicted {predicted.shape}, true {true.shape}")
    both = np.count_nonzero(predicted & true)
    n_pred, n_true = np.count_nonzero(predicted), np.count_nonzero(true)
    return (both / n_pred if n_pred else 0.0, both / n_true if n_true else 0.0)


# ============================================================================ deletion, insertion

def saliency_order(saliency_map) -> np.ndarray:
    """Rank of every pixel by decreasing saliency: (H, W) -> int64 (H, W), 0 = most salient.

    Ties keep row-major order (a stable sort), so the result is reproducible.
    """
    smap = _check_map(saliency_map).astype(np.float64)
    order = np.argsort(-smap.ravel(), kind="stable")               # (H*W,) pixel indices
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank.reshape(smap.shape)                                # (H, W)


def perturbation_curve(model, x, maps, start, finish, target=None, step: int = 256,
                       batch_size: int = 250):
    """Probability of the target as pixels go from `start` to `finish` in saliency order.

    - model: a minicnn model; its ``predict`` runs the forward passes (any object with a
      ``predict(x) -> scores (N, K)`` will do)
    - x: (N, C, H, W) normalised images (used only to resolve target=None)
    - maps: (N, H, W) saliency maps
    - start, finish: (N, C, H, W); at point t the image is `finish` on the t*step most salient
      pixels (all channels) and `start` elsewhere; t = 0 .. ceil(H*W / step)
    - target: None (each image's predicted class on x), an int or N ints
    - step: pixels changed between points
    - batch_size: images per forward pass
    Returns (fractions (T+1,), probabilities (N, T+1)) with fractions = changed pixels / H*W.
    """
    x = np.asarray(x)
    maps = np.asarray(maps)
    N, C, H, W = x.shape
    if maps.shape != (N, H, W):
        raise ValueError(f"expected maps shaped (N, H, W) = {(N, H, W)}, got {maps.shape}")
    if start.shape != x.shape or finish.shape != x.shape:
        raise ValueError(f"start and finish must be shaped like x {x.shape}, got "
                         f"{start.shape} and {finish.shape}")
    step = check_int(step, "step (pixels)", 1)
    if target is None:
        targets = model.predict(x).argmax(axis=1)                   # (N,)
    else:
        targets = np.broadcast_to(np.asarray(target), (N,)).astype(np.int64)   # (N,)
    counts = np.minimum(np.arange(0, -(-H * W // step) + 1) * step, H * W)   # (T+1,)
    ranks = np.stack([saliency_order(m) for m in maps])             # (N, H, W)
    T1 = len(counts)
    probs = np.empty((N, T1), np.float64)
    rows = [(n, t) for n in range(N) for t in range(T1)]
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        n_idx = np.array([n for n, _ in chunk])
        t_idx = np.array([t for _, t in chunk])
        changed = ranks[n_idx] < counts[t_idx][:, None, None]       # (B, H, W)
        images = np.where(changed[:, None], finish[n_idx], start[n_idx])   # (B, C, H, W)
        p = softmax(model.predict(images.astype(x.dtype)).astype(np.float64))   # (B, K)
        if s == 0:                                                  # the scores' K checks them
            resolve_targets(targets, np.empty((N, p.shape[1])))
        probs[n_idx, t_idx] = p[np.arange(len(chunk)), targets[n_idx]]
    return counts / (H * W), probs


def deletion_curve(model, x, maps, target=None, step: int = 256, baseline=0.0,
                   batch_size: int = 250):
    """RISE deletion: the most salient pixels first become `baseline` (default 0, the dataset
    mean colour in normalised input space). Returns (fractions (T+1,), probs (N, T+1));
    lower area = better map. See ``perturbation_curve`` for the arguments."""
    x = np.asarray(x)
    finish = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), x.shape)
    return perturbation_curve(model, x, maps, x, finish, target, step, batch_size)


def insertion_curve(model, x, maps, target=None, step: int = 256, sigma: float = 5.0,
                    batch_size: int = 250):
    """RISE insertion: from ``saliency.blur(x, sigma)``, the most salient pixels first get
    their original values back. Returns (fractions (T+1,), probs (N, T+1)); higher area =
    better map. See ``perturbation_curve`` for the arguments."""
    x = np.asarray(x)
    return perturbation_curve(model, x, maps, blur(x, sigma), x, target, step, batch_size)


def curve_auc(fractions, values) -> np.ndarray:
    """Area under curve(s) by the trapezoid rule: fractions (T+1,), values (..., T+1) -> (...)."""
    f = np.asarray(fractions, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    return ((v[..., 1:] + v[..., :-1]) * np.diff(f) / 2).sum(axis=-1)


# ============================================================================ baseline maps

def random_map(shape, seed=0) -> np.ndarray:
    """Uniform noise in [0, 1) of shape (H, W), from numpy.random.default_rng(seed)."""
    return np.random.default_rng(seed).random(tuple(shape))


def center_gaussian_map(shape, sigma_fraction: float = 0.25) -> np.ndarray:
    """exp(-d^2 / (2 sigma^2)) around the image centre, sigma = sigma_fraction * min(H, W)."""
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W]                                    # (H, W) each
    sigma = sigma_fraction * min(H, W)
    d2 = (yy - (H - 1) / 2) ** 2 + (xx - (W - 1) / 2) ** 2
    return np.exp(-d2 / (2 * sigma * sigma))


def sobel_map(image) -> np.ndarray:
    """Edge strength of an RGB image (H, W, 3), any numeric dtype -> (H, W) float64.

    The grey image (mean of the channels) is correlated with the Sobel kernels
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] and its transpose, edges extended by repeating the
    border pixel; the map is sqrt(gx^2 + gy^2).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image shaped (H, W, 3), got shape {image.shape}")
    grey = image.astype(np.float64).mean(axis=2)                   # (H, W)
    p = np.pad(grey, 1, mode="edge")                               # (H+2, W+2)
    H, W = grey.shape

    def at(dy, dx):                                  # each pixel's neighbour (dy, dx), (H, W)
        return p[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    return np.hypot(gx, gy)


OPENCV_SALIENCY_HINT = ('OpenCV\'s static saliency detectors need its contrib build: pip install '
                        '"minicnn[localize]" (or pip install opencv-contrib-python-headless, '
                        'not beside opencv-python-headless)')


def _opencv_saliency(image, create: str) -> np.ndarray:
    """Run one of OpenCV's static saliency detectors on a uint8 RGB image (H, W, 3)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image shaped (H, W, 3), got {image.dtype} of "
                         f"shape {image.shape}")
    try:
        import cv2
        detector = getattr(cv2.saliency, create)()
    except (ImportError, AttributeError):
        raise ImportError(OPENCV_SALIENCY_HINT) from None
    ok, smap = detector.computeSaliency(np.ascontiguousarray(image[..., ::-1]))  # OpenCV: BGR
    if not ok:
        raise RuntimeError(f"cv2.saliency.{create}: computeSaliency failed")
    return np.asarray(smap, dtype=np.float64)                      # (H, W)


def spectral_residual_map(image) -> np.ndarray:
    """Hou & Zhang's spectral residual saliency of a uint8 RGB image (H, W, 3) -> (H, W)
    float64, by ``cv2.saliency.StaticSaliencySpectralResidual`` (OpenCV works on a 64x64
    grey copy and resizes the map back)."""
    return _opencv_saliency(image, "StaticSaliencySpectralResidual_create")


def fine_grained_map(image) -> np.ndarray:
    """Montabone & Soto's fine-grained (centre-surround) saliency of a uint8 RGB image
    (H, W, 3) -> (H, W) float64, by ``cv2.saliency.StaticSaliencyFineGrained``."""
    return _opencv_saliency(image, "StaticSaliencyFineGrained_create")


OPENCV_BASELINES = ("spectral_residual", "fine_grained")
BASELINE_MAPS = ("random", "center_gaussian", "sobel") + OPENCV_BASELINES
