"""ImageNet labels and preprocessing, as torchvision's classification models expect them.

- ``CLASS_NAMES``: the 1000 ILSVRC-2012 class names in the order of the networks' outputs.
  The list in ``minicnn/io/data/imagenet_classes.txt`` was taken from ``_IMAGENET_CATEGORIES`` in
  ``torchvision/models/_meta.py`` of the torchvision 0.29.1 wheel on PyPI (the names the
  torchvision model cards use).
- ``PREPROCESS``: resize the shorter side to 256, centre-crop 224 x 224, scale to [0, 1],
  normalise with the ImageNet mean and standard deviation (torchvision's
  ``ImageClassification`` preset for VGG and AlexNet); see ``minicnn.io.images``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from minicnn.io.images import Preprocess

__all__ = ["PREPROCESS", "class_names"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PREPROCESS = Preprocess(resize=256, crop=224, mean=MEAN, std=STD)


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, index = output unit."""
    path = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"
    names = tuple(path.read_text(encoding="utf-8").splitlines())
    assert len(names) == 1000, f"{path} should list 1000 classes, found {len(names)}"
    return names
