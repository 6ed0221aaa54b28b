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
``load`` itself reads the archive entry by entry with ``zipfile``, in the order below.

Loading trusts nothing in the file, and names the file and the offending key when something
is wrong (``WeightsFileError``, one line). It checks in this order, so that nothing is
inflated or allocated before the file has shown it is what it claims to be:

1. the archive's directory: each entry's declared size (at most ``MAX_ARRAY_BYTES`` per
   array, ``MAX_JSON_BYTES`` per JSON entry, ``MAX_FILE_BYTES`` for all of them; VGG16's
   largest array is 411 MB, the whole model 553 MB), and no name twice;
2. the two JSON entries, read (and only they): ``__architecture__`` must be a list of
   1..``MAX_LAYERS`` layer objects whose arguments have their JSON types (an int where an
   int is wanted, ``true``/``false`` for ``bias``, ...), with no ``kernel_size``,
   ``stride``, ``padding`` or ``output_size`` above ``MAX_LAYER_SIDE``; ``__meta__`` must be
   an object, and each entry minicnn reads from it (``preprocess``, ``class_names``,
   ``input_shape``, ``sha256``, ``dataset``, ``cam_layer``) of its type;
3. the model is built from the architecture without allocating its weights, and the
   archive's names and each array's .npy header (shape, dtype, which must also account for
   exactly the bytes its entry holds) are compared with the model's ``state_dict()``: a
   missing, unknown or mis-shaped key is refused before any array is inflated, so a small
   file holding a huge unknown entry (highly compressed zeros) costs nothing;
4. the arrays are inflated (at most the model's own size): no NaN or inf, and the digest
   recorded in ``__meta__``;
5. when the metadata declares the model's input (``input_shape`` or ``preprocess``), one
   forward pass of a blank image of that size must give one finite score per class name.
"""
from __future__ import annotations

import hashlib
import json
import math
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
           "MAX_ARRAY_BYTES", "MAX_FILE_BYTES", "MAX_JSON_BYTES", "MAX_LAYER_SIDE",
           "MAX_LAYERS"]

FORMAT_VERSION = 1
ARCH_KEY, META_KEY = "__architecture__", "__meta__"
SHIPPED_NAME = "cluttered_fmnist.npz"
ENV_WEIGHTS = "MINICNN_WEIGHTS"
MAX_ARRAY_BYTES = 2 << 30     # 2 GiB for one array
MAX_FILE_BYTES = 4 << 30      # 4 GiB for all entries together, as declared
MAX_JSON_BYTES = 64 << 20     # 64 MiB for __architecture__ or __meta__ (as 4-byte unicode)
MAX_LAYER_SIDE = 1024         # kernel_size, stride, padding, output_size, dilation
MAX_LAYERS = 4096             # nodes in __architecture__ (DenseNet-201 has about 1,000)
_SIDE_KEYS = ("kernel_size", "stride", "padding", "output_size", "dilation")


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
        h.update(a)  # its bytes in place (C-contiguous): no copy of a 400 MB layer
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
    """Load a model saved by `save`. ``path=None`` loads the shipped model; the name of a
    network fetched by ``minicnn fetch NAME`` (e.g. "mobilenet_v2") loads it from the cache.

    Returns the model, a ``Sequential`` for a chain or a ``Graph`` (float32 as stored), with
    its metadata as ``model.meta``;
    with ``return_meta=True`` returns ``(model, meta)``.
    Raises WeightsFileError naming the file (and the key) for every check in the module
    docstring: a missing, unreadable, truncated, corrupted, oversized or pickle-bearing file;
    a missing, extra, mis-shaped or non-finite array; a bad architecture or metadata.
    verify=False skips the digest and the forward pass of a blank image.
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.exists():               # a fetched network's name? (FetchError if not yet)
        from minicnn.io.fetch import resolve
        path = resolve(path)
    _check_readable(path)
    try:
        archive = zipfile.ZipFile(path)                      # reads the directory only
    except _ZIP_ERRORS as e:
        raise WeightsFileError(f"{path}: not a readable .npz file (truncated or corrupted?): "
                               f"{_short(e)}") from None

    with archive:                                # the steps of the module docstring:
        entries = _directory(archive, path)                                         # 1
        arch = _read_json(archive, entries, ARCH_KEY, path)                         # 2
        meta = _read_json(archive, entries, META_KEY, path)
        _check_architecture(arch, path)
        try:
            model = model_from_config(arch, init=False)  # 3: placeholders, no memory
        except (ValueError, TypeError, KeyError) as e:
            raise WeightsFileError(f"{path}: bad architecture: {_short(e)}") from None
        input_shape = _check_meta(meta, model, path)
        expected = model.state_dict()
        _check_keys(archive, entries, expected, path)
        arrays = {key: _read_array(archive, entries[key], key, path, expected[key].shape)
                  for key in expected}                                              # 4

    try:
        model.load_state_dict(arrays, copy=False)  # the arrays were just read: no 2nd copy
    except (ValueError, TypeError) as e:
        raise WeightsFileError(f"{path}: {e}") from None
    if verify and "sha256" in meta and array_digest(arrays) != meta["sha256"]:
        raise WeightsFileError(f"{path}: the arrays do not match the sha256 recorded in "
                               "__meta__ (the file was altered or corrupted)")
    model.meta = meta
    if verify and input_shape is not None:
        check_runs(model, input_shape, path)
    return (model, meta) if return_meta else model


# ----------------------------------------------------------------------------- the checks

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma: zipfile cannot open such entries at all
    LZMAError = NotImplementedError
# What reading a hostile archive can raise: a damaged directory or stream (zlib's, bz2's
# OSError, lzma's own), an encrypted entry (RuntimeError) or a compression method zipfile
# lacks (NotImplementedError, a RuntimeError).
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, LZMAError, RuntimeError)


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
    if start.startswith(b"\x93NUMPY"):
        raise WeightsFileError(f"{path}: holds a single array, not a minicnn .npz archive")
    if not start.startswith(b"PK"):
        raise WeightsFileError(f"{path}: not a .npz file (a .npz is a zip archive, which "
                               f"starts with 'PK'; this starts with {start!r})")


