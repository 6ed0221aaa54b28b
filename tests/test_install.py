"""An install that works outside a checkout: build a wheel, install it (not editable) into a
fresh virtual environment, and run ``minicnn demo`` and ``minicnn saliency IMAGE`` from
another folder. The shipped weights and sample images must come from the wheel itself.

Quick and offline: the wheel is built with this environment's setuptools
(``--no-build-isolation``) from a copy of the source tree, installed with ``--no-deps
--no-index``, and the fresh environment borrows this one's numpy, numba, Pillow, matplotlib,
threadpoolctl and tqdm through a ``.pth`` file (which adds their folder to ``sys.path``
without running the ``.pth`` files in it, so an editable install of minicnn here is not
seen there).
"""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                              ".pytest_cache", "runs", "out", "saliency_out")


def _run(argv, **kwargs):
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=600, **kwargs)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done


def _can_build_wheels() -> bool:
    """setuptools >= 70.1 builds wheels itself; older ones need the wheel package.
    Asked in a fresh interpreter: importing setuptools here, after another test has imported
    the standard library's distutils (Python <= 3.11), trips setuptools' own distutils check."""
    probe = ("import importlib.util as u; "
             "raise SystemExit(not (u.find_spec('setuptools.command.bdist_wheel') "
             "or u.find_spec('wheel')))")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not _can_build_wheels():
        pytest.skip("building a wheel offline needs setuptools >= 70.1 (or the wheel package)")
    work = tmp_path_factory.mktemp("install")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", work / "dist", src])
    wheel, = (work / "dist").glob("minicnn-*.whl")
    env_dir = work / "fresh"
    _run([sys.executable, "-m", "venv", env_dir])
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MINICNN_WEIGHTS", "VIRTUAL_ENV")}
    # (a PYTHONPATH holding a checkout would make pip find minicnn there and install nothing)
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], env=env)
    fresh_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                          "['purelib'])"]).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
            *site.getsitepackages()}
    (fresh_site / "borrowed_dependencies.pth").write_text(
        "\n".join(sorted(p for p in ours if Path(p).is_dir())) + "\n")
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return wheel, env_dir, elsewhere, env


def test_the_wheel_carries_the_model_and_the_samples(installed):
    wheel, *_ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "minicnn/io/data/cluttered_fmnist.npz" in names
    assert "minicnn/io/data/samples/samples.json" in names
    assert sum(n.startswith("minicnn/io/data/samples/") and n.endswith(".png")
               for n in names) == 20
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]


def test_demo_and_saliency_run_from_another_folder(installed):
    wheel, env_dir, elsewhere, env = installed
    minicnn = env_dir / "bin" / "minicnn"
    where = _run([env_dir / "bin" / "python", "-c",
                  "import minicnn, minicnn.io.weights as w; print(minicnn.__file__); "
                  "print(w.default_weights_path())"], cwd=elsewhere, env=env).stdout.split()
    assert all(str(env_dir) in line for line in where), where       # the wheel's, not ours
    assert not any(str(ROOT) in line for line in where), where

    demo = _run([minicnn, "demo", "--out", "demo_out"], cwd=elsewhere, env=env)
    assert "sample images classified correctly" in demo.stdout
    written = sorted(os.listdir(elsewhere / "demo_out"))
    assert len(written) == 60 and all("_gradient_" in n and n.endswith((".png", ".npy"))
                                      for n in written)   # figure, map and overlay of 20

    image = elsewhere / "boot.png"
    image.write_bytes((ROOT / "minicnn" / "io" / "data" / "samples" /
                       "test00000_ankle-boot.png").read_bytes())
    one = _run([minicnn, "saliency", image.name, "--out", "one"], cwd=elsewhere, env=env)
    assert "boot.png: predicted Ankle boot" in one.stdout
    assert sorted(os.listdir(elsewhere / "one")) == [
        "boot_gradient_ankle-boot.npy", "boot_gradient_ankle-boot.png",
        "boot_gradient_ankle-boot_overlay.png"]
