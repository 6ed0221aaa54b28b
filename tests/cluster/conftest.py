"""One real LocalCluster (2 worker processes x 1 thread, loopback only) for the cluster
tests, a small random model saved to a file, and folders of small PNG images. The tests
that need the cluster are skipped without dask.distributed and zarr (the ``dask`` extra);
the ones that check what happens without them still run."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn.io.images import Preprocess

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["T-shirt/top", "Trouser", "Pullover"]
# for worker processes and subprocesses: this checkout first
PYTHONPATH = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


@pytest.fixture(scope="session")
def dask_extra():
    """Skip the test without dask.distributed and zarr."""
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")


@pytest.fixture(scope="session")
def cluster_client(dask_extra):
    """A distributed.Client of a 2-worker LocalCluster started by minicnn.cluster.connect.
    The workers are subprocesses: PYTHONPATH points them at this checkout while they start,
    and only then (left set, it would reach every later test's subprocesses: a pip install
    in tests/test_install.py then found this checkout and installed nothing)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PYTHONPATH", PYTHONPATH)
    from minicnn.cluster.client import connect
    try:
        with connect(workers=2) as client:
            client.wait_for_workers(2, timeout=60)
            patch.undo()
            yield client
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def address(cluster_client):
    return cluster_client.scheduler.address


def small_model(seed=0):
    """(N, 3, 32, 32) -> (N, 3): two conv blocks (so Grad-CAM is coarse) and a linear head."""
    rng = np.random.default_rng(seed)
    model = minicnn.Sequential([
        ("features.0", minicnn.Conv2d(3, 4, 3, padding=1, rng=rng)),
        ("features.1", minicnn.ReLU()), ("features.2", minicnn.MaxPool2d(2)),
        ("features.3", minicnn.Conv2d(4, 6, 3, padding=1, rng=rng)),
        ("features.4", minicnn.ReLU()), ("features.5", minicnn.MaxPool2d(4)),
        ("classifier.0", minicnn.Flatten()), ("classifier.1", minicnn.Linear(96, 3, rng=rng))])
    return model


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    meta = {"class_names": CLASSES,
            "preprocess": Preprocess(resize=32, crop=32).to_meta()}
    return minicnn.save(small_model(), tmp_path_factory.mktemp("model") / "m.npz", meta=meta)


@pytest.fixture(scope="session")
def other_model_path(tmp_path_factory):
    meta = {"class_names": CLASSES,
            "preprocess": Preprocess(resize=32, crop=32).to_meta()}
    return minicnn.save(small_model(seed=1), tmp_path_factory.mktemp("other") / "m.npz",
                        meta=meta)


def write_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """n random PNG/JPEG images of various sizes, some in a subfolder -> their relative
    names in sorted order."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        name = f"sub/img{i:03d}.jpg" if i % 5 == 4 else f"img{i:03d}.png"
        h, w = int(rng.integers(32, 60)), int(rng.integers(32, 60))
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        names.append(name)
    return sorted(names)


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """A folder of 40 images -> (folder, names)."""
    folder = tmp_path_factory.mktemp("images")
    return folder, write_images(folder, 40)
