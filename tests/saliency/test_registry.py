"""minicnn.saliency's registry and ``attribute``: what the registry says about each method is
true, the shared passes equal each method's own result, every method keeps float32, and on
the shipped model every method agrees with Captum."""
import inspect

import numpy as np
import pytest

import minicnn
from minicnn import saliency
from minicnn.saliency import (METHODS, deconvnet, default_cam_layer, grad_cam, guided_backprop,
                              guided_grad_cam, integrated_gradients, occlusion)
from tests.helpers.compare import assert_relative
from tests.helpers.nets import small_net
from tests.helpers.torch_twin import captum, torch_twin
from tests.saliency.conftest import TARGETS

OPTIONS = {"smoothgrad": {"noise": np.full((2, 1, 3, 23, 23), 0.1)},
           "integrated_gradients": {"steps": 4}, "occlusion": {"window": 8, "stride": 8}}


def test_registry_has_every_method_in_order():
    assert list(METHODS) == ["gradient", "guided_backprop", "deconvnet", "input_x_gradient",
                             "smoothgrad", "integrated_gradients", "grad_cam", "guided_grad_cam",
                             "occlusion", "lrp", "deeplift"]
    assert saliency.get_method("occlusion").function is occlusion
    assert [m for m in METHODS if METHODS[m].slow] == ["smoothgrad", "integrated_gradients",
                                                       "occlusion"]
    assert METHODS["occlusion"].cost((64, 64)) == pytest.approx((225 + 1) / 3)


def test_what_the_registry_says_is_true(net_and_x):
    model, x = net_and_x
    for name, method in METHODS.items():
        params = inspect.signature(method.function).parameters
        assert list(params)[:3] == ["model", "x", "target"], name
        assert set(method.options) <= set(params), (name, set(method.options) - set(params))
        assert set(params) - {"model", "x", "target"} <= set(method.options), name
        result = method(model, x, TARGETS, **OPTIONS.get(name, {}))
        assert result.ndim == (3 if method.returns == "coarse" else 4), name
        if method.returns == "attribution":
            assert result.shape == x.shape, name
        assert method.summary, name


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown method 'lime': choose one of gradient, "
                                         "guided_backprop, deconvnet, input_x_gradient, "
                                         "smoothgrad, integrated_gradients, grad_cam, "
                                         "guided_grad_cam, occlusion, lrp, deeplift"):
        saliency.get_method("lime")


def test_shared_passes_equal_the_methods_own_outputs(net_and_x):
    model, x = net_and_x
    names = list(METHODS)
    options = {**OPTIONS, "grad_cam": {"layer": "1"}}
    scores, targets, results = saliency.attribute(model, x, names, TARGETS, options)
    np.testing.assert_array_equal(scores, model.forward(x))
    np.testing.assert_array_equal(targets, TARGETS)
    assert list(results) == names
    for name in names:
        want = METHODS[name](model, x, TARGETS, **options.get(name, {}))
        np.testing.assert_allclose(results[name], want, rtol=1e-12, atol=1e-14, err_msg=name)
    _, predicted, results = saliency.attribute(model, x, ["gradient"])   # None: predicted
    np.testing.assert_array_equal(predicted, model.forward(x).argmax(1))
    np.testing.assert_array_equal(results["gradient"], saliency.gradient(model, x))


def test_attribute_runs_one_forward_pass_for_the_one_pass_methods(net_and_x, monkeypatch):
    model, x = net_and_x
    calls = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda m, x: calls.append(len(x)) or forward(m, x))
    saliency.attribute(model, x, ["gradient", "guided_backprop", "deconvnet",
                                  "input_x_gradient", "grad_cam", "guided_grad_cam"])
    assert calls == [4]


def test_float32_in_float32_out(net_and_x):
    model, x = net_and_x
    model32, x32 = small_net(dtype=np.float32), x.astype(np.float32)
    for name, fn in METHODS.items():
        got = fn(model32, x32, TARGETS, **OPTIONS.get(name, {}))
        assert got.dtype == np.float32, name
        want = fn(model, x, TARGETS, **OPTIONS.get(name, {}))
        assert_relative(got.astype(np.float64), want, rtol=1e-4)


@pytest.fixture(scope="module")
def shipped():
    """The shipped model in float64 and an image, or a skip until weights/ has it."""
    from minicnn.io.weights import default_weights_path
    if not default_weights_path().is_file():
        pytest.skip(f"{default_weights_path()} not committed yet")
    return minicnn.load().astype(np.float64), np.random.default_rng(5).normal(size=(1, 3, 64, 64))


def test_shipped_model_methods_equal_captum(shipped, captum_attr):
    model, x = shipped
    net = torch_twin(model)
    targets = [int(c) for c in model.forward(x).argmax(1)]
    layer = default_cam_layer(model)
    index = model.index(layer)
    assert type(model[layer]).__name__ == "ReLU" and type(model[index - 1]).__name__ == "Conv2d"
    cases = [
        (guided_backprop(model, x),
         captum(captum_attr.GuidedBackprop, net, x, target=targets), 1e-9),
        (deconvnet(model, x), captum(captum_attr.Deconvolution, net, x, target=targets), 1e-9),
        (grad_cam(model, x)[:, None],
         captum(captum_attr.LayerGradCam, net, x, net[index], target=targets,
                relu_attributions=True), 1e-9),
        (guided_grad_cam(model, x),
         captum(captum_attr.GuidedGradCam, net, x, net[index], target=targets,
                interpolate_mode="bilinear"), 1e-9),
        (integrated_gradients(model, x, steps=4, batch_size=4),
         captum(captum_attr.IntegratedGradients, net, x, target=targets, n_steps=4), 1e-6),
        (occlusion(model, x, window=32, stride=24),
         captum(captum_attr.Occlusion, net, x, target=targets, sliding_window_shapes=(3, 32, 32),
                strides=(3, 24, 24)), 1e-6),
    ]
    for got, want, rtol in cases:
        assert_relative(got, want, rtol=rtol)
