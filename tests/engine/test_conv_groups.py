"""Grouped, depthwise and dilated Conv2d (PyTorch's ``groups`` and ``dilation``): forward and
input gradient against torch.nn.functional.conv2d + autograd and against central finite
differences, on both kernel implementations; the bad-input messages; configs and weights
files that carry groups and dilation."""
import json

import numpy as np
import pytest

import minicnn
from minicnn import Conv2d
from minicnn.engine.layers import layer_from_config
from minicnn.io.weights import WeightsFileError, load, save
from tests.engine.test_layers import check_against_torch
from tests.helpers.gradcheck import numerical_input_gradient
from tests.helpers.torch_twin import torch_input_gradient, torch_twin

DTYPES = [np.float64, np.float32]


def random_grouped(rng):
    """A random grouped layer and input: (layer arguments, input shape). groups is 1, 2, 3
    or C (depthwise, 1-3 filters per channel); strides 1-3, paddings 0-2, dilations 1-3,
    odd sizes; the dilated kernel always fits the padded input."""
    groups = int(rng.choice([1, 2, 3, 0]))  # 0: depthwise, groups = C
    per_group = int(rng.integers(1, 4))
    C = per_group * groups if groups else int(rng.integers(1, 7))
    groups = groups or C
    F = groups * int(rng.integers(1, 4))  # 1-3 filters per group (a channel multiplier)
    kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    padding = tuple(int(p) for p in rng.integers(0, 3, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, 2))
    smallest = [max(1, d * (k - 1) + 1 - 2 * p) for k, p, d in zip(kernel, padding, dilation)]
    H, W = (int(rng.integers(low, max(low + 1, 13))) for low in smallest)
    args = dict(in_channels=C, out_channels=F, kernel_size=kernel, stride=stride,
                padding=padding, groups=groups, dilation=dilation)
    return args, (int(rng.choice([1, 2, 3])), C, H, W)


@pytest.mark.parametrize("dtype", DTYPES)
def test_grouped_dilated_conv_matches_torch(kernel_name, dtype, rng):
    F = pytest.importorskip("torch.nn.functional")
    torch = pytest.importorskip("torch")
    for _ in range(40):
        args, shape = random_grouped(rng)
        layer = Conv2d(**args, bias=bool(rng.random() < 0.7), dtype=dtype, rng=rng)
        x = rng.standard_normal(shape).astype(dtype)
        w = torch.tensor(layer.weight)
        b = None if layer.bias is None else torch.tensor(layer.bias)
        check_against_torch(layer, lambda t: F.conv2d(t, w, b, args["stride"], args["padding"],
                                                      args["dilation"], args["groups"]), x, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels, size, kernel, stride", [
    (32, 16, 3, 1), (24, 15, 3, 2), (16, 14, 5, 2), (40, 9, 5, 1), (8, 7, 7, 1)])
def test_depthwise_layers_of_mobile_networks_match_torch(kernel_name, dtype, channels, size,
                                                         kernel, stride, rng):
    """MobileNet's and EfficientNet's depthwise layers (padding kernel // 2), on maps large
    enough for several bands of rows in the fast loops."""
    F = pytest.importorskip("torch.nn.functional")
    torch = pytest.importorskip("torch")
    layer = Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels,
                   dtype=dtype, rng=rng)
    x = rng.standard_normal((1, channels, size, size)).astype(dtype)
    w, b = torch.tensor(layer.weight), torch.tensor(layer.bias)
    check_against_torch(layer, lambda t: F.conv2d(t, w, b, stride, kernel // 2, 1, channels),
                        x, rng)


def away_from_zero(rng, shape):
    return rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


F64 = dict(dtype=np.float64)


@pytest.mark.parametrize("make_layer, shape", [
    (lambda: Conv2d(4, 8, 3, stride=2, padding=1, groups=4, rng=0, **F64), (2, 4, 7, 6)),
    (lambda: Conv2d(3, 3, 5, stride=2, padding=2, groups=3, rng=1, **F64), (1, 3, 9, 8)),
    (lambda: Conv2d(4, 6, (3, 2), padding=(2, 1), groups=2, dilation=(2, 3), rng=2, **F64),
     (2, 4, 6, 7)),
    (lambda: Conv2d(2, 4, 3, stride=3, dilation=3, rng=3, **F64), (1, 2, 11, 10)),
    (lambda: Conv2d(6, 3, 1, stride=2, groups=3, rng=4, **F64), (2, 6, 5, 5)),
    (lambda: Conv2d(5, 5, 3, padding=2, groups=5, dilation=2, rng=5, **F64), (1, 5, 5, 6)),
], ids=["depthwise-x2-stride2", "depthwise-5x5-stride2", "grouped-dilated-rect",
        "dilated-stride3", "grouped-1x1-stride2", "depthwise-dilated"])
def test_backward_matches_finite_differences(kernel_name, make_layer, shape, rng):
    layer = make_layer()
    x = away_from_zero(rng, shape)
    grad_out = rng.standard_normal(layer.forward(x).shape)
    numerical = numerical_input_gradient(layer.forward, x, grad_out)
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(grad_out), numerical, rtol=1e-7, atol=1e-8)


