"""minicnn.io.datasets: the IDX reader and the cluttered-image generator."""
import gzip
import struct

import numpy as np
import pytest

from minicnn.io import datasets
from minicnn.io.datasets import DatasetNotFoundError, load_fashion_mnist, make_cluttered


def _have_fashion_mnist():
    try:
        load_fashion_mnist("test")
        return True
    except DatasetNotFoundError:
        return False


needs_data = pytest.mark.skipif(not _have_fashion_mnist(), reason=(
    "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"))


def _write_idx(path, array):
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_split(folder, n=12, seed=0):
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):                       # a bright rectangle, so the mask is non-empty
        y, x = rng.integers(2, 10, size=2)
        images[i, y:y + 14, x:x + 12] = 200 + i
    labels = np.arange(n) % 10
    for split, (img_name, lab_name) in datasets._FILES.items():
        _write_idx(folder / img_name, images)
        _write_idx(folder / lab_name, labels)
    return images, labels


def test_idx_reader_round_trip(tmp_path):
    images, labels = _fake_split(tmp_path)
    got_images, got_labels = load_fashion_mnist("train", tmp_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_truncated_idx_file_is_an_error(tmp_path):
    _fake_split(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist("test", tmp_path)


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"apt-get install dataset-fashion-mnist") as e:
        load_fashion_mnist("train", tmp_path / "nowhere")
    assert "nowhere" in str(e.value)


def test_environment_variable_sets_the_folder(tmp_path, monkeypatch):
    _fake_split(tmp_path)
    monkeypatch.setenv("MINICNN_FASHION_MNIST", str(tmp_path))
    assert load_fashion_mnist("test")[0].shape == (12, 28, 28)


def test_unknown_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_fashion_mnist("valid")


def test_generator_on_fake_files_boxes_and_masks(tmp_path):
    _fake_split(tmp_path)
    b = make_cluttered(range(30), "train", seed=1, data_dir=tmp_path)
    assert b.images.dtype == np.uint8 and b.images.shape == (30, 64, 64, 3)
    np.testing.assert_array_equal(b.labels, np.arange(30) % 12 % 10)
    for mask, (x0, y0, x1, y1) in zip(b.masks, b.boxes):
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert mask.any() and not (mask & ~inside).any()        # box contains the mask
        # and is tight: every edge row and column of the box touches the mask
        assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()
        assert mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()


@needs_data
def test_same_seed_same_bytes_and_order_independence():
    a = make_cluttered(range(20), "test", seed=3)
    b = make_cluttered(range(20), "test", seed=3)
    c = make_cluttered([17, 4], "test", seed=3)
    d = make_cluttered(range(20), "test", seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(c.images, a.images[[17, 4]])
    np.testing.assert_array_equal(c.boxes, a.boxes[[17, 4]])
    assert (a.images != d.images).mean() > 0.5


@needs_data
def test_test_images_come_from_the_test_split():
    labels = load_fashion_mnist("test")[1]
    b = make_cluttered(range(50), "test", seed=0)
    np.testing.assert_array_equal(b.labels, labels[:50])
    train_b = make_cluttered(range(50), "train", seed=0)
    np.testing.assert_array_equal(train_b.labels, load_fashion_mnist("train")[1][:50])


@needs_data
def test_item_sizes_and_clutter_statistics():
    b = make_cluttered(range(200), "test", seed=0)
    w = b.boxes[:, 2] - b.boxes[:, 0]
    h = b.boxes[:, 3] - b.boxes[:, 1]
    assert max(w.max(), h.max()) <= 40 and np.maximum(w, h).min() >= 10
    # the item covers a minority of the canvas: the background is really there
    assert b.masks.mean() < 0.25
    # the background is not flat: pixels outside the mask vary a lot
    outside = b.images[~b.masks]
    assert outside.std() > 30
