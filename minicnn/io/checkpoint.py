"""Read a PyTorch checkpoint (``.pth``) into NumPy arrays, without PyTorch and without running
any code from the file.

    state = read_state_dict("resnet18-f37072fd.pth")   # {"conv1.weight": array (64, 3, 7, 7), ...}
    obj = load_checkpoint("training.pth")              # whatever was saved: dicts, lists, arrays

The result is what ``torch.load(path, weights_only=True)`` gives, every tensor a C-contiguous
NumPy array of its dtype: a copy, so tensors that shared a storage no longer share memory.
bfloat16, which NumPy lacks, comes out as float32, exactly: a bfloat16 is the top half of a
float32, so widening loses nothing (and the converter wants float32 anyway).

The two formats
---------------
Both hold a pickle that describes the objects, and the tensors' bytes outside it. A tensor
pickles as a call ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, backward_hooks)``: element ``i`` of the tensor is
``storage[offset + sum(i_k * stride_k)]``, so a transposed or sliced tensor keeps its parent's
storage. A storage (a flat array of one type) pickles as a *persistent id*, a tuple the reader
resolves itself: ``("storage", torch.FloatStorage, key, location, numel)``; the storage type
names the element type, ``numel`` counts elements, ``location`` is the device it was on
("cpu", "cuda:0"; ignored here) and ``key`` finds its bytes.

Zip format (torch >= 1.6, the default). A zip archive whose entries sit in one folder named
after the file (torch reads the folder of the first entry), stored uncompressed and 64-byte
aligned by torch (zip tools may deflate them; that reads too):

    <folder>/data.pkl      the pickle, protocol 2
    <folder>/data/<key>    each storage's bytes: numel * element size of them
    <folder>/version       the format version, "3\\n" (torch 2.13 reads 1 to 10)
    <folder>/byteorder     "little" or "big", the storages' byte order (older files have
                           none: little)
    <folder>/.format_version, .storage_alignment, .data/serialization_id: not needed here

Legacy format (torch < 1.6, or ``torch.save(..., _use_new_zipfile_serialization=False)``).
Pickles and raw bytes one after the other in a plain file:

    1. a pickle of the magic number 0x1950a86a20f9469cfc6c; the file starts 80 02 8a 0a
       (PROTO 2, LONG1 of 10 bytes);
    2. a pickle of the protocol version, 1001;
    3. a pickle of the system info, {"protocol_version": 1001, "little_endian": True,
       "type_sizes": {"short": 2, "int": 4, "long": 4 or 8}}; torch ignores it, so does this;
    4. the object pickle, its persistent ids ``("storage", type, key, location, numel,
       view_metadata)``; view_metadata is None since torch 0.4 (before, storage views: refused);
    5. a pickle of the list of storage keys, in the order their bytes follow;
    6. for each key: numel as an 8-byte little-endian integer, then numel * element size bytes,
       little-endian whatever machine wrote them.

Reading without running code
----------------------------
Unpickling calls whatever functions the pickle names (``GLOBAL os system`` then ``REDUCE``):
that is how a malicious .pth runs a command. ``_Unpickler.find_class`` hands out only a fixed
table -- ``collections.OrderedDict``, stand-ins written here for ``_rebuild_tensor_v2`` and
``_rebuild_parameter``, and the storage types -- and refuses any other global by its name;
``persistent_load`` accepts only storages. Before pickle's C unpickler runs a pickle, ``_scan``
reads it opcode by opcode, building nothing, and refuses what could hurt the C unpickler
itself (see there). Every size is checked before anything is allocated: each storage against
MAX_STORAGE_BYTES and against the bytes the file really holds for it (a zip entry's declared
size, which also caps what is inflated; the rest of a legacy file), each tensor's view against
its storage, all of them against MAX_TOTAL_BYTES. The result holds only dicts, OrderedDicts,
lists, tuples, str, int, float, bool, None and arrays, nested at most MAX_DEPTH deep, with no
cycles, so printing or comparing it cannot exhaust the stack. Anything else is a
``CheckpointError``: one line naming the file and what is wrong.
"""
from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["CheckpointError", "load_checkpoint", "read_state_dict", "MAX_PICKLE_BYTES",
           "MAX_STORAGE_BYTES", "MAX_TOTAL_BYTES", "MAX_DEPTH"]

