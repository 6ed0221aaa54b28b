"""Which images a job covers, and how a worker gets their pixels.

- ``folder_source(path)``: every file under ``path`` (recursively, in sorted order of
  their paths relative to it) whose suffix Pillow registers for a format it can open
  (.png, .jpg, .jpeg, .gif, .bmp, .tif, .webp, ...); names starting with a dot are skipped.
  The image list is those relative paths (with "/" between folders).
- ``split_source(n, seed, prep, data_dir)``: the first n images of the generated cluttered test
  split (``minicnn.io.datasets.make_cluttered``); the image list is their indices as text.
- ``read_pixels(source, names, prep)``: what a worker does for a chunk: the uint8
  (B, crop, crop, 3) pixels and, per image, None or why it could not be read. An
  unreadable file is recorded and left out; it does not stop the chunk.

A ``Source`` is small (a kind, a root, settings) and travels inside every task; the image
names of a chunk travel with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Source", "SourceError", "folder_source", "split_source", "read_pixels",
           "image_suffixes"]


class SourceError(ValueError):
    """The images to process cannot be found: no such folder, no image in it, no dataset."""


@dataclass(frozen=True)
class Source:
    """kind "folder" (root: the folder) or "test" (seed and data_dir of the split)."""

    kind: str
    root: str | None = None
    seed: int = 0
    data_dir: str | None = None

    def describe(self) -> dict:
        """For the store's metadata."""
        if self.kind == "folder":
            return {"kind": "folder", "path": self.root}
        return {"kind": "test split", "seed": self.seed}


def image_suffixes() -> set[str]:
    """Lower-case suffixes of the formats Pillow can open here."""
    from PIL import Image
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN}


def folder_source(path) -> tuple[Source, list[str]]:
    """(the Source, the image names) of a folder; SourceError if it is missing, not a
    folder, or holds no image file."""
    root = Path(path)
    if not root.exists():
        raise SourceError(f"{root}: no such folder")
    if not root.is_dir():
        raise SourceError(f"{root}: is a file; give a folder of images (or --split test)")
    suffixes = image_suffixes()
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in suffixes and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not names:
        raise SourceError(f"{root}: no image files in this folder or below it (looked for "
                          f"{', '.join(sorted(suffixes)[:8])}, ...)")
    return Source("folder", str(root.resolve())), names


def split_source(n: int, seed: int, prep, data_dir=None) -> tuple[Source, list[str]]:
    """(the Source, the image names "0", "1", ...) of the first n test images. Raises
    DatasetNotFoundError without the files, SourceError if n exceeds the split or the
    model (its Preprocess ``prep``) does not take the split's 64x64 images."""
    from minicnn._checks import check_int
    from minicnn.io.datasets import IMAGE_SIZE, load_fashion_mnist
    n = check_int(n, "n", 1)
    if prep.crop != IMAGE_SIZE:
        raise SourceError(f"the test split's images are {IMAGE_SIZE}x{IMAGE_SIZE}, but this "
                          f"model takes {prep.crop}x{prep.crop}; give a folder of images")
    items = len(load_fashion_mnist("test", data_dir)[1])
    if n > items:
        raise SourceError(f"-n is {n:,}, but the test split has {items:,} images")
    return (Source("test", None, int(seed), None if data_dir is None else str(data_dir)),
            [str(i) for i in range(n)])


def read_pixels(source: Source, names, prep) -> tuple[np.ndarray, list]:
    """The images of ``names`` -> (uint8 pixels (B, crop, crop, 3), [None or reason]).
    An unreadable image's pixels are zeros and its reason is the one-line error."""
    from minicnn.io.images import ImageReadError, read_image
    pixels = np.zeros((len(names), prep.crop, prep.crop, 3), np.uint8)   # (B, H, W, 3)
    errors = [None] * len(names)
    if source.kind == "test":
        from minicnn.io.datasets import make_cluttered
        batch = make_cluttered([int(n) for n in names], "test", source.seed, source.data_dir)
        return batch.images, errors                         # (B, 64, 64, 3)
    for k, name in enumerate(names):
        try:
            pixels[k] = read_image(Path(source.root) / name, prep, return_notes=True)[0]
        except (ImageReadError, OSError) as e:
            errors[k] = str(e)
    return pixels, errors
