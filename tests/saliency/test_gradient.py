"""minicnn.saliency.gradient: the vanilla gradient against torch autograd, Captum and finite
differences; the ReLU-rule variants against Captum; target handling."""
import numpy as np
import pytest

import minicnn
from minicnn import saliency
from minicnn.saliency import (deconvnet, gradient, guided_backprop, input_x_gradient,
                              probability_gradient, resolve_targets, smoothgrad)
from tests.helpers.compare import assert_relative
from tests.helpers.nets import small_net
from tests.helpers.torch_twin import captum, torch_input_gradient
from tests.saliency.conftest import TARGETS


@pytest.mark.parametrize("target", [None, 2, [0, 4, 1, 3], np.array([3, 3, 0, 1])])
def test_gradient_equals_torch_autograd(net_and_x, twin, target):
    model, x = net_and_x
    scores = model.forward(x)
    targets = resolve_targets(target, scores)
    want_scores, want_grad = torch_input_gradient(twin, x, targets)
    got = gradient(model, x, target)
    assert got.shape == x.shape and got.dtype == np.float64
    np.testing.assert_allclose(scores, want_scores, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, want_grad, rtol=1e-10, atol=1e-12)


def test_none_means_each_images_predicted_class(net_and_x):
    model, x = net_and_x
    pred = model.forward(x).argmax(1)
    np.testing.assert_array_equal(gradient(model, x, None), gradient(model, x, list(pred)))


def test_captum_saliency_abs_equals_abs_gradient(net_and_x, twin, captum_attr):
    model, x = net_and_x
    want = captum(captum_attr.Saliency, twin, x, target=TARGETS, abs=True)
    np.testing.assert_allclose(np.abs(gradient(model, x, TARGETS)), want,
                               rtol=1e-10, atol=1e-12)


def test_probability_gradient_equals_autograd_of_softmax(net_and_x, twin, torch):
    model, x = net_and_x
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    p = torch.softmax(twin(xt), dim=1)
    p[torch.arange(4), torch.tensor([0, 1, 2, 3])].sum().backward()
    np.testing.assert_allclose(probability_gradient(model, x, [0, 1, 2, 3]), xt.grad.numpy(),
                               rtol=1e-9, atol=1e-13)


def test_gradient_matches_finite_differences():
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


def test_softmax_is_stable_and_sums_to_one():
    scores = np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0]])
    p = saliency.softmax(scores)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    e = np.exp([-1.0, 0.0, -2.0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-15)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-15)


# ============================================================================ ReLU rules, x * grad

@pytest.mark.parametrize("ours, theirs", [(guided_backprop, "GuidedBackprop"),
                                          (deconvnet, "Deconvolution"),
                                          (input_x_gradient, "InputXGradient")])
def test_relu_rule_methods_equal_captum(net_and_x, twin, captum_attr, ours, theirs):
    model, x = net_and_x
    want = captum(getattr(captum_attr, theirs), twin, x, target=TARGETS)
    got = ours(model, x, TARGETS)
    assert got.dtype == np.float64
    assert_relative(got, want)


def _one_relu_net(conv_weight, out_weight):
    """x (1, 1, 1, 1) -> conv 1x1 -> ReLU -> Linear(1, 1): score = out_weight * relu(w x)."""
    model = minicnn.Sequential([minicnn.Conv2d(1, 1, 1), minicnn.ReLU(), minicnn.Flatten(),
                                minicnn.Linear(1, 1)]).astype(np.float64)
    model[0].weight, model[0].bias = np.full((1, 1, 1, 1), conv_weight), np.zeros(1)
    model[3].weight, model[3].bias = np.full((1, 1), out_weight), np.zeros(1)
    return model


def test_guided_and_deconvnet_differ_where_they_must():
    # forward input negative, incoming signal positive: only deconvnet passes it
    model, x = _one_relu_net(1.0, 2.0), np.full((1, 1, 1, 1), -1.0)
    assert gradient(model, x, 0).item() == 0.0
    assert guided_backprop(model, x, 0).item() == 0.0
    assert deconvnet(model, x, 0).item() == 2.0
    # forward input positive, incoming signal negative: only the gradient passes it
    model, x = _one_relu_net(1.0, -2.0), np.full((1, 1, 1, 1), 1.0)
    assert gradient(model, x, 0).item() == -2.0
    assert guided_backprop(model, x, 0).item() == 0.0
    assert deconvnet(model, x, 0).item() == 0.0


