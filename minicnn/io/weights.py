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

Loading trusts nothing in the file, and names the file and the offending key when something
is wrong (``WeightsFileError``):

- sizes first, before anything is inflated or allocated: each archive entry's declared size
  (at most ``MAX_ARRAY_BYTES`` per array, ``MAX_JSON_BYTES`` per JSON entry,
  ``MAX_FILE_BYTES`` for all of them; VGG16's largest array is 411 MB, the whole model
  553 MB) and each array's header, whose shape and dtype must account for exactly the bytes
  its entry holds;
- the architecture: at least one layer, and no ``kernel_size``, ``stride``, ``padding`` or
  ``output_size`` above ``MAX_LAYER_SIDE``; its layers are built without allocating weights,
  so a layer that declares a giant weight fails on that key's shape, not on memory;
- the arrays: every key and shape the architecture expects, no other, no NaN or inf, and the
  digest recorded in ``__meta__``;
- the metadata: a valid ``preprocess`` (``minicnn.io.images.Preprocess``), and when it
  declares the model's input (``input_shape`` or ``preprocess``), one forward pass of a blank
  image of that size must give one finite score per class name.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from minicnn._checks import SettingError, check_finite
from minicnn.engine.model import Graph, model_from_config
from minicnn.io.atomic import atomic_write
from minicnn.io.images import MAX_SIDE, Preprocess

__all__ = ["save", "load", "WeightsFileError", "default_weights_path", "array_digest", "check_runs",
           "MAX_ARRAY_BYTES", "MAX_FILE_BYTES", "MAX_JSON_BYTES", "MAX_LAYER_SIDE"]

FORMAT_VERSION = 1
ARCH_KEY, META_KEY = "__architecture__", "__meta__"
SHIPPED_NAME = "cluttered_fmnist.npz"
ENV_WEIGHTS = "MINICNN_WEIGHTS"
MAX_ARRAY_BYTES = 2 << 30     # 2 GiB for one array
MAX_FILE_BYTES = 4 << 30      # 4 GiB for all entries together, as declared
MAX_JSON_BYTES = 64 << 20     # 64 MiB for __architecture__ or __meta__ (as 4-byte unicode)
MAX_LAYER_SIDE = 1024         # kernel_size, stride, padding, output_size
_SIDE_KEYS = ("kernel_size", "stride", "padding", "output_size")


class WeightsFileError(ValueError):
    """A weights file is missing, damaged, too large, or does not match its architecture."""


def default_weights_path() -> Path:
    """The shipped model: ``$MINICNN_WEIGHTS`` if set, else ``minicnn/io/data/
    cluttered_fmnist.npz``, package data, so that any install finds it (its provenance is
    ``weights/README.md`` of the source tree)."""
    if os.environ.get(ENV_WEIGHTS):
        return Path(os.environ[ENV_WEIGHTS])
    return Path(__file__).resolve().parent / "data" / SHIPPED_NAME


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
    an existing file is never left half-written. A weight holding NaN or inf is refused
    (ValueError naming it): ``load`` would refuse the file.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise WeightsFileError(f"{path}: a minicnn weights file must end in .npz")
    arrays = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    for key, value in arrays.items():
        check_finite(value, f"save: weight {key!r}")
    meta = dict(meta or {})
    meta.update(format_version=FORMAT_VERSION, sha256=array_digest(arrays))
    payload = dict(arrays)
    payload[ARCH_KEY] = np.array(json.dumps(model.config()))
    payload[META_KEY] = np.array(json.dumps(meta))
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, **payload)
    return atomic_write(path, write)


