"""minicnn.experiments.metrics on hand-built cases with known answers."""
import numpy as np
import pytest

import minicnn
from minicnn.experiments import metrics
from minicnn.saliency import blur, softmax


def test_pointing_game_inside_outside_ties_and_tolerance():
    box = (4, 2, 8, 6)                                  # x in 4..7, y in 2..5
    m = np.zeros((10, 10))
    m[3, 5] = 1
    assert metrics.pointing_hit(m, box)
    m = np.zeros((10, 10))
    m[3, 8] = 1                                         # x = 8 is just right of the box
    assert not metrics.pointing_hit(m, box)
    assert metrics.pointing_hit(m, box, tolerance=1)
    m = np.zeros((10, 10))
    m[0, 0] = m[3, 5] = 1                               # tie: the first in row-major order wins
    assert not metrics.pointing_hit(m, box)
    assert not metrics.pointing_hit(np.ones((10, 10)), box)   # constant map: top-left pixel


def test_box_iou_known_values():
    assert metrics.box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert metrics.box_iou((0, 0, 4, 4), (0, 0, 4, 4)) == 1.0
    assert metrics.box_iou((0, 0, 4, 4), (0, 0, 4, 2)) == 0.5
    assert metrics.box_iou((0, 0, 2, 2), (2, 0, 4, 2)) == 0.0        # touching, exclusive ends
    assert metrics.box_iou(None, (0, 0, 2, 2)) == 0.0
    assert metrics.iou_rate([0.5, 0.49, 0.9, 0.0]) == 0.5
    with pytest.raises(ValueError, match=r"box a must be \(x0, y0, x1, y1\) with x0 <= x1"):
        metrics.box_iou((3, 0, 1, 2), (0, 0, 1, 1))


def test_mask_precision_recall():
    true = np.zeros((4, 4), bool)
    true[:2, :2] = True                                  # 4 pixels
    pred = np.zeros((4, 4), bool)
    pred[:2, :] = True                                   # 8 pixels, 4 of them right
    assert metrics.mask_precision_recall(pred, true) == (0.5, 1.0)
    assert metrics.mask_precision_recall(np.zeros((4, 4), bool), true) == (0.0, 0.0)


def test_saliency_order_descending_with_stable_ties():
    m = np.array([[0.5, 2.0], [0.5, 1.0]])
    np.testing.assert_array_equal(metrics.saliency_order(m), [[2, 0], [3, 1]])


def test_curve_auc_trapezoid():
    f = np.linspace(0, 1, 5)
    assert metrics.curve_auc(f, np.ones(5)) == pytest.approx(1.0)
    assert metrics.curve_auc(f, f) == pytest.approx(0.5)
    np.testing.assert_allclose(metrics.curve_auc(f, np.stack([f, 1 - f, f ** 2])),
                               [0.5, 0.5, 0.34375])