def test_relu_used_twice_and_relu_before_maxpool_match_captum(torch, captum_attr):
    """One nn.ReLU instance at two positions, each followed by pooling or a conv. from_torch
    must import both uses. Captum 0.9's hooks fire on each use of a shared module, so it is
    compared directly, and also with an equivalent net with separate ReLU instances."""
    nn = torch.nn
    torch.manual_seed(0)
    relu = nn.ReLU(inplace=False)
    layers = [nn.Conv2d(3, 5, 3, padding=1), relu, nn.MaxPool2d(2), nn.Conv2d(5, 6, 3), relu,
              nn.MaxPool2d(2, 1), nn.Flatten(), nn.Linear(6 * 2 * 2, 4)]
    shared = nn.Sequential(*layers).double().eval()
    separate = nn.Sequential(*[nn.ReLU() if m is relu else m for m in layers]).eval()
    model = minicnn.from_torch(shared)
    assert model.names == [str(i) for i in range(8)]     # both ReLUs imported
    x = np.random.default_rng(0).normal(size=(3, 3, 10, 10))
    targets = [1, 2, 3]
    for net in (shared, separate):
        np.testing.assert_allclose(model.forward(x), net(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-12)
        for ours, theirs in [(gradient, "InputXGradient"), (guided_backprop, "GuidedBackprop"),
                             (deconvnet, "Deconvolution")]:
            want = captum(getattr(captum_attr, theirs), net, x, target=targets)
            got = ours(model, x, targets) * (x if ours is gradient else 1)
            assert_relative(got, want)


# ============================================================================ targets

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
    with pytest.raises(ValueError, match=message):
        smoothgrad(model, x, target, n_samples=2)


@pytest.mark.parametrize("target", [True, 1.5, "Coat", [[0, 1]]])
def test_target_of_the_wrong_type(net_and_x, target):
    model, x = net_and_x
    with pytest.raises(TypeError, match="target must be an int, a sequence of 4 ints or None"):
        gradient(model, x, target)


def test_backprop_returns_scores_and_targets(net_and_x):
    model, x = net_and_x
    grad, scores, targets = saliency.backprop(model, x, 1)
    np.testing.assert_array_equal(targets, [1, 1, 1, 1])
    np.testing.assert_array_equal(scores, model.forward(x))


@pytest.mark.parametrize("method", [gradient, guided_backprop, deconvnet, input_x_gradient,
                                    probability_gradient])
@pytest.mark.parametrize("bad, error, message", [
    (lambda x: x[0], ValueError, r"x must be 4-D, shaped \(N, C, H, W\), got shape \(3, 23, 23\)"),
    (lambda x: x.astype(np.int64), TypeError, "x must have dtype float32 or float64, got int64"),
    (lambda x: x.tolist(), TypeError, r"x must be a numpy.ndarray shaped \(N, C, H, W\), got list"),
])
def test_every_gradient_method_checks_x_the_same_way(net_and_x, method, bad, error, message):
    model, x = net_and_x
    with pytest.raises(error, match=message):
        method(model, bad(x))


# ----------------------------------------------------------------------------- batch edges

HUGE = 2**70


@pytest.mark.parametrize("target, shown", [
    (HUGE, HUGE), (np.uint64(2**64 - 1), 2**64 - 1), (np.iinfo(np.int64).max, 2**63 - 1),
    ([0, HUGE, 1, 2], HUGE), (np.array([0, 0, 2**63, 1], np.uint64), 2**63),
])
def test_out_of_range_target_of_any_integer_size_names_the_range(net_and_x, target, shown):
    """Never an OverflowError, never a value wrapped around to a negative one."""
    model, x = net_and_x
    with pytest.raises(ValueError, match=rf"target {shown} is out of range: the model has 5 "
                                         rf"classes, valid targets are 0\.\.4"):
        gradient(model, x, target)
    with pytest.raises(ValueError, match=rf"target {shown} is out of range: "):
        smoothgrad(model, x, target, n_samples=2)    # checked before the model says K


def _results(model, x, name, **options):
    out = saliency.METHODS[name](model, x, None, **options)
    return out[0] if isinstance(out, tuple) else out


CHEAP = {"smoothgrad": {"n_samples": 2, "seed": 0, "batch_size": saliency.CHUNK_SIZE},
         "integrated_gradients": {"steps": 2, "batch_size": saliency.CHUNK_SIZE},
         "occlusion": {"window": 12, "stride": 11, "batch_size": saliency.CHUNK_SIZE}}


@pytest.mark.parametrize("name", list(saliency.METHODS))
def test_a_large_batch_runs_in_chunks_and_each_image_is_as_alone(net_and_x, monkeypatch, name):
    """2 * CHUNK_SIZE + 3 images: no forward pass ever sees more than CHUNK_SIZE images (the
    activations in memory do not grow with the batch), and each image's result is the one
    it gets on its own."""
    model, _ = net_and_x
    n = 2 * saliency.CHUNK_SIZE + 3
    x = np.random.default_rng(5).normal(size=(n, 3, 23, 23))
    sizes = []
    for pass_name in ("forward", "predict"):  # (occlusion runs forward passes with predict)
        run = getattr(type(model), pass_name)
        monkeypatch.setattr(type(model), pass_name,
                            lambda m, x, run=run: sizes.append(len(x)) or run(m, x))
    got = _results(model, x, name, **CHEAP.get(name, {}))
    assert len(got) == n and max(sizes) == saliency.CHUNK_SIZE, sizes
    if name != "smoothgrad":                      # (its noise is drawn for the whole batch)
        for i in (0, saliency.CHUNK_SIZE - 1, saliency.CHUNK_SIZE, n - 1):
            alone = _results(model, x[i:i + 1], name, **CHEAP.get(name, {}))[0]
            np.testing.assert_allclose(got[i], alone, rtol=1e-11, atol=1e-13, err_msg=str(i))
    sizes.clear()
    scores, targets, results = saliency.attribute(model, x, ["gradient", "grad_cam"])
    assert scores.shape == (n, 5) and max(sizes) == saliency.CHUNK_SIZE
    np.testing.assert_allclose(results["gradient"], gradient(model, x), rtol=1e-12)


@pytest.mark.parametrize("name", list(saliency.METHODS))
def test_a_batch_of_zero_images_gives_an_empty_result_of_the_right_shape(net_and_x, name):
    model, x = net_and_x
    one = _results(model, x[:1], name, **CHEAP.get(name, {}))
    empty = _results(model, x[:0], name, **CHEAP.get(name, {}))
    assert empty.shape == (0,) + one.shape[1:] and empty.dtype == one.dtype
    assert _results(model, x[:0], name, **CHEAP.get(name, {})).shape == empty.shape
    scores, targets, results = saliency.attribute(model, x[:0], [name], [],
                                                  {name: CHEAP.get(name, {})})
    assert scores.shape == (0, 5) and targets.shape == (0,)
    assert results[name].shape == empty.shape


def test_in_chunks_without_work_gives_the_scores_and_the_classes_to_explain(net_and_x):
    model, x = net_and_x
    scores, targets = saliency.in_chunks(model, x)
    np.testing.assert_array_equal(scores, model.forward(x))
    np.testing.assert_array_equal(targets, scores.argmax(1))
    np.testing.assert_array_equal(saliency.in_chunks(model, x, [4, 0, 1, 2])[1], [4, 0, 1, 2])


def test_row_batches_cover_every_row_once_in_order():
    batches = list(saliency.row_batches(7, 3))
    assert [b.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(saliency.row_batches(0, 3)) == []


def test_accumulate_per_image_adds_each_images_rows_to_its_total():
    values = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)     # (B, 2): 5 rows
    image_of_row = np.array([1, 0, 1, 1, 0])
    total = np.ones((3, 2))                                        # (N, 2), image 2 gets none
    saliency.accumulate_per_image(total, image_of_row, values)
    np.testing.assert_array_equal(total, [[1 + 2 + 8, 1 + 3 + 9],
                                          [1 + 0 + 4 + 6, 1 + 1 + 5 + 7], [1, 1]])
