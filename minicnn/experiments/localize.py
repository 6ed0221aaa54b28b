"""Weakly supervised localisation: from a saliency map to an object box and mask.

Simonyan, Vedaldi & Zisserman 2013 (arXiv:1312.6034, §3.1) localise an object using only a
network trained for classification: its class saliency map says which pixels matter, and a
segmentation grown from those pixels gives a mask, whose bounding box is the detection.
Two ways from a map M (H, W) to a mask, both ending in the same last step:

- ``threshold_mask``: keep the pixels whose saliency reaches a threshold, either a quantile
  of M (``quantile=0.9`` keeps the top 10% of pixels) or a fraction of its maximum
  (``fraction=0.5`` keeps M >= 0.5 max M);
- ``graphcut_mask``: the paper's way. Colour models (Gaussian mixtures) of the foreground and
  the background are fitted to the image's colours at the most salient pixels (M above its
  95% quantile) and the least salient ones (below its 30% quantile); a graph cut then labels
  every pixel with the model that explains its colour best, with a smoothness term that
  prefers neighbours to agree. We use OpenCV's GrabCut (Rother, Kolmogorov & Blake 2004),
  an optional dependency (``pip install "minicnn[localize]"``).

Then ``largest_component`` keeps the largest 4- or 8-connected blob of the mask (the paper:
"the object segmentation mask is set to the largest connected component of the foreground
pixels") and ``mask_box`` draws its box.

Boxes are ``(x0, y0, x1, y1)`` with x1 and y1 exclusive, as in ``minicnn.io.datasets``: the
mask lies in ``mask[y0:y1, x0:x1]``.

Connected components are labelled with a union-find written as plain loops; the same
function is compiled by Numba (``_label_loops``, on first use) and run as Python in the tests
(``label_components(..., fast=False)``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from minicnn import saliency
from minicnn._checks import check_choice, check_int
from minicnn._progress import progress_bar
from minicnn.io.images import Preprocess, to_input

__all__ = [
    "Localization",
    "localize",
    "localize_images",
    "LOCALIZE_METHODS",
    "threshold_mask",
    "graphcut_mask",
    "label_components",
    "largest_component",
    "mask_box",
    "GRAPHCUT_INSTALL_HINT",
]

LOCALIZE_METHODS = ("threshold", "graphcut")
GRAPHCUT_INSTALL_HINT = ('graph-cut localisation needs OpenCV: pip install "minicnn[localize]" '
                         '(or pip install opencv-python-headless)')


@dataclass
class Localization:
    """The result of ``localize`` for one image.

    - box: (x0, y0, x1, y1), x1 and y1 exclusive; None when the mask is empty
    - mask: bool (H, W), the largest connected component
    """

    box: tuple | None
    mask: np.ndarray


# ============================================================================ checks

def _check_map(saliency_map) -> np.ndarray:
    smap = np.asarray(saliency_map)
    if smap.ndim != 2:
        raise ValueError(f"expected a saliency map shaped (H, W), got shape {smap.shape}")
    if smap.dtype.kind not in "fiu":
        raise TypeError(f"expected a numeric saliency map, got dtype {smap.dtype}")
    if not np.isfinite(smap).all():
        raise ValueError("the saliency map contains NaN or inf")
    return smap.astype(np.float64, copy=False)


def _check_image(image, shape) -> np.ndarray:
    """uint8 RGB (H, W, 3) matching the map's (H, W)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected the image as uint8 RGB shaped (H, W, 3), got {image.dtype} "
                         f"of shape {image.shape}")
    if image.shape[:2] != shape:
        raise ValueError(f"image (H, W) = {image.shape[:2]} does not match the saliency map's "
                         f"{shape}")
    return np.ascontiguousarray(image)


# ============================================================================ threshold

def threshold_mask(saliency_map, quantile=None, fraction=None) -> np.ndarray:
    """Pixels of a map at or above a threshold: (H, W) -> bool (H, W).

    Give exactly one of
    - quantile q in [0, 1): threshold = the q-quantile of the map's values (numpy's linear
      interpolation), so about (1 - q) of the pixels are kept;
    - fraction f in (0, 1]: threshold = f * max(map).
    A pixel is kept when its value is >= the threshold and > 0 (a zero map keeps nothing).
    Neither given: quantile=0.9.
    """
    smap = _check_map(saliency_map)
    if quantile is not None and fraction is not None:
        raise ValueError(f"give quantile or fraction, not both (got quantile={quantile}, "
                         f"fraction={fraction})")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        level = fraction * smap.max()
    else:
        quantile = 0.9 if quantile is None else quantile
        if not 0 <= quantile < 1:
            raise ValueError(f"quantile must be in [0, 1), got {quantile!r}")
        level = np.quantile(smap, quantile)
    return (smap >= level) & (smap > 0)


# ============================================================================ components