MAX_PICKLE_BYTES = 4 << 20    # one pickle; ~150 bytes a tensor (MobileNetV2's: 47 KB). Its
                              # objects cost at most ~70 bytes of memory per byte of pickle
MAX_STORAGE_BYTES = 2 << 30   # one storage, one tensor (VGG16's largest: 411 MB)
MAX_TOTAL_BYTES = 4 << 30     # all storages, and all tensors (VGG19: 575 MB)
MAX_DEPTH = 100               # containers within containers (a wrapped state dict: 3)
MAX_DIMS = 32                 # a tensor's dimensions (NumPy 1's limit)

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C   # the legacy format's first pickle...
PROTOCOL_VERSION = 1001                 # ...and its second
FORMAT_VERSIONS = range(1, 11)          # the zip format's versions torch 2.13 reads
ZIP_MAGIC = b"PK\x03\x04"               # a zip archive's first local header

# The storage types a pickle may name -> the NumPy type of one stored element.
STORAGE_TYPES = {
    ("torch", "DoubleStorage"): "<f8", ("torch", "FloatStorage"): "<f4",
    ("torch", "HalfStorage"): "<f2",
    ("torch", "BFloat16Storage"): "<u2",     # its 16 bits; widened to float32 in _fill
    ("torch", "LongStorage"): "<i8", ("torch", "IntStorage"): "<i4",
    ("torch", "ShortStorage"): "<i2", ("torch", "CharStorage"): "i1",
    ("torch", "ByteStorage"): "u1", ("torch", "BoolStorage"): "?",
    ("torch", "ComplexDoubleStorage"): "<c16", ("torch", "ComplexFloatStorage"): "<c8",
    ("torch.storage", "UntypedStorage"): "u1",  # raw bytes
}

# The opcodes of the pickles torch.save writes (protocol 2), which torch.load(weights_only=True)
# also accepts, less EMPTY_SET (no sets here); plus protocol 4's framing, short strings,
# MEMOIZE and STACK_GLOBAL, so that a pickle.dumps() naming os.system is refused by that name.
# Bytes, buffers, sets, INST/OBJ, extension codes, POP: a checkpoint never needs them.
OPCODES = frozenset("""
    PROTO STOP FRAME MARK GLOBAL STACK_GLOBAL REDUCE NEWOBJ BUILD BINPERSID
    NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 BINFLOAT
    BINUNICODE SHORT_BINUNICODE SHORT_BINSTRING EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3
    EMPTY_LIST APPEND APPENDS EMPTY_DICT SETITEM SETITEMS
    BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET""".split())


class CheckpointError(ValueError):
    """Not a checkpoint this reader accepts; the one-line message names the file and why."""


class _StorageType(NamedTuple):
    """What find_class gives for ``torch.FloatStorage`` & co. A tuple, so that pickle's BUILD,
    which sets attributes, cannot change it."""
    name: str
    dtype: np.dtype


class _Storage(NamedTuple):
    """What persistent_load gives: a storage the pickle declared; its bytes are read later."""
    key: str
    type: _StorageType
    numel: int


class _Function(NamedTuple):
    """What find_class gives for a rebuild function: calls `call`. A tuple, like _StorageType."""
    name: str
    call: Callable

    def __call__(self, *args):
        return self.call(*args)


