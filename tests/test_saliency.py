"""minicnn.saliency: the vanilla gradient against torch autograd and Captum, maps on hand-built
arrays, and target handling."""
import numpy as np
import pytest

import minicnn
from minicnn import saliency
from minicnn.saliency import (colored_gradient, gradient, grayscale_gradient,
                              probability_gradient, resolve_targets, saliency_map)

torch = pytest.importorskip("torch")
from torch_twin import torch_input_gradient, torch_twin  # noqa: E402


def small_net(seed=0, dtype=np.float64):
    """A small conv net with every layer kind the shipped model has, random weights."""
    rng = np.random.default_rng(seed)
    layers = [minicnn.Conv2d(3, 6, 3, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(2),
              minicnn.Conv2d(6, 8, 3, stride=2, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(2),
              minicnn.Flatten(), minicnn.Linear(8 * 3 * 3, 16), minicnn.ReLU(),
              minicnn.Dropout(0.3), minicnn.Linear(16, 5)]
    model = minicnn.Sequential(layers)
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.5, size=value.shape).astype(dtype))
    return model


@pytest.fixture
def net_and_x():
    model = small_net()
    x = np.random.default_rng(1).normal(size=(4, 3, 23, 23))
    return model, x


@pytest.mark.parametrize("target", [None, 2, [0, 4, 1, 3], np.array([3, 3, 0, 1])])
def test_gradient_equals_torch_autograd(net_and_x, target):
    model, x = net_and_x
    scores = model.forward(x)
    targets = resolve_targets(target, scores)
    want_scores, want_grad = torch_input_gradient(torch_twin(model), x, targets)
    got = gradient(model, x, target)
    assert got.shape == x.shape and got.dtype == np.float64
    np.testing.assert_allclose(scores, want_scores, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, want_grad, rtol=1e-10, atol=1e-12)


def test_none_means_each_images_predicted_class(net_and_x):
    model, x = net_and_x
    pred = model.forward(x).argmax(1)
    np.testing.assert_array_equal(gradient(model, x, None), gradient(model, x, list(pred)))


def test_captum_saliency_abs_equals_abs_gradient(net_and_x):
    captum_attr = pytest.importorskip("captum.attr")
    model, x = net_and_x
    net = torch_twin(model)
    targets = [1, 0, 4, 2]
    want = captum_attr.Saliency(net).attribute(torch.from_numpy(x), target=targets, abs=True)
    np.testing.assert_allclose(np.abs(gradient(model, x, targets)), want.numpy(),
                               rtol=1e-10, atol=1e-12)


def test_probability_gradient_equals_autograd_of_softmax(net_and_x):
    model, x = net_and_x
    net = torch_twin(model)
    xt = torch.from_numpy(x).requires_grad_(True)
    p = torch.softmax(net(xt), dim=1)
    p[torch.arange(4), torch.tensor([0, 1, 2, 3])].sum().backward()
    np.testing.assert_allclose(probability_gradient(model, x, [0, 1, 2, 3]), xt.grad.numpy(),
                               rtol=1e-9, atol=1e-13)


def test_gradient_matches_finite_differences_without_torch():
    model = small_net(seed=3)
    x = np.random.default_rng(4).normal(size=(1, 3, 23, 23))
    g = gradient(model, x, 2)
    rng = np.random.default_rng(5)
    h = 1e-6
    for _ in range(12):
        idx = tuple(rng.integers(0, s) for s in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (model.forward(xp)[0, 2] - model.forward(xm)[0, 2]) / (2 * h)
        assert abs(fd - g[idx]) < 1e-6 * max(1.0, abs(g[idx]))


def test_saliency_map_is_max_abs_over_channels():
    grad = np.zeros((2, 3, 2, 2))
    grad[0, :, 0, 0] = [0.1, -0.7, 0.3]      # the negative channel wins: |-0.7|
    grad[0, :, 1, 1] = [0.2, 0.2, 0.2]
    grad[1, 2, 0, 1] = -5.0
    m = saliency_map(grad)
    assert m.shape == (2, 2, 2)
    np.testing.assert_array_equal(m[0], [[0.7, 0.0], [0.0, 0.2]])
    np.testing.assert_array_equal(m[1], [[0.0, 5.0], [0.0, 0.0]])


def test_colored_gradient_min_max_per_image():
    grad = np.zeros((2, 3, 1, 2))
    grad[0, 0, 0, 0], grad[0, 1, 0, 1] = -2.0, 2.0    # zero maps to 0.5
    grad[1, 2, 0, 1] = 10.0                           # min 0 -> 0, max 10 -> 1
    c = colored_gradient(grad)
    assert c.shape == (2, 1, 2, 3)
    assert c[0, 0, 0, 0] == 0.0 and c[0, 0, 1, 1] == 1.0 and c[0, 0, 0, 2] == 0.5
    assert c[1, 0, 1, 2] == 1.0 and c[1].min() == 0.0
    assert np.all(colored_gradient(np.ones((1, 3, 2, 2))) == 0.0)   # flat: no division by 0


def test_grayscale_sums_abs_and_clips_at_percentile():
    grad = np.zeros((1, 3, 1, 100))
    grad[0, 0, 0, :] = np.arange(100)
    grad[0, 1, 0, :] = -np.arange(100)         # |.| summed: 2 * arange
    g = grayscale_gradient(grad, percentile=50)
    assert g.shape == (1, 1, 100)
    np.testing.assert_allclose(g[0, 0, :50], np.arange(50) / 49.5)
    assert np.all(g[0, 0, 50:] == 1.0)


@pytest.mark.parametrize("target, message", [
    (5, r"target 5 is out of range: the model has 5 classes, valid targets are 0\.\.4"),
    (-1, r"target -1 is out of range"),
    ([0, 1], r"got 2 targets for a batch of 4 images"),
    ([0, 1, 9, 2], r"target 9 is out of range"),
])
def test_bad_targets_name_the_valid_range(net_and_x, target, message):
    model, x = net_and_x
    with pytest.raises(ValueError, match=message):
        gradient(model, x, target)
    # SmoothGrad skips the clean forward pass for a given target; its first batch checks it
    from minicnn.saliency import smoothgrad
    with pytest.raises(ValueError, match=message):
        smoothgrad(model, x, target, n_samples=2)


@pytest.mark.parametrize("target", [True, 1.5, "Coat", [[0, 1]]])
def test_target_of_the_wrong_type(net_and_x, target):
    model, x = net_and_x
    with pytest.raises(TypeError, match="target must be an int, a sequence of 4 ints or None"):
        gradient(model, x, target)


def test_maps_reject_wrong_rank():
    with pytest.raises(ValueError, match=r"expected a gradient shaped \(N, C, H, W\), got shape \(3, 4\)"):
        saliency_map(np.zeros((3, 4)))


def test_backprop_returns_scores_and_targets(net_and_x):
    model, x = net_and_x
    grad, scores, targets = saliency.backprop(model, x, 1)
    np.testing.assert_array_equal(targets, [1, 1, 1, 1])
    np.testing.assert_array_equal(scores, model.forward(x))