def _label_python(mask, connectivity):
    """Two-pass connected-component labelling of a bool (H, W) mask -> int64 (H, W).

    Pass 1 gives each foreground pixel its own provisional label and merges it (union-find)
    with the already-visited neighbours: left and up (4-connectivity), plus up-left and
    up-right (8-connectivity). Pass 2 replaces every label by its tree's root, renumbered
    1, 2, ... in row-major order of first appearance. Background is 0.
    """
    H, W = mask.shape
    parent = np.arange(H * W + 1, dtype=np.int64)   # label 0 = background, pixel p -> p + 1
    labels = np.zeros((H, W), dtype=np.int64)

    def find(i):
        """Root of i's tree, halving the path on the way."""
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for y in range(H):
        for x in range(W):
            if not mask[y, x]:
                continue
            me = y * W + x + 1
            labels[y, x] = me
            for dy, dx in ((0, -1), (-1, 0), (-1, -1), (-1, 1)):
                if connectivity == 4 and dy != 0 and dx != 0:
                    continue                          # diagonals only for 8-connectivity
                ny, nx = y + dy, x + dx
                if 0 <= ny and 0 <= nx < W and mask[ny, nx]:
                    a, b = find(me), find(labels[ny, nx])
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    renumber = np.zeros(H * W + 1, dtype=np.int64)
    count = 0
    for y in range(H):
        for x in range(W):
            if labels[y, x]:
                root = find(labels[y, x])
                if renumber[root] == 0:
                    count += 1
                    renumber[root] = count
                labels[y, x] = renumber[root]
    return labels


@functools.cache
def _label_loops():
    """``_label_python`` compiled by Numba (imported here, on first use: compiling takes ~2 s
    the first time, then Numba's cache loads it)."""
    import numba
    return numba.njit(cache=True)(_label_python)