def _short(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, for messages that quote the file."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_index(value) -> bool:
    return type(value) is int and value >= 0


def _is_empty_dict(value) -> bool:
    return type(value) in (dict, OrderedDict) and not value


class _Unpickler(pickle.Unpickler):
    """pickle's C unpickler, allowed to call only this module's stand-ins for torch's functions.

    `declare(key, nbytes)` is the format's check that the file holds a storage's bytes (None:
    this pickle may name no storage). After load(): `storages` by key, and `tensors`: each
    array handed out, still empty, with where its values are (storage, offset, stride).
    """

    def __init__(self, data, path: Path, declare: Callable | None = None):
        super().__init__(io.BytesIO(data), encoding="utf-8")  # Python 2 strings, as torch.load
        self.path, self.declare = path, declare
        self.storages: dict[str, _Storage] = {}
        self.tensors: list[tuple[np.ndarray, _Storage, int, tuple]] = []
        self.tensor_bytes = 0

    def error(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {message}")

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _Function(name, self.rebuild_tensor)
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _Function(name, self.rebuild_parameter)
        if (module, name) in STORAGE_TYPES:
            return _StorageType(name, np.dtype(STORAGE_TYPES[module, name]))
        raise self.error(f"refused the global {_short(repr(f'{module}.{name}'))}: a checkpoint "
                         f"may name only tensors, storages and collections.OrderedDict, and "
                         f"anything else could run code")

    def persistent_load(self, pid):
        # zip: ("storage", type, key, location, numel); legacy: the same and view_metadata
        if (self.declare is None or type(pid) is not tuple or len(pid) not in (5, 6)
                or type(pid[0]) is not str or pid[0] != "storage"
                or (len(pid) == 6 and pid[5] is not None)):
            raise self.error("a persistent id that is not a storage")
        _, storage_type, key, location, numel = pid[:5]
        if not (type(storage_type) is _StorageType and type(key) is str
                and type(location) is str and _is_index(numel)):
            raise self.error("a storage with a bad type, key, location or size")
        nbytes = numel * storage_type.dtype.itemsize
        if nbytes > MAX_STORAGE_BYTES:
            raise self.error(f"storage {_short(repr(key))} declares {nbytes:,} bytes, more "
                             f"than the limit of {MAX_STORAGE_BYTES:,}")
        storage = self.storages.get(key)
        if storage is None:
            self.declare(key, nbytes)
            storage = self.storages[key] = _Storage(key, storage_type, numel)
        elif storage != (key, storage_type, numel):
            raise self.error(f"storage {_short(repr(key))} is declared twice, differently")
        return storage

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad, hooks,
                       metadata=None):
        """``torch._utils._rebuild_tensor_v2``: element i is storage[offset + sum(i_k * stride_k)].
        -> the array of shape `size` that _fill fills once the storages are read."""
        if type(storage) is not _Storage:
            raise self.error("a tensor whose storage is not a storage")
        if not (_is_index(offset) and type(size) is tuple and type(stride) is tuple
                and len(size) == len(stride) <= MAX_DIMS
                and all(_is_index(v) for v in size + stride)):
            raise self.error("a tensor with a bad size, stride or offset")
        if (type(requires_grad) is not bool or not _is_empty_dict(hooks)
                or not (metadata is None or _is_empty_dict(metadata))):
            raise self.error("a tensor with backward hooks or metadata")
        numel = math.prod(size)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if numel and last >= storage.numel:
            raise self.error(_short(f"a tensor of size {size}, stride {stride}, offset {offset}",
                                    200) + f" reaches past the end of its storage "
                             f"{_short(repr(storage.key))} ({storage.numel:,} elements)")
        widen = storage.type.name == "BFloat16Storage"
        dtype = np.dtype(np.float32) if widen else storage.type.dtype.newbyteorder("=")
        nbytes = numel * dtype.itemsize
        self.tensor_bytes += nbytes
        if nbytes > MAX_STORAGE_BYTES or self.tensor_bytes > MAX_TOTAL_BYTES:
            raise self.error(f"its tensors take more than the limit of {MAX_STORAGE_BYTES:,} "
                             f"bytes for one, {MAX_TOTAL_BYTES:,} for all")
        out = np.empty(size, dtype)
        self.tensors.append((out, storage, offset, stride))
        return out

    def rebuild_parameter(self, data, requires_grad, hooks):
        """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is just its tensor here."""
        if type(data) is not np.ndarray or type(requires_grad) is not bool \
                or not _is_empty_dict(hooks):
            raise self.error("a parameter that is not a plain tensor")
        return data


def _scan(data, path: Path, what: str) -> int:
    """Check the pickle at the start of `data` opcode by opcode, building nothing; -> its length.

    pickle's C unpickler trusts its input in ways that cost memory or the process, so before it
    runs, this refuses: an opcode not in OPCODES; a pickle longer than MAX_PICKLE_BYTES or cut
    short (genops raises); a memo index beyond the entries made so far (the C unpickler grows
    its memo table to twice the largest index: one LONG_BINPUT of 2**30 costs 16 GB); a tuple
    nested deeper than MAX_DEPTH: the unpickler hashes dict keys, hashing a tuple recurses in
    C, and a million nested tuples (a 1 MB pickle) overflow the C stack -- torch.load's own
    reader crashes on it too. Tuples never change once made, so their depth is known here by
    replaying the pickle's stack and memo with each object's tuple depth in its place (0 for
    anything that is not a tuple).
    """
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[int, int] = {}
    file = io.BytesIO(data[:MAX_PICKLE_BYTES])
    try:
        for op, arg, _ in pickletools.genops(file):
            name = op.name
            if name not in OPCODES:
                raise CheckpointError(f"{path}: {what} uses the pickle opcode {name}, which a "
                                      f"checkpoint never needs")
            if name == "MARK":
                marks.append(len(stack))
            elif name in ("TUPLE", "APPENDS", "SETITEMS"):
                items = stack[marks[-1]:]
                del stack[marks.pop():]
                if name == "TUPLE":
                    stack.append(1 + max(items, default=0))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise IndexError("stack underflow")
                stack[-n:] = [1 + max(stack[-n:])]
            elif name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
                index = len(memo) if name == "MEMOIZE" else arg
                if index > len(memo):
                    raise CheckpointError(f"{path}: {what} stores memo entry {index:,} after "
                                          f"only {len(memo):,}")
                memo[index] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg, 0))
            else:
                if len(stack) < len(op.stack_before):
                    raise IndexError("stack underflow")
                del stack[len(stack) - len(op.stack_before):]
                stack.extend([0] * len(op.stack_after))
                continue
            if stack and stack[-1] > MAX_DEPTH:    # a tuple just made, or fetched
                raise CheckpointError(f"{path}: {what} nests tuples more than {MAX_DEPTH} deep")
    except CheckpointError:
        raise
    except (ValueError, IndexError) as e:  # genops: unknown opcode, argument cut short, no STOP
        raise CheckpointError(f"{path}: {what} is damaged or truncated "
                              f"({_short(str(e), 120)})") from None
    return file.tell()