def load(path=None, *, return_meta: bool = False, verify: bool = True):
    """Load a model saved by `save`. ``path=None`` loads the shipped model.

    Returns the model, a ``Sequential`` for a chain or a ``Graph`` (float32 as stored), with
    its metadata as ``model.meta``;
    with ``return_meta=True`` returns ``(model, meta)``.
    Raises WeightsFileError naming the file (and the key) for every check in the module
    docstring: a missing, unreadable, truncated, corrupted, oversized or pickle-bearing file;
    a missing, extra, mis-shaped or non-finite array; a bad architecture or metadata.
    verify=False skips the digest and the forward pass of a blank image.
    """
    path = Path(path) if path is not None else default_weights_path()
    _check_readable(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise WeightsFileError(f"{path}: not a readable .npz file (truncated or corrupted?): {e}") from None
    except ValueError as e:  # numpy's answer to a bare pickle when allow_pickle=False
        raise WeightsFileError(f"{path}: refusing to load: {e}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise WeightsFileError(f"{path}: holds a single array, not a minicnn .npz archive")

    with npz:
        _check_entry_sizes(npz.zip, path)
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
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise WeightsFileError(f"{path}: array {key!r} is damaged: {e}") from None
            if arrays[key].dtype.kind in "fc":
                try:
                    check_finite(arrays[key], f"array {key!r}")
                except ValueError as e:
                    raise WeightsFileError(f"{path}: {e}; refusing to load it") from None

    _check_architecture(arch, path)
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
    input_shape = _check_meta(meta, path)
    model.meta = meta
    if verify and input_shape is not None:
        check_runs(model, input_shape, path)
    return (model, meta) if return_meta else model


# ----------------------------------------------------------------------------- the checks

def _check_readable(path: Path) -> None:
    """A regular file whose first bytes could be an .npz archive; else say what it is."""
    if not path.exists():
        hint = (f" (set ${ENV_WEIGHTS} or pass a path; the shipped model is "
                f"{SHIPPED_NAME} inside the installed package)") \
            if path == default_weights_path() else ""
        raise WeightsFileError(f"{path}: no such weights file{hint}")
    if path.is_dir():
        raise WeightsFileError(f"{path}: is a folder, not a weights file")
    if not path.is_file():
        raise WeightsFileError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            start = f.read(6)
    except PermissionError:
        raise WeightsFileError(f"{path}: permission denied") from None
    except OSError as e:
        raise WeightsFileError(f"{path}: cannot be read: {e.strerror or e}") from None
    if start.startswith(b"\x80"):  # the opcode that opens a pickle of protocol 2 or later
        raise WeightsFileError(f"{path}: holds pickled Python data; refusing to load it (a "
                               "pickle can run code; minicnn files are plain .npz archives)")
    if not start.startswith(b"PK") and not start.startswith(b"\x93NUMPY"):
        raise WeightsFileError(f"{path}: not a .npz file (a .npz is a zip archive, which "
                               f"starts with 'PK'; this starts with {start!r})")


def _check_entry_sizes(archive: zipfile.ZipFile, path: Path) -> None:
    """Each entry's declared size against the limits, and its .npy header against the bytes
    the entry declares, before anything is inflated or allocated."""
    total = 0
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        limit = MAX_JSON_BYTES if key in (ARCH_KEY, META_KEY) else MAX_ARRAY_BYTES
        total += info.file_size
        if info.file_size > limit:
            raise WeightsFileError(f"{path}: array {key!r} declares {info.file_size:,} bytes, "
                                   f"more than the limit of {limit:,}; refusing to inflate it")
        if total > MAX_FILE_BYTES:
            raise WeightsFileError(f"{path}: its arrays declare over {MAX_FILE_BYTES:,} bytes "
                                   f"together (the limit); refusing to inflate them")
        try:
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f".npy format version {version} (minicnn reads 1.0 and 2.0)")
                header = f.tell()
        except (ValueError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise WeightsFileError(f"{path}: array {key!r} is damaged: {e}") from None
        if dtype.hasobject:
            raise WeightsFileError(f"{path}: array {key!r} cannot be read without pickle "
                                   f"(dtype {dtype}); refusing")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if header + declared != info.file_size:
            raise WeightsFileError(
                f"{path}: array {key!r} declares shape {tuple(shape)} of {dtype} "
                f"({declared:,} bytes) but its entry holds {info.file_size - header:,} bytes "
                f"(a damaged or crafted file)")


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


def _check_architecture(arch, path: Path) -> None:
    """A non-empty list of layer dicts whose spatial sizes are at most MAX_LAYER_SIDE."""
    if not isinstance(arch, list):
        raise WeightsFileError(f"{path}: bad architecture: {ARCH_KEY} must be a list of layer "
                               f"dicts, got {type(arch).__name__}")
    if not arch:
        raise WeightsFileError(f"{path}: bad architecture: {ARCH_KEY} lists no layers")
    for i, layer in enumerate(arch):
        if not isinstance(layer, dict):
            continue  # from_config names it
        for key in _SIDE_KEYS:
            value = layer.get(key)
            sizes = value if isinstance(value, list) else [value]
            if value is not None and any(isinstance(v, int) and v > MAX_LAYER_SIDE
                                         for v in sizes):
                raise WeightsFileError(
                    f"{path}: bad architecture: layer {layer.get('name', i)!r} has {key} "
                    f"{value}, more than the limit of {MAX_LAYER_SIDE}")


def _check_meta(meta, path: Path):
    """The metadata's preprocess and class names -> the input shape (C, H, W) it declares,
    or None if it declares none."""
    if not isinstance(meta, dict):
        raise WeightsFileError(f"{path}: {META_KEY} must be a JSON object, got "
                               f"{type(meta).__name__}")
    try:
        prep = Preprocess.from_meta(meta)
    except (TypeError, ValueError) as e:
        raise WeightsFileError(f"{path}: bad {META_KEY}: {e}") from None
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(n, str) for n in names)):
        raise WeightsFileError(f"{path}: bad {META_KEY}: class_names must be a list of strings")
    shape = meta.get("input_shape")
    if shape is None:
        return (3, prep.crop, prep.crop) if "preprocess" in meta else None
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
            or shape[0] != 3 or not all(1 <= v <= MAX_SIDE for v in shape[1:])):
        raise WeightsFileError(f"{path}: bad {META_KEY}: input_shape must be [3, H, W] with H "
                               f"and W in 1..{MAX_SIDE}, got {shape!r}")
    if "preprocess" in meta and shape[1:] != [prep.crop, prep.crop]:
        raise WeightsFileError(f"{path}: bad {META_KEY}: input_shape {shape} does not match "
                               f"the preprocess crop {prep.crop}")
    return tuple(shape)