def test_weights_have_pytorchs_shape_and_initial_bound():
    layer = Conv2d(12, 18, (3, 5), groups=3, rng=0)
    assert layer.weight.shape == (18, 4, 3, 5)  # (F, C // groups, KH, KW)
    bound = 1 / np.sqrt(4 * 3 * 5)  # fan_in = C // groups * KH * KW, as torch
    for value in (layer.weight, layer.bias):
        assert np.abs(value).max() <= bound and np.abs(value).max() > 0.9 * bound
    depthwise = Conv2d(32, 32, 3, groups=32, rng=0)
    assert depthwise.weight.shape == (32, 1, 3, 3)
    assert np.abs(depthwise.weight).max() <= 1 / 3


def test_a_dilated_input_gradient_skips_what_no_tap_reads(kernel_name):
    """Stride 2 and dilation 2 read only the even rows and columns: the odd ones get zero."""
    layer = Conv2d(2, 2, 3, stride=2, dilation=2, groups=2, dtype=np.float64, rng=0)
    x = np.ones((1, 2, 9, 9))
    grad = layer.backward(np.ones(layer.forward(x).shape))
    assert np.all(grad[:, :, 1::2, :] == 0) and np.all(grad[:, :, :, 1::2] == 0)
    assert np.all(grad[:, :, ::2, ::2] != 0)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"Conv2d: in_channels and out_channels must both be "
                                         r"divisible by groups >= 1, got in_channels=6, "
                                         r"out_channels=4, groups=3"):
        Conv2d(6, 4, 3, groups=3)
    with pytest.raises(ValueError, match=r"in_channels=5, out_channels=10, groups=2"):
        Conv2d(5, 10, 3, groups=2)
    with pytest.raises(ValueError, match=r"groups=0"):
        Conv2d(4, 4, 3, groups=0)
    with pytest.raises(TypeError, match=r"Conv2d groups must be an int, got 2.0"):
        Conv2d(4, 4, 3, groups=2.0)
    with pytest.raises(TypeError, match=r"Conv2d groups must be an int, got True"):
        Conv2d(4, 4, 3, groups=True)
    with pytest.raises(ValueError, match=r"Conv2d: dilation must be >= 1, got \(1, 0\)"):
        Conv2d(4, 4, 3, dilation=(1, 0))
    with pytest.raises(TypeError, match=r"Conv2d dilation must be an int or a pair of ints, "
                                        r"got 1.5"):
        Conv2d(4, 4, 3, dilation=1.5)
    conv = Conv2d(4, 4, 3, groups=2, dilation=2)
    conv.name = "features.3"  # as a model names it
    with pytest.raises(ValueError, match=r"Conv2d 'features.3': kernel \(3, 3\) with dilation "
                                         r"\(2, 2\) spans \(5, 5\), more than the padded input "
                                         r"\(4, 6\) \(input H, W = \(4, 6\), padding \(0, 0\)\)"):
        conv.forward(np.ones((1, 4, 4, 6), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d 'features.3': expected 4 input channels, got "
                                         r"input of shape \(1, 2, 9, 9\)"):
        conv.forward(np.ones((1, 2, 9, 9), np.float32))
    assert conv.forward(np.ones((1, 4, 5, 5), np.float32)).shape == (1, 4, 1, 1)  # just fits


def test_config_round_trip():
    layer = Conv2d(6, 9, (3, 1), stride=(2, 1), padding=1, groups=3, dilation=(2, 1), rng=0)
    config = json.loads(json.dumps(layer.config()))
    assert config["groups"] == 3 and config["dilation"] == [2, 1]
    copy = layer_from_config(config)
    assert copy.config() == layer.config() and copy.weight.shape == (9, 2, 3, 1)
    old = {k: v for k, v in config.items() if k not in ("groups", "dilation")}
    plain = layer_from_config(old)  # a config written before groups and dilation existed
    assert (plain.groups, plain.dilation) == (1, (1, 1)) and plain.weight.shape == (9, 6, 3, 1)


def grouped_model():
    rng = np.random.default_rng(0)
    model = minicnn.Sequential([
        ("features.0", Conv2d(3, 8, 3, stride=2, padding=1)), ("features.1", minicnn.ReLU()),
        ("features.2", Conv2d(8, 8, 3, padding=1, groups=8)),  # depthwise
        ("features.3", Conv2d(8, 12, 3, padding=2, groups=4, dilation=2)),
        ("features.4", Conv2d(12, 6, 1, groups=2)), ("pool", minicnn.AdaptiveAvgPool2d(1)),
        ("flatten", minicnn.Flatten()), ("classifier", minicnn.Linear(6, 3))])
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(size=value.shape).astype(np.float32))
    return model