def _unpickle(data, path: Path, what: str, declare=None) -> tuple[object, _Unpickler, int]:
    """Scan, then unpickle, the pickle at the start of `data`; -> (object, unpickler, length)."""
    end = _scan(data, path, what)
    unpickler = _Unpickler(data[:end], path, declare)
    try:
        obj = unpickler.load()
    except CheckpointError:
        raise
    except Exception as e:  # a damaged pickle can raise nearly anything (pickle's docs say so)
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: {what} is damaged ({type(e).__name__}"
                              f"{': ' + _short(message, 120) if message else ''})") from None
    return obj, unpickler, end


_CONTAINERS = (dict, OrderedDict, list, tuple)
_LEAVES = (str, int, float, bool, type(None), np.ndarray)


def _children(node) -> list:
    if isinstance(node, dict):   # and the attributes BUILD gave an OrderedDict (_metadata)
        return [*node.keys(), *node.values(), *getattr(node, "__dict__", {}).values()]
    return list(node)


def _check_contents(obj, path: Path) -> None:
    """Refuse any object but containers and leaves (_CONTAINERS, _LEAVES), a container inside
    itself, and containers nested more than MAX_DEPTH deep (a million nested lists is a 2 MB
    pickle, and whoever prints or compares them would exhaust the stack). Walked with a list
    as the stack, never recursively; `height` (levels of containers from a container down) is
    kept per container, so one shared by many parents is walked once.
    """
    height: dict[int, int] = {}
    open_: set[int] = set()                      # the containers on the path being walked
    todo = [(obj, False)]
    while todo:
        node, children_done = todo.pop()
        if type(node) in _LEAVES:
            continue
        if type(node) not in _CONTAINERS:
            raise CheckpointError(f"{path}: holds a {type(node).__name__.lstrip('_')}, which "
                                  f"is neither a tensor, a number, a string nor a container")
        key = id(node)
        if children_done:
            open_.discard(key)
            height[key] = 1 + max((height.get(id(c), 0) for c in _children(node)), default=0)
            if height[key] > MAX_DEPTH:
                raise CheckpointError(f"{path}: containers nested more than {MAX_DEPTH} deep")
        elif key in open_:
            raise CheckpointError(f"{path}: a container that contains itself")
        elif key not in height:
            open_.add(key)
            if len(open_) > MAX_DEPTH:
                raise CheckpointError(f"{path}: containers nested more than {MAX_DEPTH} deep")
            todo.append((node, True))
            todo.extend((child, False) for child in _children(node))