def linear_model(H=8, W=8, seed=0):
    """Scores (class 0, class 1) = (sum_p w_p x_p, 1.5): w > 0 on 16 known pixels, else 0.

    Returns the model, an image that is bright (1.5) on those pixels and dim elsewhere (so
    blurring it lowers the score), and the perfect map (the weights)."""
    rng = np.random.default_rng(seed)
    w = np.zeros((3, H, W))
    pixels = rng.choice(H * W, 16, replace=False)
    w[:, pixels // W, pixels % W] = rng.uniform(0.02, 0.04, size=(3, 16))
    x = rng.uniform(0, 0.3, size=(1, 3, H, W))
    x[:, :, pixels // W, pixels % W] = 1.5
    lin = minicnn.Linear(3 * H * W, 2)
    lin.weight = np.stack([w.ravel(), np.zeros(3 * H * W)])       # (2, C*H*W)
    lin.bias = np.array([0.0, 1.5])                                # p_0 = 0.18 at x = 0
    model = minicnn.Sequential([minicnn.Flatten(), lin])
    return model, x, w.sum(axis=0)


def test_perfect_map_beats_random_at_deletion_and_insertion():
    model, x, perfect = linear_model()
    random = metrics.random_map(perfect.shape, seed=1)[None]
    maps = {"perfect": perfect[None], "random": random}
    auc = {}
    for name, m in maps.items():
        f, d = metrics.deletion_curve(model, x, m, target=0, step=4)
        _, i = metrics.insertion_curve(model, x, m, target=0, step=4, sigma=2.0)
        assert len(f) == 17 and f[0] == 0 and f[-1] == 1
        auc[name] = metrics.curve_auc(f, d)[0], metrics.curve_auc(f, i)[0]
        # deletion ends at the baseline image (all zeros: scores (0, 1.5))
        assert d[0, -1] == pytest.approx(softmax(np.array([[0.0, 1.5]]))[0, 0])
        # insertion starts at the blurred image and ends at the original
        start = softmax(model.forward(blur(x, 2.0)))[0, 0]
        assert i[0, 0] == pytest.approx(start) and i[0, -1] == pytest.approx(
            softmax(model.forward(x))[0, 0])
    assert auc["perfect"][0] < auc["random"][0] - 0.1
    assert auc["perfect"][1] > auc["random"][1] + 0.05
    # after deleting the 16 weighted pixels (4 steps of 4) the score is exactly 0
    f, d = metrics.deletion_curve(model, x, perfect[None], target=0, step=4)
    np.testing.assert_allclose(d[0, 4:], d[0, -1])


def test_curves_do_not_depend_on_batch_size():
    model, x, perfect = linear_model()
    x = np.concatenate([x, 0.5 * x])
    maps = np.stack([perfect, perfect.T])
    a = metrics.deletion_curve(model, x, maps, target=[0, 1], step=7, batch_size=3)[1]
    b = metrics.deletion_curve(model, x, maps, target=[0, 1], step=7, batch_size=100)[1]
    np.testing.assert_allclose(a, b, rtol=1e-12)   # BLAS may sum in another order
    with pytest.raises(ValueError, match="target 2 is out of range"):
        metrics.deletion_curve(model, x, maps, target=[0, 2], step=7)


def test_baseline_maps():
    g = metrics.center_gaussian_map((9, 9))
    assert np.unravel_index(g.argmax(), g.shape) == (4, 4) and g.max() == 1
    img = np.zeros((6, 8, 3), np.uint8)
    img[:, 4:] = 200                                     # a vertical edge between x = 3 and 4
    s = metrics.sobel_map(img)
    assert (s[:, [3, 4]] == 4 * 200).all() and (s[:, [0, 1, 2, 5, 6, 7]] == 0).all()
    r = metrics.random_map((5, 5), seed=3)
    np.testing.assert_array_equal(r, metrics.random_map((5, 5), seed=3))
    assert 0 <= r.min() and r.max() < 1


@pytest.mark.parametrize("detector", [metrics.spectral_residual_map, metrics.fine_grained_map])
def test_opencv_static_saliency_finds_what_stands_out(detector):
    pytest.importorskip("cv2").saliency               # the contrib build
    img = np.full((64, 64, 3), 90, np.uint8)
    img[40:50, 8:18] = (250, 240, 30)                   # one bright patch on a flat field
    m = detector(img)
    assert m.shape == (64, 64) and m.dtype == np.float64 and np.isfinite(m).all()
    iy, ix = np.unravel_index(np.argmax(m), m.shape)
    assert 36 <= iy < 54 and 4 <= ix < 22               # at the patch (give or take its rim)
    with pytest.raises(ValueError, match="expected a uint8 RGB image"):
        detector(img.astype(np.float32))


def test_opencv_saliency_without_opencv_names_the_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match="contrib build"):
        metrics.spectral_residual_map(np.zeros((8, 8, 3), np.uint8))