def check_runs(model: Graph, input_shape, path) -> None:
    """One forward pass of a blank image of ``input_shape`` (C, H, W) must give (1, K)
    finite scores, K = the number of class names (if there are names); else a
    WeightsFileError naming ``path``. ``load`` runs it on the input the metadata declares; a
    program that assumes an input size for a model without one can run it too."""
    try:
        scores = model.forward(np.zeros((1,) + tuple(input_shape), np.float32))
    except SettingError:
        raise  # the user's environment, not the file: reported as it is
    except (ValueError, TypeError) as e:
        raise WeightsFileError(f"{path}: the architecture does not run on a "
                               f"{tuple(input_shape)} image: {e}") from None
    except MemoryError:
        raise WeightsFileError(f"{path}: the architecture needs more memory than there is "
                               f"for one {tuple(input_shape)} image") from None
    finally:
        model._activations = None  # the blank image's activations are not a forward pass
    if scores.ndim != 2:
        raise WeightsFileError(f"{path}: the architecture gives an output of shape "
                               f"{scores.shape} for one image, not class scores (1, K)")
    if not np.isfinite(scores).all():
        raise WeightsFileError(f"{path}: the model gives NaN or inf scores for a blank image "
                               "(an overflow in its weights?)")
    names = model.meta.get("class_names")
    if names is not None and len(names) != scores.shape[1]:
        raise WeightsFileError(f"{path}: bad {META_KEY}: {len(names)} class_names for the "
                               f"model's {scores.shape[1]} outputs")
