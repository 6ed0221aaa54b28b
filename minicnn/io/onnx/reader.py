"""Reading an ONNX file safely, and without holding its weights twice.

An ONNX file is one protobuf message, ``ModelProto`` (onnx/onnx.proto): the graph's nodes and,
inside the graph, its weights (``initializer`` tensors), each weight's numbers one contiguous
run of bytes (``raw_data``, or the packed ``float_data``). Parsing the whole message with the
``onnx`` package keeps two copies of every weight (the file's bytes and the parsed message: a
550 MB VGG19 peaks at 1.17 GB before a single array exists), so this module walks the
protobuf wire format itself, only as deep as the initializers:

- ``ModelProto`` -> its ``graph`` -> each ``initializer``: the tensor's name, type and dims are
  read, and where its numbers lie in the file is noted, not read;
- everything else (nodes, inputs, outputs, metadata) is copied into a small message that the
  ``onnx`` package parses as usual (it checks the nesting depth of what it parses and refuses a
  message nested absurdly deep);
- ``read_tensor`` then reads one weight's bytes straight into the numpy array the model will
  keep: the weights are in memory once.

Nothing in a file is trusted. Every length the wire format declares must fit inside the
message that holds it (a truncated or crafted file is refused before anything is read); a
tensor's dims give its size, which must be at most ``MAX_TENSOR_BYTES`` and match the bytes it
holds before an array is allocated; a tensor stored outside the file (``external_data``) must
lie in the model's folder: an absolute location, a ``..``, or a symbolic link that leads out
is refused, naming the tensor and the location, and its offset and length must lie inside
that file. Every refusal is an ``OnnxError`` of one line naming the file.

References: the protobuf wire format (protobuf.dev/programming-guides/encoding); ONNX's IR
(onnx/docs/IR.md: initializers, external data).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from minicnn.io.convert import ConversionError

__all__ = ["OnnxError", "OnnxFile", "TensorRef", "read_onnx", "read_tensor", "array_from_proto",
           "MAX_TENSOR_BYTES", "MAX_FILE_BYTES"]

MAX_TENSOR_BYTES = 2 << 30      # one tensor; VGG19's largest is 411 MB
MAX_FILE_BYTES = 4 << 30        # the .onnx file itself (protobuf itself stops at 2 GiB)
MAX_SMALL_BYTES = 16 << 20      # data stored as varints (int64_data, int32_data): shapes, axes
MAX_NAME_BYTES = 4096           # a tensor's name or an external location

# ONNX TensorProto.DataType -> the numpy dtype of its little-endian bytes. The float types are
# weights; the integer ones are shapes, axes and pads.
DTYPES = {1: np.dtype("<f4"), 10: np.dtype("<f2"), 11: np.dtype("<f8"), 2: np.dtype("u1"),
          3: np.dtype("i1"), 4: np.dtype("<u2"), 5: np.dtype("<i2"), 6: np.dtype("<i4"),
          7: np.dtype("<i8"), 9: np.dtype("?")}
DTYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
               15: "COMPLEX128", 16: "BFLOAT16"}

# Field numbers in onnx.proto (the messages this module walks itself)
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
(_T_DIMS, _T_DATA_TYPE, _T_SEGMENT, _T_FLOAT, _T_INT32, _T_STRING, _T_INT64, _T_NAME, _T_RAW,
 _T_DOUBLE, _T_UINT64, _T_EXTERNAL, _T_LOCATION) = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class OnnxError(ConversionError):
    """A file that is not ONNX, is damaged, unsafe, or holds what minicnn does not convert;
    the message (one line) names the file and what is wrong. A ConversionError, so that the
    command line reports it as it reports a checkpoint that does not convert."""


@dataclass
class TensorRef:
    """Where an initializer's numbers are: ``kind`` "raw" (raw_data), "float" (float_data),
    "double" (double_data), "external" (another file) with a byte range (start, stop), or
    "values" (int32/int64 varints, decoded), or "none"."""

    name: str
    dims: tuple
    data_type: int
    kind: str = "none"
    start: int = 0
    stop: int = 0
    values: list = field(default_factory=list)
    external: dict = field(default_factory=dict)


@dataclass
class OnnxFile:
    """A parsed file: ``model`` (an onnx.ModelProto whose graph has no initializers) and
    ``tensors`` (name -> TensorRef) for ``read_tensor``."""

    path: Path
    model: object
    tensors: dict


def _cut(text, limit=60) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 4] + " ..."


# ----------------------------------------------------------------------------- wire format

class _Wire:
    """The protobuf wire format of a byte range of a file, read with seek and read."""

    def __init__(self, f, path):
        self.f, self.path = f, path

    def damaged(self, what):
        return OnnxError(f"{self.path}: not a readable ONNX file ({what}; truncated or "
                         f"damaged?)")

    def varint(self, pos, end):
        """The varint at ``pos`` (before ``end``) -> (value, position after it)."""
        self.f.seek(pos)
        chunk = self.f.read(min(10, end - pos))
        value = 0
        for i, byte in enumerate(chunk):
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return value, pos + i + 1
        raise self.damaged(f"a number runs past the end of its message at byte {pos}")

    def fields(self, start, end):
        """Yield (number, wire type, value or (payload start, payload stop), (field start,
        field stop)) for each field of the message in bytes start..end. A length must fit
        inside the message before anything after it is read."""
        pos = start
        while pos < end:
            first = pos
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.damaged(f"field number 0 at byte {first}")
            if wire == _VARINT:
                value, pos = self.varint(pos, end)
                yield number, wire, value, (first, pos)
                continue
            if wire == _LEN:
                length, pos = self.varint(pos, end)
            elif wire in (_FIXED64, _FIXED32):
                length = 8 if wire == _FIXED64 else 4
            else:
                raise self.damaged(f"wire type {wire} at byte {first}")
            if length > end - pos:
                raise self.damaged(f"a field at byte {first} declares {length:,} bytes, "
                                   f"{end - pos:,} are left in its message")
            yield number, wire, (pos, pos + length), (first, pos + length)
            pos += length

    def read(self, start, stop) -> bytes:
        self.f.seek(start)
        data = self.f.read(stop - start)
        if len(data) != stop - start:
            raise self.damaged(f"bytes {start}..{stop} cannot be read")
        return data

    def varints(self, start, stop, what):
        """A packed run of varints -> a list of Python ints (int64: two's complement)."""
        if stop - start > MAX_SMALL_BYTES:
            raise OnnxError(f"{self.path}: {what} stores {stop - start:,} bytes as varints, "
                            f"more than the limit of {MAX_SMALL_BYTES:,} (weights belong in "
                            f"raw_data)")
        data, values, value, shift = self.read(start, stop), [], 0, 0
        for byte in data:
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                values.append(value - (1 << 64) if value >= 1 << 63 else value)
                value, shift = 0, 0
            elif shift > 63:
                raise self.damaged(f"an over-long number in {what}")
        if shift:
            raise self.damaged(f"a packed number in {what} is cut off")
        return values


# ----------------------------------------------------------------------------- the file

def read_onnx(path) -> OnnxFile:
    """Parse ``path``: the structure with the ``onnx`` package, the initializers' places by
    hand (see the module docstring). Raises OnnxError (one line) for a missing, unreadable,
    non-ONNX, truncated or damaged file."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise OnnxError(f"{path}: no such file" if not path.exists() else
                        f"{path}: is not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise OnnxError(f"{path}: {size:,} bytes, more than the limit of {MAX_FILE_BYTES:,}")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise OnnxError(f"{path}: cannot be read ({e.strerror})") from None
    with f:
        wire = _Wire(f, path)
        slim, tensors, graphs = bytearray(), {}, 0
        for number, kind, value, whole in wire.fields(0, size):
            if number == _MODEL_GRAPH and kind == _LEN:
                graphs += 1
                graph = bytearray()
                for g_number, g_kind, g_value, g_whole in wire.fields(*value):
                    if g_number == _GRAPH_INITIALIZER and g_kind == _LEN:
                        ref = _tensor_header(wire, *g_value)
                        if ref.name in tensors:
                            raise OnnxError(f"{path}: two initializers are named "
                                            f"{_cut(repr(ref.name))}")
                        tensors[ref.name] = ref
                    else:
                        graph += wire.read(*g_whole)
                slim += _key(_MODEL_GRAPH, _LEN) + _varint_bytes(len(graph)) + graph
            else:
                slim += wire.read(*whole)
        if graphs != 1:
            raise OnnxError(f"{path}: not an ONNX model "
                            f"({'no graph' if not graphs else 'two graphs'})")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(bytes(slim))
    except (DecodeError, RecursionError, ValueError) as e:
        reason = _cut(" ".join(str(e).split()), 120)
        raise OnnxError(f"{path}: not a readable ONNX model ({reason}; nested too deeply, "
                        f"truncated or damaged?)") from None
    return OnnxFile(path, model, tensors)


def _key(number, kind) -> bytes:
    return _varint_bytes(number << 3 | kind)


def _varint_bytes(value) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tensor_header(wire, start, end) -> TensorRef:
    """A TensorProto's name, type, dims and the place of its numbers; nothing else is read."""
    ref = TensorRef("", (), 1)
    dims, data, location = [], None, 0
    for number, kind, value, _ in wire.fields(start, end):
        if number == _T_DIMS:
            dims += [value] if kind == _VARINT else wire.varints(*value, "a tensor's dims")
        elif number == _T_DATA_TYPE and kind == _VARINT:
            ref.data_type = value
        elif number == _T_NAME and kind == _LEN:
            if value[1] - value[0] > MAX_NAME_BYTES:
                raise OnnxError(f"{wire.path}: a tensor name of {value[1] - value[0]:,} bytes")
            ref.name = wire.read(*value).decode("utf-8", "replace")
        elif number in (_T_RAW, _T_FLOAT, _T_DOUBLE) and kind == _LEN:
            data = ({_T_RAW: "raw", _T_FLOAT: "float", _T_DOUBLE: "double"}[number], value)
        elif number in (_T_INT32, _T_INT64, _T_UINT64) and kind == _LEN:
            data = ("values", value)
        elif number in (_T_FLOAT, _T_DOUBLE, _T_INT32, _T_INT64) and kind != _LEN:
            raise OnnxError(f"{wire.path}: a tensor stores its numbers one field each "
                            f"(unpacked); minicnn reads packed or raw data")
        elif number in (_T_SEGMENT, _T_STRING):
            raise OnnxError(f"{wire.path}: a tensor is stored in segments or as strings, which "
                            f"minicnn does not read")
        elif number == _T_EXTERNAL and kind == _LEN:
            entry = {}
            for e_number, e_kind, e_value, _ in wire.fields(*value):
                if e_number in (1, 2) and e_kind == _LEN:
                    if e_value[1] - e_value[0] > MAX_NAME_BYTES:
                        raise OnnxError(f"{wire.path}: an external-data entry of "
                                        f"{e_value[1] - e_value[0]:,} bytes")
                    entry[e_number] = wire.read(*e_value).decode("utf-8", "replace")
            ref.external[entry.get(1, "")] = entry.get(2, "")
        elif number == _T_LOCATION and kind == _VARINT:
            location = value
    ref.dims = tuple(d - (1 << 64) if d >= 1 << 63 else d for d in dims)
    if location == 1:
        ref.kind = "external"
    elif data is not None:
        ref.kind = data[0]
        if ref.kind == "values":
            ref.values = wire.varints(*data[1], f"tensor {_cut(repr(ref.name))}")
        else:
            ref.start, ref.stop = data[1]
    return ref


# ----------------------------------------------------------------------------- tensors

def _declared(path, name, dims, data_type):
    """(dtype, count) of a tensor, its dims and size checked against the limits."""
    what = f"{path}: tensor {_cut(repr(name))}"
    if data_type not in DTYPES:
        raise OnnxError(f"{what} has type {DTYPE_NAMES.get(data_type, data_type)}, which "
                        f"minicnn does not read (float, float16, double and integers)")
    if any(d < 0 for d in dims):
        raise OnnxError(f"{what} declares a negative dimension {list(dims)}")
    dtype, count = DTYPES[data_type], math.prod(dims)
    if count * dtype.itemsize > MAX_TENSOR_BYTES:
        raise OnnxError(f"{what} declares dims {_cut(list(dims))}, {count * dtype.itemsize:,} "
                        f"bytes, more than the limit of {MAX_TENSOR_BYTES:,}")
    return dtype, count


def read_tensor(file: OnnxFile, name: str) -> np.ndarray:
    """The initializer ``name`` as a new numpy array (float16 becomes float32), its size
    checked before it is allocated, its bytes read straight into it."""
    ref = file.tensors[name]
    path = file.path
    dtype, count = _declared(path, name, ref.dims, ref.data_type)
    what = f"{path}: tensor {_cut(repr(name))}"
    if ref.kind == "values":
        if len(ref.values) != count:
            raise OnnxError(f"{what} declares {count:,} values and holds {len(ref.values):,}")
        values = np.array(ref.values, np.int64)
        if ref.data_type == 10:        # float16 stored as its 16 bits in int32_data
            return values.astype("<u2").view("<f2").astype(np.float32).reshape(ref.dims)
        return values.astype(dtype).reshape(ref.dims)
    if ref.kind == "none":
        if count:
            raise OnnxError(f"{what} declares {count:,} values and holds none")
        return np.zeros(ref.dims, dtype)
    item = {"float": 4, "double": 8}.get(ref.kind, dtype.itemsize)
    if ref.kind in ("float", "double") and item != dtype.itemsize:
        raise OnnxError(f"{what}: its numbers are stored as {ref.kind}, its type says "
                        f"{dtype}")
    if ref.kind == "external":
        source, start, stop = _external_range(path, name, ref, count * item)
    else:
        source, start, stop = path, ref.start, ref.stop
    if stop - start != count * item:
        raise OnnxError(f"{what} declares dims {list(ref.dims)} ({count * item:,} bytes) but "
                        f"holds {stop - start:,} bytes")
    array = np.empty(ref.dims, dtype)
    if count:
        with open(source, "rb") as f:
            f.seek(start)
            if f.readinto(memoryview(array).cast("B")) != stop - start:
                raise OnnxError(f"{what}: its bytes cannot be read (a truncated file?)")
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def _external_range(path, name, ref, size):
    """(file, start, stop) of an external tensor, the location confined to the model's
    folder and the range to the file."""
    location = ref.external.get("location", "")
    what = f"{path}: tensor {_cut(repr(name))} is stored in {_cut(repr(location))}"
    posix = PurePosixPath(location.replace("\\", "/"))
    if not location or posix.is_absolute() or ":" in location or ".." in posix.parts:
        raise OnnxError(f"{what}, outside the model's folder; refusing to read it")
    folder = path.resolve().parent
    target = (folder / Path(*posix.parts)).resolve()
    if folder not in target.parents:
        raise OnnxError(f"{what}, which leads outside the model's folder (a symbolic link?); "
                        f"refusing to read it")
    if not target.is_file():
        raise OnnxError(f"{what}, which does not exist")
    try:
        start = int(ref.external.get("offset", "0"))
        length = int(ref.external.get("length", str(size)))
    except ValueError:
        raise OnnxError(f"{what} with a bad offset or length") from None
    available = target.stat().st_size
    if start < 0 or length < 0 or start + length > available:
        raise OnnxError(f"{what} at bytes {start:,}..{start + length:,}, beyond its "
                        f"{available:,} bytes")
    return target, start, start + length


def array_from_proto(path, tensor) -> np.ndarray:
    """A tensor held by the graph itself (a Constant node's value, an attribute), an
    onnx.TensorProto, as a numpy array, with the same checks as ``read_tensor``."""
    dims, data_type = tuple(tensor.dims), tensor.data_type
    name = tensor.name or "(a constant)"
    dtype, count = _declared(path, name, dims, data_type)
    if tensor.data_location == 1:
        raise OnnxError(f"{path}: constant {_cut(repr(name))} is stored in another file, "
                        f"which minicnn reads only for initializers")
    what = f"{path}: constant {_cut(repr(name))}"
    if tensor.raw_data:
        if len(tensor.raw_data) != count * dtype.itemsize:
            raise OnnxError(f"{what} declares dims {list(dims)} but holds "
                            f"{len(tensor.raw_data):,} bytes")
        array = np.frombuffer(tensor.raw_data, dtype).reshape(dims).copy()
    else:
        values = {1: tensor.float_data, 11: tensor.double_data, 7: tensor.int64_data}.get(
            data_type, tensor.int32_data)
        if len(values) != count:
            raise OnnxError(f"{what} declares {count:,} values and holds {len(values):,}")
        if data_type == 10:
            array = np.array(values, np.int64).astype("<u2").view("<f2").reshape(dims)
        else:
            array = np.array(values, dtype).reshape(dims)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
