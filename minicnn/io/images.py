"""From an image file to the model's input tensor, and back to something to look at.

The rule, the same one torchvision's classification transforms use:

1. open with Pillow and decode the whole file (a truncated file is an error, not a grey strip);
2. convert to RGB with Pillow's ``convert("RGB")``: greyscale is copied to all three channels,
   a palette is expanded, an alpha channel is dropped;
3. resize so the shorter side is ``resize`` pixels and the longer side keeps the aspect
   ratio, truncated to an int (bilinear, with Pillow's antialiasing), then crop the centre
   ``crop`` x ``crop`` square, its corner at round((size - crop) / 2);
4. scale to [0, 1] and normalise each channel: ``x = (pixel / 255 - mean) / std``.

The shipped model uses resize = crop = 64 and mean 0.5, std 0.25; ImageNet networks use
resize 256, crop 224 and the ImageNet mean and std. Each model's values live in its
weights file's metadata (``model.meta["preprocess"]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["Preprocess", "ImageReadError", "read_image", "to_input", "to_pixels"]


class ImageReadError(ValueError):
    """An input image is missing, not an image, or damaged."""


@dataclass(frozen=True)
class Preprocess:
    """How raw pixels become the model's input (see the module docstring)."""

    resize: int = 64
    crop: int = 64
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)

    @classmethod
    def from_meta(cls, meta: dict) -> "Preprocess":
        p = (meta or {}).get("preprocess", {})
        return cls(int(p.get("resize", 64)), int(p.get("crop", 64)),
                   tuple(p.get("mean", (0.5,) * 3)), tuple(p.get("std", (0.25,) * 3)))

    def to_meta(self) -> dict:
        return {"resize": self.resize, "crop": self.crop,
                "mean": list(self.mean), "std": list(self.std)}


def read_image(path, prep: Preprocess = Preprocess()) -> np.ndarray:
    """Read an image file -> uint8 (crop, crop, 3) RGB, resized and centre-cropped (steps 1-3).

    Raises ImageReadError naming the file when it is missing, not an image, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()                       # decode now: a truncated file fails here
            im = im.convert("RGB")
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: damaged or truncated image ({e})") from None
    w, h = im.size
    # shorter side -> resize, longer side scaled and truncated to an int, as torchvision does
    new = (prep.resize, int(prep.resize * h / w)) if w <= h else (int(prep.resize * w / h), prep.resize)
    if new != (w, h):
        im = im.resize(new, Image.BILINEAR)
    w, h = im.size
    if min(w, h) < prep.crop:
        raise ImageReadError(f"{path}: {w}x{h} after resizing is smaller than the "
                             f"{prep.crop}x{prep.crop} crop")
    left, top = int(round((w - prep.crop) / 2.0)), int(round((h - prep.crop) / 2.0))
    im = im.crop((left, top, left + prep.crop, top + prep.crop))
    return np.asarray(im, dtype=np.uint8).copy()


def to_input(pixels: np.ndarray, prep: Preprocess = Preprocess(), dtype=np.float32) -> np.ndarray:
    """uint8 (H, W, 3) or (N, H, W, 3) -> normalised (N, 3, H, W) in `dtype` (step 4)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected RGB pixels shaped (H, W, 3) or (N, H, W, 3), got {pixels.shape}")
    x = pixels.transpose(0, 3, 1, 2).astype(dtype) / 255.0              # (N, 3, H, W)
    mean = np.asarray(prep.mean, dtype)[None, :, None, None]             # (1, 3, 1, 1)
    std = np.asarray(prep.std, dtype)[None, :, None, None]               # (1, 3, 1, 1)
    return ((x - mean) / std).astype(dtype)


def to_pixels(x: np.ndarray, prep: Preprocess = Preprocess()) -> np.ndarray:
    """Inverse of `to_input`: (N, 3, H, W) or (3, H, W) -> float RGB in [0, 1], (N, H, W, 3)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[None]
    mean = np.asarray(prep.mean)[None, :, None, None]
    std = np.asarray(prep.std)[None, :, None, None]
    return np.clip(x * std + mean, 0, 1).transpose(0, 2, 3, 1)          # (N, H, W, 3)
