"""The sample images shipped with minicnn, with their ground truth, and a real photo.

- ``SAMPLES_DIR``: 20 test images of the cluttered split (two per class), package data in
  ``minicnn/io/data/samples/`` (so any install has them), each named
  ``test<index>_<class>.png``;
- ``load_sample_index(folder)``: their ``samples.json``: for each file its dataset index,
  label, class name and the object's box (x0, y0, x1, y1), x1 and y1 exclusive;
- ``sample_photo()``: the photo matplotlib ships (Grace Hopper), for trying ImageNet models
  offline.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["SAMPLES_DIR", "SampleIndexError", "load_sample_index", "sample_photo"]

SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "samples"


class SampleIndexError(ValueError):
    """A folder of samples has no readable, well-formed ``samples.json``."""


def load_sample_index(folder=SAMPLES_DIR) -> dict:
    """{file name: {"label": int, "class": str, "box": [x0, y0, x1, y1], ...}} of a folder.

    SampleIndexError naming the file and the entry for a missing folder or index, a file that
    is not JSON, or an entry without an int label, a class name and a box of 4 ints with
    x0 < x1 and y0 < y1."""
    folder = Path(folder)
    path = folder / "samples.json"
    if not folder.is_dir():
        raise SampleIndexError(f"{folder}: " + ("is a file, not a folder of samples"
                                               if folder.exists() else "no such folder"))
    if not path.is_file():
        raise SampleIndexError(f"{path}: no sample index (the shipped samples are "
                               f"{SAMPLES_DIR}; pass --images DIR for a folder of your own)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError:
        raise SampleIndexError(f"{path}: permission denied") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SampleIndexError(f"{path}: not valid JSON ({e})") from None
    images = index.get("images") if isinstance(index, dict) else None
    if not isinstance(images, dict) or not images:
        raise SampleIndexError(f"{path}: expected {{\"images\": {{file name: {{\"label\", "
                               f"\"class\", \"box\"}}, ...}}}} with at least one image")
    for name, info in images.items():
        box = info.get("box") if isinstance(info, dict) else None
        if not (isinstance(info, dict) and _is_int(info.get("label"))
                and isinstance(info.get("class"), str) and isinstance(box, list)
                and len(box) == 4 and all(_is_int(v) for v in box)
                and box[0] < box[2] and box[1] < box[3]):
            raise SampleIndexError(f"{path}: entry {name!r} needs an int \"label\", a "
                                   f"\"class\" name and a \"box\" [x0, y0, x1, y1] of ints "
                                   f"with x0 < x1 and y0 < y1; got {info!r}")
    return images


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sample_photo() -> str:
    """The path of the photo matplotlib ships (grace_hopper.jpg)."""
    from matplotlib import cbook
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
