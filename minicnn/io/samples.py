"""The sample images shipped with minicnn, with their ground truth, and a real photo.

- ``SAMPLES_DIR``: 20 test images of the cluttered split (two per class) in
  ``examples/images/`` of a checkout, each named ``test<index>_<class>.png``;
- ``load_sample_index(folder)``: their ``samples.json``: for each file its dataset index,
  label, class name and the object's box (x0, y0, x1, y1), x1 and y1 exclusive;
- ``sample_photo()``: the photo matplotlib ships (Grace Hopper), for trying ImageNet models
  offline.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["SAMPLES_DIR", "SampleIndexError", "load_sample_index", "sample_photo"]

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"


class SampleIndexError(ValueError):
    """A folder of samples has no readable ``samples.json``."""


def load_sample_index(folder=SAMPLES_DIR) -> dict:
    """{file name: {"label": int, "class": str, "box": [x0, y0, x1, y1], ...}} of a folder."""
    path = Path(folder) / "samples.json"
    if not path.is_file():
        raise SampleIndexError(f"{path}: no sample index (the shipped samples live in "
                               "examples/images of a source checkout; pass --images DIR)")
    return json.loads(path.read_text())["images"]


def sample_photo() -> str:
    """The path of the photo matplotlib ships (grace_hopper.jpg)."""
    from matplotlib import cbook
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
