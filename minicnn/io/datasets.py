"""Cluttered colour Fashion-MNIST: 64x64 RGB images with a known object box and mask.

Plain Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) is a grey item centred on black, so any
saliency map "finds" the object. This module builds a harder version in which we still know
where the object is, so that weakly supervised localisation (Simonyan et al. 2013, §3.1) can
be measured instead of eyeballed.

Recipe for one image (all randomness from ``numpy.random.default_rng([seed, split_id, index])``,
so an image depends only on (seed, split, index) and never on batch size or order):

1. background: a smooth colour gradient between two random colours along a random direction;
2. distractors: 3-5 fragments (10-20 px crops) of *other* items of the same split, each
   rescaled, tinted a random colour and alpha-blended at a random place;
3. the item: the 28x28 Fashion-MNIST image ``index % len(split)``, rescaled (bilinear) to a
   random size of 20-40 px, tinted a random colour that differs from the background under it,
   blended with its intensity as alpha, fully inside the canvas;
4. pixel noise: Gaussian, sigma 0.02-0.06, then clipped to [0, 1] and stored as uint8.

Ground truth: ``mask`` is where the item's alpha exceeds ``MASK_ALPHA``; ``box`` is the tight
box around the mask as ``(x0, y0, x1, y1)`` with x1, y1 exclusive (so the mask lies in
``mask[y0:y1, x0:x1]``).

``easy=True`` gives a centred, large item on a flat background with no distractors; the
training script mixes a few into its first epoch (a curriculum) and nothing else uses it.

Source files: the standard gzipped IDX files, from ``data_dir``, else ``$MINICNN_FASHION_MNIST``,
else ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SIZE",
    "DEFAULT_DATA_DIR",
    "ClutteredBatch",
    "load_fashion_mnist",
    "make_cluttered",
    "DatasetNotFoundError",
]

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SIZE = 64
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
ENV_DATA_DIR = "MINICNN_FASHION_MNIST"
MASK_ALPHA = 0.2  # an item pixel belongs to the mask when its alpha exceeds this

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_SPLIT_ID = {"train": 0, "test": 1}  # part of every image's seed, so splits never share noise


class DatasetNotFoundError(FileNotFoundError):
    """The Fashion-MNIST IDX files are not where we looked. The message says how to get them
    and how to point minicnn at them: ``data_dir=`` for the library; a program with a flag of
    its own raises ``error.for_option("--data-dir DIR")`` instead, which names that flag."""

    def __init__(self, split: str, missing, option: str = "data_dir="):
        self.split, self.missing = split, list(missing)
        files = ", ".join(name for pair in _FILES.values() for name in pair)
        super().__init__(
            f"Fashion-MNIST {split} files not found: looked for {', '.join(self.missing)}. "
            f"On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` puts them in "
            f"{DEFAULT_DATA_DIR}; elsewhere, copy that package's four *-ubyte.gz files "
            f"({files}) into a folder and pass {option} or set ${ENV_DATA_DIR}")

    def for_option(self, option: str) -> "DatasetNotFoundError":
        """The same error, with the program's own option (e.g. "--data-dir DIR") in the hint."""
        return DatasetNotFoundError(self.split, self.missing, option)


@dataclass
class ClutteredBatch:
    """A batch of generated images with ground truth.

    - images: uint8 (N, 64, 64, 3), RGB, as they would be saved to PNG
    - labels: int64 (N,), Fashion-MNIST class indices (names in CLASS_NAMES)
    - boxes:  int64 (N, 4), (x0, y0, x1, y1), x1 and y1 exclusive
    - masks:  bool (N, 64, 64), the item's pixels
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _resolve_dir(data_dir) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(ENV_DATA_DIR, DEFAULT_DATA_DIR))


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format: magic, dims, big-endian sizes, uint8 data).
    ValueError naming the file when it is not one."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: not a readable gzipped IDX file ({e})") from None
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file ({len(data)} bytes)")
    magic, = struct.unpack(">I", data[:4])
    dtype_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if dtype_code != 0x08 or ndim != expected_dims:
        raise ValueError(f"{path}: not a uint8 IDX file with {expected_dims} dimensions "
                         f"(magic number {magic:#010x})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {body.size} values "
                         "(truncated file?)")
    return body.reshape(shape)  # e.g. (N, 28, 28) images or (N,) labels


_CACHE: dict = {}


def load_fashion_mnist(split: str = "train", data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N, 28, 28), labels int64 (N,)) of one Fashion-MNIST split."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = _resolve_dir(data_dir)
    key = (str(folder.resolve()), split)
    if key not in _CACHE:
        paths = [folder / name for name in _FILES[split]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DatasetNotFoundError(split, missing)
        images = _read_idx(paths[0], 3)
        labels = _read_idx(paths[1], 1).astype(np.int64)
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
        _CACHE[key] = (images, labels)
    return _CACHE[key]


def _resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of a 2-D float array (H, W) -> (out_h, out_w), pixel centres aligned."""
    h, w = img.shape
    ys = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
    xs = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None]                                   # (out_h, 1)
    wx = (xs - x0)[None, :]                                   # (1, out_w)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx     # (out_h, out_w)
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx  # (out_h, out_w)
    return top * (1 - wy) + bottom * wy


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3)