def _directory(archive: zipfile.ZipFile, path: Path) -> dict:
    """{key: ZipInfo} from the archive's directory, each entry's declared size checked
    against the limits; nothing is read from the entries themselves."""
    entries, total = {}, 0
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if key in entries:
            raise WeightsFileError(f"{path}: holds two entries named {_cut(repr(key))}; "
                                   f"refusing to guess which one is meant")
        entries[key] = info
        limit = MAX_JSON_BYTES if key in (ARCH_KEY, META_KEY) else MAX_ARRAY_BYTES
        total += info.file_size
        if info.file_size > limit:
            raise WeightsFileError(f"{path}: array {_cut(repr(key))} declares "
                                   f"{info.file_size:,} bytes, more than the limit of {limit:,}; "
                                   f"refusing to inflate it")
        if total > MAX_FILE_BYTES:
            raise WeightsFileError(f"{path}: its arrays declare over {MAX_FILE_BYTES:,} bytes "
                                   f"together (the limit); refusing to inflate them")
    return entries


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path):
    """An entry's .npy header -> (shape, dtype), checked to account for exactly the bytes
    the entry declares; only the header's first block is inflated."""
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
    except (ValueError, *_ZIP_ERRORS) as e:
        raise _unreadable(path, key, e) from None
    if dtype.hasobject:
        raise WeightsFileError(f"{path}: array {_cut(repr(key))} cannot be read without pickle "
                               f"(dtype {dtype}); refusing")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if header + declared != info.file_size:
        raise WeightsFileError(
            f"{path}: array {_cut(repr(key))} declares shape {tuple(shape)} of {dtype} "
            f"({declared:,} bytes) but its entry holds {info.file_size - header:,} bytes "
            f"(a damaged or crafted file)")
    return tuple(shape), dtype


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path,
                shape) -> np.ndarray:
    """Inflate one entry whose header `_check_keys` has accepted; NaN or inf is refused."""
    try:
        with archive.open(info) as f:
            array = np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, *_ZIP_ERRORS) as e:
        raise _unreadable(path, key, e) from None
    assert array.shape == shape, (key, array.shape, shape)   # the header read before
    try:
        check_finite(array, f"array {key!r}")
    except ValueError as e:
        raise WeightsFileError(f"{path}: {e}; refusing to load it") from None
    return array


