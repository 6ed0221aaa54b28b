"""From an image file to the model's input tensor, and back to something to look at.

The rule: an image is read as an image viewer shows it, then prepared the way torchvision's
classification transforms prepare it.

1. open with Pillow and, before decoding anything, check its size: more than ``MAX_PIXELS``
   pixels (Pillow's own decompression-bomb threshold, about 89 megapixels, 268 MB as 8-bit
   RGB), or a longer side more than ``MAX_ASPECT`` times the shorter one, is refused (a
   1 x 100,000 PNG strip of a few hundred bytes would become a 6.4-million-pixel-wide picture in step 4);
2. decode the whole file (a truncated file is an error, not a grey strip); a file with
   several frames (an animated GIF or PNG, a multi-page TIFF, a phone's MPO JPEG) gives its
   FIRST frame, and a note says so (``ImageNote``); the EXIF orientation tag is applied, so a
   phone photo stands the way the phone showed it;
3. convert to 8-bit RGB:
   - 8-bit images (1, L, P, RGB, RGBA, CMYK, ...): Pillow's ``convert("RGB")``: greyscale is
     copied to all three channels, a palette is expanded, an alpha channel is dropped;
   - 16-bit greyscale (``I;16``, ``I;16B``, ...): by its bit depth, v * 255 / 65535, so
     65535 is white (Pillow's own conversion would clip everything above 255 to white);
   - 32-bit integer greyscale (``I``): as 16-bit when every value lies in 0..65535 (how
     Pillow and many tools hold 16-bit data), else its own min..max stretched to 0..255;
   - floating-point greyscale (``F``): values within [0, 1] are fractions of white (x 255);
     any other range is stretched from its min..max to 0..255 (a constant image is black);
     NaN or inf is an error;
   each value rounded to the nearest integer;
4. resize so the shorter side is ``resize`` pixels and the longer side keeps the aspect
   ratio, truncated to an int (Pillow's bilinear filter with its antialiasing, or bicubic
   for a network trained that way: ``resample``), then crop the centre ``crop`` x ``crop``
   square, its corner at round((size - crop) / 2) (torchvision's Resize and CenterCrop on a
   PIL image, equal to the last pixel: tested);
5. scale to [0, 1] and normalise each channel: ``x = (pixel / 255 - mean) / std``.

The shipped model uses resize = crop = 64 and mean 0.5, std 0.25; ImageNet networks use
resize 256, crop 224 and the ImageNet mean and std. Each model's values live in its
weights file's metadata (``model.meta["preprocess"]``); ``Preprocess`` refuses a resize or
crop above ``MAX_SIDE`` pixels, a crop larger than the resize, and a std that is not > 0.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from minicnn._checks import check_int

__all__ = ["Preprocess", "ImageReadError", "ImageNote", "read_image", "check_image_path",
           "to_input", "to_pixels", "MAX_PIXELS", "MAX_ASPECT", "MAX_SIDE", "RESAMPLE"]

MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS, written out
MAX_ASPECT = 20          # longer side / shorter side
MAX_SIDE = 2048          # largest resize or crop a model's preprocessing may ask for
RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}   # Preprocess.resample


class ImageReadError(ValueError):
    """An input image is missing, unreadable, not an image, damaged, or too large."""


class ImageNote(UserWarning):
    """Something the reader did that a user should know, e.g. took the first of 12 frames."""


@dataclass(frozen=True)
class Preprocess:
    """How raw pixels become the model's input (see the module docstring).

    - resize: the shorter side after resizing, an int in 1..MAX_SIDE
    - crop: the side of the centre square, an int in 1..resize
    - mean, std: three numbers each, one per channel (R, G, B); every std > 0
    - resample: the resizing filter, "bilinear" (torchvision's default) or "bicubic"
      (EfficientNet-B0's weights were trained with it)
    TypeError or ValueError, naming the field, for anything else.
    """

    resize: int = 64
    crop: int = 64
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)
    resample: str = "bilinear"

    def __post_init__(self):
        if self.resample not in RESAMPLE:
            raise ValueError(f"preprocess resample must be one of {', '.join(RESAMPLE)}, got "
                             f"{self.resample!r}")
        check_int(self.resize, "preprocess resize", 1, MAX_SIDE)
        check_int(self.crop, "preprocess crop", 1, self.resize)
        for field in ("mean", "std"):
            values = getattr(self, field)
            shown = list(values) if isinstance(values, (tuple, list)) else values
            if (not isinstance(values, (tuple, list))
                    or not all(isinstance(v, Real) and not isinstance(v, bool) for v in values)):
                raise TypeError(f"preprocess {field} must be 3 numbers (R, G, B), got {shown!r}")
            if (len(values) != 3 or not all(np.isfinite(v) for v in values)
                    or (field == "std" and min(values) <= 0)):
                raise ValueError(f"preprocess {field} must be 3 finite numbers"
                                 f"{' > 0' if field == 'std' else ''} (R, G, B), got {shown}")
            object.__setattr__(self, field, tuple(float(v) for v in values))

    @classmethod
    def from_meta(cls, meta: dict) -> "Preprocess":
        """From a weights file's ``meta["preprocess"]``; the defaults fill what is missing."""
        p = (meta or {}).get("preprocess", {})
        if not isinstance(p, dict):
            raise TypeError(f"preprocess must be a JSON object, got {type(p).__name__}")
        default = cls()
        return cls(p.get("resize", default.resize), p.get("crop", default.crop),
                   p.get("mean", default.mean), p.get("std", default.std),
                   p.get("resample", default.resample))

    def to_meta(self) -> dict:
        meta = {"resize": self.resize, "crop": self.crop,
                "mean": list(self.mean), "std": list(self.std)}
        if self.resample != "bilinear":     # files written before the field read the same
            meta["resample"] = self.resample
        return meta


def read_image(path, prep: Preprocess = Preprocess(), *, return_notes: bool = False):
    """Read an image file -> uint8 (crop, crop, 3) RGB, resized and centre-cropped (steps 1-4).

    Each note (e.g. "12 frames; the first one was used") is issued as an ``ImageNote``
    warning, or with return_notes=True returned instead: (pixels, [note, ...]).
    Raises ImageReadError naming the file when it is missing, a folder, unreadable, not an
    image, truncated, or over the size limits.
    """
    path = Path(path)
    im, notes = _open_rgb(path)
    w, h = im.size
    # shorter side -> resize, longer side scaled and truncated to an int, as torchvision does
    new = (prep.resize, int(prep.resize * h / w)) if w <= h else (int(prep.resize * w / h), prep.resize)
    if new != (w, h):
        im = im.resize(new, RESAMPLE[prep.resample])
    w, h = im.size
    if min(w, h) < prep.crop:
        raise ImageReadError(f"{path}: {w}x{h} after resizing is smaller than the "
                             f"{prep.crop}x{prep.crop} crop")
    left, top = int(round((w - prep.crop) / 2.0)), int(round((h - prep.crop) / 2.0))
    im = im.crop((left, top, left + prep.crop, top + prep.crop))
    pixels = np.asarray(im, dtype=np.uint8).copy()
    if return_notes:
        return pixels, notes
    for note in notes:
        warnings.warn(note, ImageNote, stacklevel=2)
    return pixels


def check_image_path(path) -> Path:
    """``path`` if it names an existing regular file; else ImageReadError saying what it is
    (missing, a folder, something else). Cheap: a program can check its inputs first."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a regular file")
    return path


def _open_rgb(path: Path):
    """Steps 1-3: the file as an 8-bit RGB Pillow image, and the notes -> (image, [str])."""
    check_image_path(path)
    notes = []
    try:
        with warnings.catch_warnings():  # Pillow warns above its threshold: refuse instead
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{path}: more than {MAX_PIXELS:,} pixels (the limit; a "
                             f"decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(f"{path}: damaged or truncated image ({e})") from None
    with im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ImageReadError(f"{path}: {w}x{h} is {w * h:,} pixels, more than the limit "
                                 f"of {MAX_PIXELS:,} (a decompression bomb?)")
        if max(w, h) > MAX_ASPECT * min(w, h):
            raise ImageReadError(f"{path}: {w}x{h}: its longer side is more than {MAX_ASPECT} "
                                 f"times its shorter side (the limit on the aspect ratio)")
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"{path}: {frames} frames; the first one was used")
        try:
            im.load()                       # decode now: a truncated file fails here
            im = ImageOps.exif_transpose(im)    # as a viewer shows it
            return _to_rgb(im, path), notes
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageReadError(f"{path}: damaged or truncated image ({e})") from None


def _to_rgb(im, path: Path):
    """Step 3: any mode -> 8-bit RGB, wide greyscale modes scaled as the module docstring says."""
    mode = im.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        try:
            return im.convert("RGB")
        except ValueError as e:  # e.g. LAB: Pillow has no conversion to RGB
            raise ImageReadError(f"{path}: cannot convert its colour mode {mode} to RGB "
                                 f"({e})") from None
    v = np.asarray(im).astype(np.float32)                           # (H, W)
    if not np.isfinite(v).all():
        raise ImageReadError(f"{path}: a floating-point image holding NaN or inf")
    lo, hi = float(v.min()), float(v.max())
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        grey = v * np.float32(255 / 65535)                          # by the bit depth
    elif mode == "F" and lo >= 0 and hi <= 1:
        grey = v * np.float32(255)                                  # fractions of white
    else:                                                           # by the value range
        grey = (v - lo) * np.float32(255 / (hi - lo)) if hi > lo else np.zeros_like(v)
    grey8 = np.rint(grey).astype(np.uint8)                          # (H, W)
    return Image.fromarray(np.repeat(grey8[:, :, None], 3, axis=2))  # (H, W, 3)


def to_input(pixels: np.ndarray, prep: Preprocess = Preprocess(), dtype=np.float32) -> np.ndarray:
    """uint8 (H, W, 3) or (N, H, W, 3) -> normalised (N, 3, H, W) in `dtype` (step 5)."""
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