def _tint_far_from(rng: np.random.Generator, background: np.ndarray, min_dist: float = 0.35):
    """A random colour at least min_dist (Euclidean, RGB in [0,1]) from `background`.

    Without this a few items would be tinted exactly the background colour and be invisible,
    which tests nothing but luck. Gives up after 20 tries and takes the farthest seen.
    """
    best, best_d = None, -1.0
    for _ in range(20):
        c = _random_colour(rng)
        d = float(np.linalg.norm(c - background))
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _blend(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray, top: int, left: int):
    """Alpha-blend a solid `colour` with per-pixel `alpha` (h, w) into canvas (64, 64, 3)."""
    h, w = alpha.shape
    region = canvas[top:top + h, left:left + w]               # (h, w, 3) view
    a = alpha[:, :, None]                                     # (h, w, 1)
    region[...] = (1 - a) * region + a * colour


def _one_image(items, labels, index, seed, split, easy):
    rng = np.random.default_rng([seed, _SPLIT_ID[split], index])
    n_items = len(items)
    item_idx = index % n_items
    S = IMAGE_SIZE

    # 1. background
    if easy:
        canvas = np.empty((S, S, 3))
        canvas[...] = _random_colour(rng) * 0.5
    else:
        c0, c1 = _random_colour(rng), _random_colour(rng)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:S, 0:S] / (S - 1)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / (t.max() - t.min())
        canvas = (1 - t)[:, :, None] * c0 + t[:, :, None] * c1   # (S, S, 3)

        # 2. distractor fragments from other items
        for _ in range(rng.integers(3, 6)):
            other = rng.integers(n_items - 1)
            other += other >= item_idx                            # never the item itself
            ch, cw = rng.integers(10, 21, size=2)
            cy, cx = rng.integers(0, 28 - ch + 1), rng.integers(0, 28 - cw + 1)
            crop = items[other, cy:cy + ch, cx:cx + cw] / 255.0
            scale = rng.uniform(0.7, 1.5)
            fh, fw = max(4, int(round(ch * scale))), max(4, int(round(cw * scale)))
            frag = _resize_bilinear(crop, fh, fw)
            top, left = rng.integers(0, S - fh + 1), rng.integers(0, S - fw + 1)
            _blend(canvas, frag * rng.uniform(0.6, 1.0), _random_colour(rng), top, left)

    # 3. the item
    size = int(rng.integers(34, 41)) if easy else int(rng.integers(20, 41))
    if easy:
        top = left = (S - size) // 2
    else:
        top, left = int(rng.integers(0, S - size + 1)), int(rng.integers(0, S - size + 1))
    alpha = np.clip(_resize_bilinear(items[item_idx] / 255.0, size, size), 0.0, 1.0)
    under = canvas[top:top + size, left:left + size].reshape(-1, 3).mean(axis=0)  # (3,)
    _blend(canvas, alpha, _tint_far_from(rng, under), top, left)

    mask = np.zeros((S, S), dtype=bool)
    mask[top:top + size, left:left + size] = alpha > MASK_ALPHA
    ys, xs = np.nonzero(mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    # 4. noise
    if not easy:
        canvas += rng.normal(0.0, rng.uniform(0.02, 0.06), size=canvas.shape)
    image = np.round(np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8)
    return image, labels[item_idx], box, mask


def make_cluttered(indices, split: str = "test", seed: int = 0, data_dir=None,
                   easy=False) -> ClutteredBatch:
    """Generate cluttered images by index.

    - indices: an int n (meaning range(n)) or a sequence of non-negative ints. Index i uses
      item i % len(split); indices beyond the split's size give the same items with fresh
      clutter (the training script uses this for per-epoch augmentation).
    - split: "train" or "test"; items and distractors come from that split only.
    - seed: the dataset seed. Same (seed, split, index) -> same bytes.
    - easy: bool, or a bool array per index (see the module docstring).
    Returns a ClutteredBatch.
    """
    items, labels = load_fashion_mnist(split, data_dir)
    if isinstance(indices, (int, np.integer)):
        indices = range(int(indices))
    indices = np.asarray(list(indices), dtype=np.int64)
    if indices.size and indices.min() < 0:
        raise ValueError(f"indices must be non-negative, got {indices.min()}")
    easy = np.broadcast_to(np.asarray(easy, dtype=bool), indices.shape)
    n = len(indices)
    out = ClutteredBatch(
        images=np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
        labels=np.empty(n, np.int64),
        boxes=np.empty((n, 4), np.int64),
        masks=np.empty((n, IMAGE_SIZE, IMAGE_SIZE), bool),
    )
    for k, (i, e) in enumerate(zip(indices, easy)):
        out.images[k], out.labels[k], out.boxes[k], out.masks[k] = _one_image(
            items, labels, int(i), seed, split, bool(e))
    return out
