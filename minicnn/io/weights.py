"""Saving and loading minicnn models as plain ``.npz`` files (no pickle, ever).

A weights file is an ordinary NumPy ``.npz`` archive holding:

- one float array per parameter, under its PyTorch state_dict key (``features.0.weight``,
  ``classifier.4.bias``, ...), in PyTorch's layout, so nothing is transposed anywhere;
- ``__architecture__``: the node list as JSON (``model.config()``: each layer's type and
  arguments, and for a graph the names of the nodes it reads);
- ``__meta__``: a JSON object: class names, input shape, preprocessing, provenance (dataset,
  training command, test accuracy) and ``sha256``, a digest of every parameter array.

The two JSON entries are stored as 0-d unicode arrays, so ``np.load(..., allow_pickle=False)``
reads the whole file; loading never unpickles, and a file that needs pickle is refused.
Loading checks every key and shape against the architecture and the digest against the
arrays, and names the file and the offending key when something is wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from minicnn.io.atomic import atomic_write
from minicnn.engine.model import Graph, model_from_config

__all__ = ["save", "load", "WeightsFileError", "default_weights_path", "array_digest"]

FORMAT_VERSION = 1
ARCH_KEY, META_KEY = "__architecture__", "__meta__"
SHIPPED_NAME = "cluttered_fmnist.npz"
ENV_WEIGHTS = "MINICNN_WEIGHTS"


class WeightsFileError(ValueError):
    """A weights file is missing, damaged, or does not match its architecture."""


def default_weights_path() -> Path:
    """The shipped model: ``$MINICNN_WEIGHTS`` if set, else ``weights/cluttered_fmnist.npz``
    next to the ``minicnn`` package (a source checkout or an editable install)."""
    if os.environ.get(ENV_WEIGHTS):
        return Path(os.environ[ENV_WEIGHTS])
    return Path(__file__).resolve().parents[2] / "weights" / SHIPPED_NAME


def array_digest(arrays: dict) -> str:
    """sha256 over the parameter arrays in key order: key, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(model: Graph, path, meta: dict | None = None) -> Path:
    """Write `model` to `path` (.npz) with its architecture and `meta` (JSON-serialisable).

    The file is written under a temporary name in the same folder and renamed into place, so
    an existing file is never left half-written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise WeightsFileError(f"{path}: a minicnn weights file must end in .npz")
    arrays = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    meta = dict(meta or {})
    meta.update(format_version=FORMAT_VERSION, sha256=array_digest(arrays))
    payload = dict(arrays)
    payload[ARCH_KEY] = np.array(json.dumps(model.config()))
    payload[META_KEY] = np.array(json.dumps(meta))
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, **payload)
    return atomic_write(path, write)


def _read_json(npz, key: str, path: Path):
    if key not in npz.files:
        raise WeightsFileError(f"{path}: no {key} entry; not a minicnn weights file "
                               "(make one with minicnn.save or `minicnn convert`)")
    entry = npz[key]
    if entry.dtype.kind != "U" or entry.ndim != 0:
        raise WeightsFileError(f"{path}: {key} should be a JSON string, got dtype {entry.dtype}")
    try:
        return json.loads(str(entry))
    except json.JSONDecodeError as e:
        raise WeightsFileError(f"{path}: {key} is not valid JSON ({e})") from None


def load(path=None, *, return_meta: bool = False, verify: bool = True):
    """Load a model saved by `save`. ``path=None`` loads the shipped model.

    Returns the model, a ``Sequential`` for a chain or a ``Graph`` (float32 as stored), with
    its metadata as ``model.meta``;
    with ``return_meta=True`` returns ``(model, meta)``.
    Raises WeightsFileError naming the file (and the key) for a missing, truncated, corrupted
    or pickle-bearing file, and for a missing, extra or mis-shaped array.
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        hint = (f" (set ${ENV_WEIGHTS} or pass a path; the shipped model lives in weights/ "
                "of a source checkout)") if path == default_weights_path() else ""
        raise WeightsFileError(f"{path}: no such weights file{hint}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WeightsFileError(f"{path}: not a readable .npz file (truncated or corrupted?): {e}") from None
    except ValueError as e:  # numpy's answer to a bare pickle when allow_pickle=False
        raise WeightsFileError(f"{path}: refusing to load: {e}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise WeightsFileError(f"{path}: holds a single array, not a minicnn .npz archive")

    with npz:
        arch = _read_json(npz, ARCH_KEY, path)
        meta = _read_json(npz, META_KEY, path)
        arrays = {}
        for key in npz.files:
            if key in (ARCH_KEY, META_KEY):
                continue
            try:
                arrays[key] = npz[key]
            except ValueError as e:   # an object array would need pickle
                raise WeightsFileError(f"{path}: array {key!r} cannot be read without "
                                       f"pickle; refusing ({e})") from None
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise WeightsFileError(f"{path}: array {key!r} is damaged: {e}") from None

    try:
        model = model_from_config(arch, init=False)  # the file provides every weight
    except (ValueError, TypeError, KeyError) as e:
        raise WeightsFileError(f"{path}: bad architecture: {e}") from None
    try:
        model.load_state_dict(arrays, copy=False)  # the arrays were just read: no 2nd copy
    except (ValueError, TypeError) as e:
        raise WeightsFileError(f"{path}: {e}") from None
    if verify and "sha256" in meta and array_digest(arrays) != meta["sha256"]:
        raise WeightsFileError(f"{path}: the arrays do not match the sha256 recorded in "
                               "__meta__ (the file was altered or corrupted)")
    model.meta = meta
    return (model, meta) if return_meta else model