def _read_json(archive: zipfile.ZipFile, entries: dict, key: str, path: Path):
    """__architecture__ or __meta__: a 0-d unicode array holding JSON -> the parsed value."""
    if key not in entries:
        raise WeightsFileError(f"{path}: no {key} entry; not a minicnn weights file "
                               "(make one with minicnn.save or `minicnn convert`)")
    shape, dtype = _read_header(archive, entries[key], key, path)
    if dtype.kind != "U" or shape != ():
        raise WeightsFileError(f"{path}: {key} should be a JSON string, got an array of shape "
                               f"{shape} and dtype {dtype}")
    try:
        with archive.open(entries[key]) as f:
            text = str(np.lib.format.read_array(f, allow_pickle=False))
    except (ValueError, *_ZIP_ERRORS) as e:
        raise _unreadable(path, key, e) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsFileError(f"{path}: {key} is not valid JSON ({e})") from None
    except (ValueError, RecursionError) as e:  # a number of over 4300 digits, or deep nesting
        raise WeightsFileError(f"{path}: {key} cannot be read as JSON ({_short(e)})") from None


def _unreadable(path: Path, key: str, error: Exception) -> WeightsFileError:
    """The error for an entry that zipfile or numpy could not read."""
    if isinstance(error, NotImplementedError):    # (a subclass of RuntimeError)
        reason = f"uses a compression method zipfile cannot read ({_short(error)})"
    elif isinstance(error, RuntimeError):         # zipfile's answer to an encrypted entry
        reason = "is encrypted (a minicnn weights file never is)"
    else:
        reason = f"is damaged: {_short(error)}"
    return WeightsFileError(f"{path}: array {_cut(repr(key))} {reason}")


def _check_keys(archive: zipfile.ZipFile, entries: dict, expected: dict, path: Path) -> None:
    """The archive's arrays against the model's state_dict: the same keys, and headers that
    give each the shape it expects and a float dtype. Names come from the directory, shapes
    and dtypes from the headers: nothing is inflated."""
    for key, value in expected.items():
        if key not in entries:
            raise WeightsFileError(f"{path}: missing key {key!r} (expected shape {value.shape})")
    for key in entries:
        if key not in expected and key not in (ARCH_KEY, META_KEY):
            raise WeightsFileError(f"{path}: unexpected key {_cut(repr(key))}: the architecture "
                                   f"has no such weight; refusing to inflate it")
    for key, value in expected.items():
        shape, dtype = _read_header(archive, entries[key], key, path)
        if dtype.kind != "f":
            raise WeightsFileError(f"{path}: array {key!r} holds {dtype}, expected floats")
        if shape != value.shape:
            raise WeightsFileError(f"{path}: array {key!r} has shape {shape}, expected "
                                   f"{value.shape} (from {ARCH_KEY})")


# The JSON types of the arguments a layer dict may carry (``Layer.config()``): anything
# else of the wrong type is refused here, naming the layer and the key, rather than meeting
# int() or numpy deep inside a constructor. Arguments not listed go to the constructor, which
# refuses one it does not take.
_COUNT_KEYS = ("in_channels", "out_channels", "in_features", "out_features", "num_features",
               "groups", "stop", "size")
_FLAG_KEYS = ("bias", "ceil_mode", "count_include_pad")
# "start" (ChannelSlice) may be 0, which no count allows: a number here, an int in the layer
_NUMBER_KEYS = ("p", "eps", "min_val", "max_val", "start", "alpha", "beta", "k")
_LOADER_KEYS = ("init", "dtype", "rng")   # what the loader decides, never the file


def _check_architecture(arch, path: Path) -> None:
    """A list of 1..MAX_LAYERS layer dicts whose arguments have their JSON types, and whose
    spatial sizes are at most MAX_LAYER_SIDE."""
    def bad(message):
        return WeightsFileError(f"{path}: bad architecture: {message}")
    if not isinstance(arch, list):
        raise bad(f"{ARCH_KEY} must be a list of layer dicts, got {_json_type(arch)}")
    if not arch:
        raise bad(f"{ARCH_KEY} lists no layers")
    if len(arch) > MAX_LAYERS:
        raise bad(f"{ARCH_KEY} lists {len(arch):,} layers, more than the limit of "
                  f"{MAX_LAYERS:,}")
    for i, layer in enumerate(arch):
        if not isinstance(layer, dict):
            raise bad(f"layer {i} must be a JSON object, got {_json_type(layer)}")
        for key in ("name", "type"):
            if key not in layer:
                raise bad(f"layer {i} has no {key!r}")
            if not isinstance(layer[key], str):
                raise bad(f"layer {i} needs a string {key!r}, got {_json_type(layer[key])}")
        name = _cut(repr(layer["name"]))
        for key, value in layer.items():
            if key in _LOADER_KEYS:
                ok, expected = False, f"nothing: {key} is the loader's to choose"
            elif key == "inputs":
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
                expected = "a list of node names"
            elif key in _COUNT_KEYS:
                ok = _is_int(value) and 1 <= value <= MAX_ARRAY_BYTES
                expected = f"an int in 1..{MAX_ARRAY_BYTES:,}"   # no longer side fits the limit
            elif key in _SIDE_KEYS:
                # a pair (height, width), or ZeroPad2d's four sides (left, right, top, bottom)
                sizes = value if isinstance(value, list) and len(value) in (2, 4) else [value]
                if all(_is_int(v) for v in sizes) and any(v > MAX_LAYER_SIDE for v in sizes):
                    raise bad(f"layer {name} has {key} {_json(value)}, more than the limit "
                              f"of {MAX_LAYER_SIDE}")
                low = 0 if key == "padding" else 1
                ok = all(_is_int(v) and v >= low for v in sizes)
                expected = f"an int >= {low}, a pair of them, or four (ZeroPad2d's sides)"
            elif key in _FLAG_KEYS:
                ok = isinstance(value, bool)
                expected = "true or false"
            elif key in _NUMBER_KEYS:
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                      and math.isfinite(value))
                expected = "a finite number"
            else:
                continue
            if not ok:
                raise bad(f"layer {name} has {key} {_json(value)}, expected {expected}")