def test_weights_file_with_groups_and_dilation(kernel_name, tmp_path):
    model = grouped_model()
    path = save(model, tmp_path / "grouped.npz", meta={"class_names": ["a", "b", "c"]})
    loaded = load(path)
    assert loaded.config() == model.config()
    assert loaded["features.3"].groups == 4 and loaded["features.3"].dilation == (2, 2)
    x = np.random.default_rng(1).normal(size=(2, 3, 15, 13)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("key, value, message", [
    ("groups", "4", r"layer 'features\.3' has groups \"4\", expected an int in 1\.\."),
    ("groups", 0, r"layer 'features\.3' has groups 0, expected an int in 1\.\."),
    ("dilation", [2, 0], r"layer 'features\.3' has dilation \[2, 0\], expected an int >= 1"),
    ("dilation", 2.5, r"layer 'features\.3' has dilation 2\.5, expected an int >= 1"),
    ("dilation", [2, 5000], r"layer 'features\.3' has dilation \[2, 5000\], more than the "
                            r"limit of 1024"),
    ("groups", 5, r"in_channels and out_channels must both be divisible by groups"),
])
def test_weights_file_with_a_bad_groups_or_dilation_is_refused(tmp_path, key, value, message):
    path = save(grouped_model(), tmp_path / "grouped.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arch = json.loads(str(arrays["__architecture__"]))
    arch[3][key] = value
    arrays["__architecture__"] = np.array(json.dumps(arch))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WeightsFileError, match=message):
        load(tmp_path / "bad.npz")


def test_torch_twin_of_a_grouped_model(kernel_name):
    torch = pytest.importorskip("torch")
    model = grouped_model().astype(np.float64)
    twin = torch_twin(model)
    x = np.random.default_rng(2).normal(size=(2, 3, 15, 13))
    scores, grad = torch_input_gradient(twin, x, [0, 2])
    np.testing.assert_allclose(model(x), scores, rtol=1e-10, atol=1e-12)
    one_hot = np.zeros_like(scores)
    one_hot[[0, 1], [0, 2]] = 1.0
    np.testing.assert_allclose(model.backward(one_hot), grad, rtol=1e-10, atol=1e-12)
    assert isinstance(twin[2], torch.nn.Conv2d) and twin[2].groups == 8