def label_components(mask, connectivity: int = 8, fast: bool = True) -> np.ndarray:
    """Connected components of a bool mask (H, W) -> int64 labels (H, W).

    0 is background; components are numbered 1, 2, ... in row-major order of their first
    pixel. connectivity: 4 (edge neighbours) or 8 (edge and corner neighbours).
    fast=False runs the same loops as plain Python (slow; for tests).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"expected a bool mask shaped (H, W), got {mask.dtype} of shape "
                         f"{mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    run = _label_loops() if fast else _label_python
    return run(np.ascontiguousarray(mask), connectivity)


def largest_component(mask, connectivity: int = 8) -> np.ndarray:
    """The largest connected component of a bool mask (H, W) -> bool (H, W).

    Ties: the component whose first pixel comes first in row-major order wins. An empty mask
    gives an empty mask.
    """
    labels = label_components(mask, connectivity)
    if labels.max() == 0:
        return np.zeros(labels.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())                        # (count + 1,)
    sizes[0] = 0                                               # background is not a component
    return labels == int(np.argmax(sizes))


def mask_box(mask):
    """Tight box (x0, y0, x1, y1) of a bool mask (H, W), x1 and y1 exclusive; None if empty."""
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


# ============================================================================ graph cut

def graphcut_mask(image, saliency_map, fg_quantile: float = 0.95, bg_quantile: float = 0.30,
                  iterations: int = 1, hard_seeds: bool = False) -> np.ndarray:
    """The paper's segmentation: colour models seeded by saliency, then a graph cut.

    - image: uint8 RGB (H, W, 3), the picture the map was computed for
    - saliency_map: (H, W)
    - fg_quantile, bg_quantile: pixels with saliency above the fg_quantile-quantile seed the
      foreground colour model, those below the bg_quantile-quantile the background one
      (paper: 95% and 30%). The seeds only fit the colour models, as in the paper: the cut
      labels every pixel, seeds included, by its colour and its neighbours
    - hard_seeds: True makes the seeds hard labels the cut cannot flip (GC_FGD/GC_BGD). On
      real maps the 30% least salient pixels include flat parts of the object itself, so
      hard background seeds punch holes in it; hence off by default.
    - iterations: 1 is the paper's single cut with the seed models. Each further iteration is
      a GrabCut step: both colour models are refitted to the current labelling (every pixel
      now counts, not only the seeds) and the image is cut again.
    Returns the foreground as bool (H, W), before taking the largest component.

    How this maps onto ``cv2.grabCut``: (1) ``GC_INIT_WITH_MASK`` with iterCount=0 on an image
    made of the seed pixels only fits the two 5-component GMMs to the seeds alone (GrabCut
    would otherwise fit them to every pixel, counting the undecided ones as "probably
    background"); (2) ``GC_EVAL_FREEZE_MODEL`` cuts the whole image once with those models
    frozen, the foreground seeds as GC_PR_FGD and every other pixel GC_PR_BGD (GC_FGD/GC_BGD
    for the seeds with hard_seeds); (3) ``GC_EVAL`` for the further
    iterations. OpenCV reads the channels as BGR; the colour models do not care.
    """
    try:
        import cv2
    except ImportError:
        raise ImportError(GRAPHCUT_INSTALL_HINT) from None
    smap = _check_map(saliency_map)
    image = _check_image(image, smap.shape)
    if not 0 <= bg_quantile < fg_quantile <= 1:
        raise ValueError(f"need 0 <= bg_quantile < fg_quantile <= 1, got bg_quantile="
                         f"{bg_quantile}, fg_quantile={fg_quantile}")
    iterations = check_int(iterations, "iterations", 1)
    hi, lo = np.quantile(smap, fg_quantile), np.quantile(smap, bg_quantile)
    if hi <= lo:                       # a (nearly) flat map has no salient pixels to seed
        return np.zeros(smap.shape, dtype=bool)
    fg, bg = smap >= hi, smap <= lo                                 # disjoint since hi > lo
    if fg.sum() < 5 or bg.sum() < 5:
        raise ValueError(f"graphcut: {fg.sum()} foreground and {bg.sum()} background seed "
                         f"pixels; each 5-component colour model needs at least 5 (map of "
                         f"shape {smap.shape}, quantiles {fg_quantile} and {bg_quantile})")

    cv2.setRNGSeed(0)                  # the GMMs start from k-means: same input, same result
    seeds = np.concatenate([image[fg], image[bg]])[None]            # (1, S, 3)
    seed_mask = np.concatenate([np.full(fg.sum(), cv2.GC_FGD, np.uint8),
                                np.full(bg.sum(), cv2.GC_BGD, np.uint8)])[None]   # (1, S)
    bgd_model, fgd_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(np.ascontiguousarray(seeds), seed_mask, None, bgd_model, fgd_model, 0,
                cv2.GC_INIT_WITH_MASK)

    labels = np.full(smap.shape, cv2.GC_PR_BGD, np.uint8)
    if hard_seeds:
        labels[fg], labels[bg] = cv2.GC_FGD, cv2.GC_BGD
    else:
        labels[fg] = cv2.GC_PR_FGD
    cv2.grabCut(image, labels, None, bgd_model, fgd_model, 1, cv2.GC_EVAL_FREEZE_MODEL)
    if iterations > 1:
        cv2.grabCut(image, labels, None, bgd_model, fgd_model, int(iterations) - 1,
                    cv2.GC_EVAL)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


# ============================================================================ entry point

def localize(image, saliency_map, method: str = "threshold", connectivity: int = 8,
             quantile=None, fraction=None, fg_quantile: float = 0.95,
             bg_quantile: float = 0.30, iterations: int = 1,
             hard_seeds: bool = False) -> Localization:
    """Box and mask of the object in one image from its saliency map.

    - image: uint8 RGB (H, W, 3); used by "graphcut" only (may be None for "threshold")
    - saliency_map: (H, W), e.g. ``saliency.saliency_map(grad)[n]``
    - method: "threshold" (``threshold_mask`` with quantile/fraction; default the top 10%)
      or "graphcut" (``graphcut_mask`` with fg_quantile, bg_quantile, iterations,
      hard_seeds)
    - connectivity: 4 or 8, for the largest connected component
    Returns a Localization(box, mask); box is None when nothing was segmented.
    """
    check_choice(method, LOCALIZE_METHODS, "localisation method")
    if method == "threshold":
        mask = threshold_mask(saliency_map, quantile=quantile, fraction=fraction)
    else:
        mask = graphcut_mask(image, saliency_map, fg_quantile, bg_quantile, iterations,
                             hard_seeds)
    mask = largest_component(mask, connectivity)
    return Localization(mask_box(mask), mask)


def localize_images(model, images, target=None, saliency_method="gradient",
                    method: str = "threshold", prep=None, batch_size: int = 50,
                    progress: bool = False, **options):
    """The whole pipeline for a batch of pictures: pixels -> saliency maps -> boxes.

    - images: uint8 RGB (N, H, W, 3), already at the model's input size
    - target: None (each image's predicted class), an int or N ints
    - saliency_method: a name in ``saliency.METHODS`` (or a function (model, x, target));
      its output becomes an (N, H, W) map by ``saliency.to_map`` (the paper's max over
      channels of |.|; Grad-CAM upsampled)
    - method, options: passed to ``localize`` for every image
    - prep: the model's Preprocess; None reads model.meta
    - batch_size, progress: maps are computed batch_size images at a time, with a progress
      bar on stderr if asked
    Returns (maps (N, H, W) float64, [Localization] * N).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB images shaped (N, H, W, 3), got {images.dtype} "
                         f"of shape {images.shape}")
    fn = saliency.get_method(saliency_method) if isinstance(saliency_method, str) \
        else saliency_method
    prep = Preprocess.from_meta(model.meta) if prep is None else prep
    N = len(images)
    targets = target if target is None or np.ndim(target) == 0 else np.asarray(target)
    maps, results = [], []
    with progress_bar(N, f"localize ({method})", progress) as bar:
        for start in range(0, N, batch_size):
            rows = slice(start, min(start + batch_size, N))
            x = to_input(images[rows], prep)                       # (B, 3, H, W)
            t = targets[rows] if isinstance(targets, np.ndarray) else targets
            batch_maps = saliency.to_map(fn(model, x, t), x.shape[2:])   # (B, H, W)
            for image, smap in zip(images[rows], batch_maps):
                results.append(localize(image, smap, method, **options))
            maps.append(batch_maps)
            bar.update(len(batch_maps))
    return np.concatenate(maps), results