def _check_meta(meta, model: Graph, path: Path):
    """An object whose entries that minicnn reads have their JSON types and values (a
    ``cam_layer`` must name a node of ``model``) -> the input shape (C, H, W) it declares,
    or None if it declares none."""
    def bad(message):
        return WeightsFileError(f"{path}: bad {META_KEY}: {message}")
    if not isinstance(meta, dict):
        raise bad(f"expected a JSON object (class names, input shape, ...), got "
                  f"{_json_type(meta)}")
    if not isinstance(meta.get("preprocess", {}), dict):
        raise bad(f"preprocess must be a JSON object, got {_json_type(meta['preprocess'])}")
    try:
        prep = Preprocess.from_meta(meta)
    except (TypeError, ValueError) as e:
        raise bad(_short(e)) from None
    names = meta.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad(f"class_names must be a list of strings, got {_json_type(names)}"
                  + (" holding other things" if isinstance(names, list) else ""))
    digest = meta.get("sha256", "0" * 64)
    if not (isinstance(digest, str) and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)):
        raise bad(f"sha256 must be 64 hexadecimal digits, got {_json(digest)}")
    dataset = meta.get("dataset", {})
    if not isinstance(dataset, dict):
        raise bad(f"dataset must be a JSON object, got {_json_type(dataset)}")
    if "seed" in dataset and not (_is_int(dataset["seed"]) and dataset["seed"] >= 0):
        raise bad(f"dataset seed must be an int >= 0, got {_json(dataset['seed'])}")
    if not isinstance(dataset.get("generator", ""), str):
        raise bad(f"dataset generator must be a string, got {_json_type(dataset['generator'])}")
    if "cam_layer" in meta:
        layer = meta["cam_layer"]
        if not isinstance(layer, str):
            raise bad(f"cam_layer must be the name of a node, got {_json_type(layer)}")
        try:
            model.index(layer)      # a node's name, or a block's ("layer4")
        except KeyError:
            raise bad(f"cam_layer {_json(layer)} names no node of the model") from None
    if "input_shape" not in meta:
        return (3, prep.crop, prep.crop) if "preprocess" in meta else None
    shape = meta["input_shape"]
    if (not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(v) for v in shape)
            or shape[0] != 3 or not all(1 <= v <= MAX_SIDE for v in shape[1:])):
        raise bad(f"input_shape must be [3, H, W] with H and W in 1..{MAX_SIDE}, "
                  f"got {_json(shape)}")
    if "preprocess" in meta and shape[1:] != [prep.crop, prep.crop]:
        raise bad(f"input_shape {shape} does not match the preprocess crop {prep.crop}")
    return tuple(shape)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value) -> str:
    """How JSON calls the type of a parsed value, for messages."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)                                  # null, true, false
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def _cut(text: str, limit: int = 60) -> str:
    """At most `limit` characters of `text`: a crafted name or value, or an exception that
    quotes one, may be megabytes long."""
    return text if len(text) <= limit else text[:limit - 4] + " ..."


def _json(value) -> str:
    """A value from the file as the file writes it (null, true, "3"), cut."""
    return _cut(json.dumps(value))


def _short(error: Exception) -> str:
    """An exception's message on one line, cut."""
    return _cut(" ".join(str(error).split()), 300)


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