def _fill(unpickler: _Unpickler, read: Callable[[_Storage], bytes], byteorder: str = "<"):
    """Copy each tensor's elements out of its storage (read once per storage) into its array."""
    flat: dict[str, np.ndarray] = {}
    for out, storage, offset, stride in unpickler.tensors:
        if out.size == 0:
            continue
        if storage.key not in flat:
            dtype = storage.type.dtype.newbyteorder(byteorder)
            flat[storage.key] = np.frombuffer(read(storage), dtype, storage.numel)
        values = flat[storage.key]
        view = np.lib.stride_tricks.as_strided(                       # bounds checked above
            values[offset:], out.shape, [s * values.itemsize for s in stride], writeable=False)
        if storage.type.name == "BFloat16Storage":
            view = (view.astype(np.uint32) << 16).view(np.float32)   # a float32's top half
        out[...] = view


def _read_zip(archive: zipfile.ZipFile, path: Path) -> object:
    names = archive.namelist()
    if not names or "/" not in names[0]:
        raise CheckpointError(f"{path}: a zip archive, but not a PyTorch checkpoint (its first "
                              f"entry is not in a folder)")
    folder = names[0].split("/")[0]

    def record(name: str, limit: int) -> bytes | None:
        """Entry <folder>/<name> (None if absent), refused if it declares more than `limit`
        bytes; reads only as many bytes as declared, whatever the data would inflate to."""
        try:
            info = archive.getinfo(f"{folder}/{name}")
        except KeyError:
            return None
        if info.file_size > limit:
            raise CheckpointError(f"{path}: entry {_short(name)} declares {info.file_size:,} "
                                  f"bytes, more than the limit of {limit:,}")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{path}: entry {_short(name)} is encrypted")
        with archive.open(info) as entry:
            data = entry.read(info.file_size)
        if len(data) != info.file_size:
            raise CheckpointError(f"{path}: entry {_short(name)} is truncated")
        return data

    version = record("version", 16) or record(".data/version", 16)
    if version is None:
        raise CheckpointError(f"{path}: a zip archive, but not a PyTorch checkpoint (no version "
                              f"entry)")
    if not version.strip().isdigit() or int(version) not in FORMAT_VERSIONS:
        raise CheckpointError(f"{path}: PyTorch zip format version {_short(repr(version))}, "
                              f"not one of {FORMAT_VERSIONS.start} to {FORMAT_VERSIONS.stop - 1}")
    order = record("byteorder", 16)
    if order is None:
        order = b"little"                     # older files have none; torch reads little
    if order not in (b"little", b"big"):
        raise CheckpointError(f"{path}: byteorder {_short(repr(order))} is neither little nor big")
    pickled = record("data.pkl", MAX_PICKLE_BYTES)
    if pickled is None:
        raise CheckpointError(f"{path}: a zip archive, but not a PyTorch checkpoint (no data.pkl)")

    declared = 0

    def declare(key: str, nbytes: int) -> None:
        nonlocal declared
        name = f"data/{key}"
        try:
            size = archive.getinfo(f"{folder}/{name}").file_size
        except KeyError:
            raise CheckpointError(f"{path}: storage {_short(repr(key))} has no entry "
                                  f"{_short(name)}") from None
        if size != nbytes:
            raise CheckpointError(f"{path}: entry {_short(name)} holds {size:,} bytes but its "
                                  f"storage declares {nbytes:,}")
        declared += nbytes
        if declared > MAX_TOTAL_BYTES:
            raise CheckpointError(f"{path}: its storages declare more than the limit of "
                                  f"{MAX_TOTAL_BYTES:,} bytes")

    obj, unpickler, _ = _unpickle(pickled, path, "data.pkl", declare)
    _check_contents(obj, path)
    _fill(unpickler, lambda s: record(f"data/{s.key}", MAX_STORAGE_BYTES),
          "<" if order == b"little" else ">")
    return obj


