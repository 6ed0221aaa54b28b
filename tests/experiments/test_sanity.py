"""minicnn.experiments.sanity: cascading randomisation, Spearman rank correlation and SSIM."""
import numpy as np
import pytest

import minicnn
from minicnn import saliency
from minicnn.experiments import sanity


def small_net(seed=0):
    rng = np.random.default_rng(seed)
    model = minicnn.Sequential([
        ("features.0", minicnn.Conv2d(3, 5, 3, padding=1)), ("features.1", minicnn.ReLU()),
        ("features.2", minicnn.MaxPool2d(3)), ("classifier.0", minicnn.Flatten()),
        ("classifier.1", minicnn.Linear(5 * 5 * 5, 12)), ("classifier.2", minicnn.ReLU()),
        ("classifier.3", minicnn.Linear(12, 4))])
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.5, size=value.shape))
    return model


def test_each_step_randomises_exactly_the_layers_it_names_and_spares_the_model():
    model = small_net()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    steps = list(sanity.cascading_randomization(model, seed=3))
    assert [name for name, _ in steps] == ["original", "classifier.3", "classifier.1",
                                           "features.0"]
    for k, (name, damaged) in enumerate(steps):
        randomised = {n for n, _ in steps[1:k + 1]}
        for key, value in damaged.state_dict().items():
            layer = key.rsplit(".", 1)[0]
            if layer in randomised:
                assert not np.isclose(value, before[key]).any(), (name, key)
                fan_in = before[key.rsplit(".", 1)[0] + ".weight"][0].size
                assert np.abs(value).max() <= 1 / np.sqrt(fan_in)     # PyTorch's init bound
            else:
                np.testing.assert_array_equal(value, before[key])
    for key, value in model.state_dict().items():                    # untouched
        np.testing.assert_array_equal(value, before[key])
    again = dict(sanity.cascading_randomization(model, seed=3))
    np.testing.assert_array_equal(again["features.0"]["features.0"].weight,
                                  steps[-1][1]["features.0"].weight)


def test_spearman_known_values_and_scipy():
    a = np.arange(20.0).reshape(4, 5)
    assert sanity.spearman(a, a) == pytest.approx(1.0)
    assert sanity.spearman(a, -a) == pytest.approx(-1.0)
    assert sanity.spearman(a, np.exp(a)) == pytest.approx(1.0)       # monotone: ranks equal
    np.testing.assert_array_equal(sanity.rank([3, 1, 3, 2]), [3.5, 1, 3.5, 2])
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 50), rng.normal(size=50)                # with ties
    assert sanity.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_ssim_identical_is_one_and_matches_the_formula_window_by_window():
    rng = np.random.default_rng(1)
    a, b = rng.random((16, 18)), rng.random((16, 18))
    assert sanity.ssim(a, a) == pytest.approx(1.0)
    assert sanity.ssim(a, 3 * a + 2) == pytest.approx(1.0)           # scaled to [0, 1] first
    assert sanity.ssim(a, 1 - a) < 0
    # brute force: every 11x11 window, Gaussian weights, the formula of Wang et al. (2004)
    ua = (a - a.min()) / (a.max() - a.min())
    ub = (b - b.min()) / (b.max() - b.min())
    d = np.arange(11) - 5
    w = np.outer(np.exp(-d * d / 4.5), np.exp(-d * d / 4.5))
    w /= w.sum()
    values = []
    for i in range(16 - 10):
        for j in range(18 - 10):
            pa, pb = ua[i:i + 11, j:j + 11], ub[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            values.append((2 * ma * mb + 1e-4) * (2 * cov + 9e-4)
                          / ((ma ** 2 + mb ** 2 + 1e-4) * (va + vb + 9e-4)))
    assert sanity.ssim(a, b) == pytest.approx(np.mean(values), rel=1e-10)


def test_sanity_checks_end_to_end():
    model = small_net()
    x = np.random.default_rng(2).normal(size=(2, 3, 15, 15))
    methods = {"gradient": saliency.gradient, "guided_backprop": saliency.guided_backprop}
    result = sanity.sanity_checks(model, x, None, methods, seed=0)
    assert result["steps"][0] == "original" and len(result["steps"]) == 4
    for method in methods:
        assert result["maps"][method].shape == (4, 2, 15, 15)
        np.testing.assert_allclose(result["spearman"][method][0], 1.0)
        np.testing.assert_allclose(result["ssim"][method][0], 1.0)
        assert (result["spearman"][method][-1] < 0.9).all()   # fully random: a different map


def test_signed_comparison_sees_a_sign_flip_that_the_absolute_one_does_not():
    model = small_net()
    x = np.random.default_rng(4).normal(size=(1, 3, 15, 15))

    def flipped(m, x, t):        # a "method" whose sign flips once the last layer is random
        same = np.array_equal(m["classifier.3"].weight, model["classifier.3"].weight)
        return saliency.gradient(model, x, t) * (1 if same else -1)

    methods = {"flip": flipped}
    signed = sanity.sanity_checks(model, x, 0, methods, signed=True)
    absolute = sanity.sanity_checks(model, x, 0, methods)
    assert signed["spearman"]["flip"][1, 0] == pytest.approx(-1.0)
    assert absolute["spearman"]["flip"][1, 0] == pytest.approx(1.0)
