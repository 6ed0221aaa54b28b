"""minicnn.experiments.localize: connected components, threshold and graph-cut masks, boxes."""
import sys

import numpy as np
import pytest

from minicnn.experiments.localize import (GRAPHCUT_INSTALL_HINT, graphcut_mask, label_components,
                              largest_component, localize, localize_images, mask_box,
                              threshold_mask)


def blob_map(shape=(32, 40), box=(10, 6, 19, 14), rng=None):
    """A map that is 1 + noise/10 on box (x0, y0, x1, y1) and noise/10 elsewhere."""
    rng = rng or np.random.default_rng(0)
    m = rng.random(shape) * 0.1
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] += 1
    return m


def test_diagonal_neighbours_join_only_with_8_connectivity():
    mask = np.array([[1, 0, 0],
                     [0, 1, 0],
                     [0, 0, 1]], bool)
    np.testing.assert_array_equal(label_components(mask, 4), [[1, 0, 0], [0, 2, 0], [0, 0, 3]])
    np.testing.assert_array_equal(label_components(mask, 8), mask.astype(int))


def test_u_shape_merges_labels_met_late():
    # the two arms get different provisional labels and only meet on the bottom row
    mask = np.array([[1, 0, 1],
                     [1, 0, 1],
                     [1, 1, 1]], bool)
    assert label_components(mask, 4).max() == 1


@pytest.mark.parametrize("connectivity", [4, 8])
def test_compiled_and_python_labelling_agree_and_match_scipy(connectivity):
    ndimage = pytest.importorskip("scipy.ndimage")
    mask = np.random.default_rng(connectivity).random((37, 29)) > 0.55
    fast = label_components(mask, connectivity)
    np.testing.assert_array_equal(fast, label_components(mask, connectivity, fast=False))
    structure = np.ones((3, 3)) if connectivity == 8 else None
    want, count = ndimage.label(mask, structure=structure)
    assert fast.max() == count
    # same partition: the pairs (ours, scipy's) are a bijection
    assert len(set(zip(fast.ravel(), want.ravel()))) == count + 1


def test_largest_component_and_its_box():
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:3] = True          # 4 pixels
    mask[5:9, 4:10] = True         # 24 pixels
    mask[0, 11] = True
    big = largest_component(mask)
    assert big.sum() == 24 and mask_box(big) == (4, 5, 10, 9)
    assert mask_box(np.zeros((3, 3), bool)) is None
    assert not largest_component(np.zeros((4, 4), bool)).any()


def test_threshold_quantile_and_fraction():
    m = np.arange(100, dtype=float).reshape(10, 10)
    assert threshold_mask(m, quantile=0.9).sum() == 10              # values >= 89.1
    assert threshold_mask(m, fraction=0.5).sum() == 50              # values >= 49.5
    assert not threshold_mask(np.zeros((5, 5))).any()               # nothing salient
    with pytest.raises(ValueError, match="quantile or fraction, not both"):
        threshold_mask(m, quantile=0.5, fraction=0.5)
    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\), got 1.5"):
        threshold_mask(m, quantile=1.5)


def test_threshold_localisation_finds_a_known_blob_exactly():
    box = (10, 6, 19, 14)                                   # 9 x 8 = 72 of 1280 pixels
    m = blob_map(box=box)
    m[0, 0] = 1.05                                          # an isolated bright pixel
    for options in ({"fraction": 0.5}, {"quantile": 1 - 80 / m.size}):
        loc = localize(None, m, "threshold", **options)  # the blob and the pixel pass; the
        assert loc.box == box                            # largest component drops the pixel
        assert loc.mask.sum() == 72


def coloured_square(rng):
    """64x64 uint8 image: a green 24x18 rectangle on a red background, with noise."""
    img = np.empty((64, 64, 3))
    img[:] = (0.8, 0.3, 0.2)
    img[20:44, 12:30] = (0.1, 0.7, 0.3)
    img = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)
    return (img * 255).astype(np.uint8)


def test_graphcut_grows_a_small_seed_to_the_whole_coloured_object():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    image = coloured_square(rng)
    yy, xx = np.mgrid[0:64, 0:64]
    # saliency: a small bump inside the object; its top 5% covers only part of the object
    m = np.exp(-((yy - 32) ** 2 + (xx - 21) ** 2) / (2 * 3.0 ** 2)) + 0.05 * rng.random((64, 64))
    assert threshold_mask(m, quantile=0.95).sum() < 0.5 * 24 * 18
    loc = localize(image, m, "graphcut")
    assert loc.box == (12, 20, 30, 44)
    assert loc.mask.sum() == 24 * 18
    # reproducible (OpenCV's k-means is seeded)
    np.testing.assert_array_equal(graphcut_mask(image, m), graphcut_mask(image, m))


def test_graphcut_without_opencv_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)   # makes `import cv2` fail
    with pytest.raises(ImportError, match=r'pip install "minicnn\[localize\]"'):
        graphcut_mask(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)))
    assert "opencv-python-headless" in GRAPHCUT_INSTALL_HINT


def test_bad_inputs_name_expected_and_actual():
    with pytest.raises(ValueError, match="unknown localisation method 'grab'; valid choices "
                                         "are threshold, graphcut"):
        localize(None, np.zeros((4, 4)), "grab")
    with pytest.raises(ValueError, match=r"saliency map shaped \(H, W\), got shape \(1, 4, 4\)"):
        localize(None, np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="connectivity must be 4 or 8, got 6"):
        label_components(np.zeros((3, 3), bool), 6)
    pytest.importorskip("cv2")
    with pytest.raises(ValueError, match=r"image \(H, W\) = \(8, 8\) does not match"):
        graphcut_mask(np.zeros((8, 8, 3), np.uint8), np.zeros((9, 9)))


def test_localize_images_runs_the_pipeline_per_image():
    import minicnn
    from minicnn import saliency
    from minicnn.io.images import to_input
    rng = np.random.default_rng(0)
    model = minicnn.Sequential([minicnn.Conv2d(3, 4, 3, padding=1, rng=rng), minicnn.ReLU(),
                                minicnn.MaxPool2d(4), minicnn.Flatten(),
                                minicnn.Linear(4 * 4 * 4, 3, rng=rng)])
    images = rng.integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    maps, locs = localize_images(model, images, target=[0, 1, 2, 0, 1], batch_size=2,
                                 quantile=0.8)
    want = saliency.saliency_map(saliency.gradient(model, to_input(images), [0, 1, 2, 0, 1]))
    np.testing.assert_allclose(maps, want, rtol=1e-6)
    for m, loc in zip(want, locs):
        assert loc.box == localize(None, m, quantile=0.8).box