def _read_legacy(data: bytes, path: Path) -> object:
    view = memoryview(data)
    try:
        _scan(view, path, "the first pickle")
    except CheckpointError:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: neither a zip archive nor "
                              f"torch's legacy format (it starts with {bytes(view[:8])!r})"
                              ) from None
    magic, _, pos = _unpickle(view, path, "the first pickle")   # a global in it is named
    if type(magic) is not int or magic != MAGIC_NUMBER:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: a pickle, but without torch's "
                              f"magic number")

    def next_pickle(what: str, declare=None) -> tuple[object, _Unpickler]:
        nonlocal pos
        obj, unpickler, length = _unpickle(view[pos:], path, what, declare)
        pos += length
        return obj, unpickler

    version, _ = next_pickle("the protocol version")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise CheckpointError(f"{path}: legacy format protocol {_short(repr(version))}; torch "
                              f"writes and reads only {PROTOCOL_VERSION}")
    next_pickle("the system info")                         # ignored, as torch ignores it
    declared = 0

    def declare(key: str, nbytes: int) -> None:
        nonlocal declared
        declared += 8 + nbytes                             # its element count, its bytes
        if declared > len(data):
            raise CheckpointError(f"{path}: its storages declare {declared:,} bytes, more "
                                  f"than the whole file ({len(data):,})")

    obj, unpickler = next_pickle("the object pickle", declare)
    keys, _ = next_pickle("the storage keys")
    if type(keys) is not list or not all(type(k) is str for k in keys):
        raise CheckpointError(f"{path}: the storage keys are not a list of strings")
    _check_contents(obj, path)
    offsets: dict[str, int] = {}
    for key in keys:
        storage = unpickler.storages.get(key)
        if storage is None or key in offsets:
            raise CheckpointError(f"{path}: storage {_short(repr(key))} is listed twice or "
                                  f"was never declared")
        nbytes = storage.numel * storage.type.dtype.itemsize
        if pos + 8 + nbytes > len(data):
            raise CheckpointError(f"{path}: truncated: storage {_short(repr(key))} needs "
                                  f"{8 + nbytes:,} bytes from offset {pos:,}, the file ends "
                                  f"at {len(data):,}")
        numel = int.from_bytes(view[pos:pos + 8], "little", signed=True)
        if numel != storage.numel:
            raise CheckpointError(f"{path}: storage {_short(repr(key))} holds {numel:,} "
                                  f"elements, the pickle declares {storage.numel:,}")
        offsets[key] = pos + 8
        pos += 8 + nbytes
    missing = unpickler.storages.keys() - offsets.keys()
    if missing:
        raise CheckpointError(f"{path}: storage {_short(repr(min(missing)))} has no bytes in the "
                              f"file")
    _fill(unpickler, lambda s: view[offsets[s.key]:][:s.numel * s.type.dtype.itemsize])
    return obj


def load_checkpoint(path) -> object:
    """What ``torch.load(path, weights_only=True)`` returns, tensors as NumPy arrays.

    Reads both of torch's formats (the module docstring describes them). Raises
    CheckpointError, one line naming the file, for anything else: a file that is not a
    checkpoint or is damaged, a global other than the tensors', storages' and OrderedDict's, a
    size over the limits (MAX_PICKLE_BYTES, MAX_STORAGE_BYTES, MAX_TOTAL_BYTES), a tensor
    reaching outside its storage, containers nested over MAX_DEPTH.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(len(ZIP_MAGIC))
            if size == 0:
                raise CheckpointError(f"{path}: is empty, not a PyTorch checkpoint")
            if head != ZIP_MAGIC:
                if size > MAX_TOTAL_BYTES + MAX_PICKLE_BYTES:
                    raise CheckpointError(f"{path}: {size:,} bytes, more than a checkpoint "
                                          f"may hold ({MAX_TOTAL_BYTES + MAX_PICKLE_BYTES:,})")
                file.seek(0)
                data = file.read()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if head != ZIP_MAGIC:
        return _read_legacy(data, path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_zip(archive, path)
    except CheckpointError:
        raise
    # what zipfile raises on a damaged archive: bad or missing headers, a bad CRC, a stream
    # cut short, an offset past the end, a compression method it lacks
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError) as e:
        raise CheckpointError(f"{path}: a damaged or truncated zip archive "
                              f"({_short(str(e) or type(e).__name__, 120)})") from None


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The state dict in `path`, {key: array} in the file's order, also when wrapped as
    ``{"state_dict": ...}`` or ``{"model": ...}`` (a training checkpoint); CheckpointError
    for anything else (see load_checkpoint)."""
    path = Path(path)
    state = load_checkpoint(path)
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict (a dict of tensors by name); got "
                              f"{type(state).__name__}")
    for key, value in state.items():
        if type(key) is not str:
            raise CheckpointError(f"{path}: not a state dict (a dict of tensors by name): a key "
                                  f"of type {type(key).__name__}, not a string")
        if type(value) is not np.ndarray:
            raise CheckpointError(f"{path}: not a state dict (a dict of tensors by name): "
                                  f"{_short(repr(key))} holds {type(value).__name__}, not a tensor")
    return dict(state)
