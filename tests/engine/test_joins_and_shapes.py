"""Mul (broadcasting), ZeroPad2d, ChannelShuffle and ChannelSlice: forward and input gradient
against PyTorch and central finite differences; small graphs built from them (a
squeeze-and-excitation block, a ShuffleNet V2 unit, TensorFlow-style "same" padding) end to end
against their torch twin, including the gradients summed where a value feeds two nodes;
predict on them; config and weights-file round trips; the bad-input messages."""
import json

import numpy as np
import pytest

import minicnn
from minicnn import (AdaptiveAvgPool2d, ChannelShuffle, ChannelSlice, Concat, Conv2d, Flatten,
                     Graph, Hardsigmoid, Hardswish, Hardtanh, Linear, MaxPool2d, Mul, ReLU,
                     ReLU6, Sequential, Sigmoid, SiLU, ZeroPad2d)
from minicnn.engine.layers import LAYER_TYPES, layer_from_config
from minicnn.engine.layers.joins import sum_to_shape
from minicnn.io.weights import WeightsFileError
from tests.helpers.compare import assert_close
from tests.helpers.gradcheck import numerical_input_gradient
from tests.helpers.torch_twin import torch_twin

DTYPES = [np.float64, np.float32]


def torch_grads(fn, xs, grad_out):
    """PyTorch's fn(*xs) and the gradient of sum(fn(*xs) * grad_out) w.r.t. each x."""
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    out = fn(*ts)
    out.backward(torch.tensor(grad_out))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def check_against_torch(layer, fn, xs, rng):
    out = layer.forward(*xs)
    grad_out = rng.standard_normal(out.shape).astype(out.dtype)
    want, want_grads = torch_grads(fn, xs, grad_out)
    dtype = xs[0].dtype
    assert out.dtype == dtype
    assert_close(out, want, dtype, what=f"{layer!r} forward")
    grads = layer.backward(grad_out)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(xs)
    for got, expected, x in zip(grads, want_grads, xs):
        assert got.dtype == dtype and got.shape == x.shape
        assert_close(got, expected, dtype, what=f"{layer!r} backward")


def check_finite_differences(layer, xs, rng):
    """Each input's gradient against central differences, the other inputs held fixed."""
    out = layer.forward(*xs)
    grad_out = rng.standard_normal(out.shape)
    grads = layer.backward(grad_out)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for k in range(len(xs)):
        def only_k(x, k=k):
            return layer.forward(*(x if i == k else xs[i] for i in range(len(xs))))
        np.testing.assert_allclose(grads[k], numerical_input_gradient(only_k, xs[k], grad_out),
                                   rtol=1e-7, atol=1e-8)


# ----------------------------------------------------------------------------- Mul

MUL_SHAPES = [((2, 3, 4, 5), (2, 3, 1, 1)),      # SE: features * gate
              ((1, 3, 1, 1), (1, 3, 5, 7)),      # torchvision's order: scale * input
              ((2, 3, 4, 5), (2, 3, 4, 5)),      # no broadcasting
              ((3, 5), (5,)),                    # an axis prepended
              ((2, 1, 3, 1), (1, 4, 1, 5))]      # both broadcast


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", MUL_SHAPES, ids=str)
def test_mul_matches_torch_and_finite_differences(dtype, shapes, rng):
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    check_against_torch(Mul(), lambda a, b: a * b, xs, rng)
    if dtype == np.float64:
        check_finite_differences(Mul(), xs, rng)


def test_sum_to_shape_undoes_broadcasting(rng):
    g = rng.standard_normal((2, 4, 3, 5))
    np.testing.assert_allclose(sum_to_shape(g, (2, 4, 1, 1)), g.sum(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(sum_to_shape(g, (3, 1)), g.sum(axis=(0, 1, 3))[:, None])
    assert sum_to_shape(g, g.shape) is g


# ----------------------------------------------------------------------------- ZeroPad2d

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", [0, 1, 2, (0, 1, 0, 1), (1, 0, 2, 3), (3, 0, 0, 0)],
                         ids=str)
@pytest.mark.parametrize("shape", [(1, 2, 5, 7), (3, 1, 4, 3)], ids=str)
def test_zeropad2d_matches_torch(dtype, padding, shape, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(dtype)
    check_against_torch(ZeroPad2d(padding), torch.nn.ZeroPad2d(padding), [x], rng)
    sides = (padding,) * 4 if isinstance(padding, int) else padding
    check_against_torch(ZeroPad2d(padding),
                        lambda t: torch.nn.functional.pad(t, sides), [x], rng)


def test_zeropad2d_by_hand_and_finite_differences(rng):
    layer = ZeroPad2d((1, 2, 0, 1))                      # left 1, right 2, top 0, bottom 1
    out = layer.forward(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(out[0, 0], [[0, 1, 1, 0, 0], [0, 1, 1, 0, 0],
                                              [0, 0, 0, 0, 0]])
    grad = layer.backward(np.arange(15.0).reshape(1, 1, 3, 5))
    np.testing.assert_array_equal(grad[0, 0], [[1, 2], [6, 7]])   # the cropped middle
    check_finite_differences(ZeroPad2d((2, 0, 1, 3)), [rng.standard_normal((2, 3, 3, 4))], rng)


def test_zeropad2d_then_conv_is_conv_with_padding(kernel_name, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    conv = Conv2d(3, 4, 3, stride=2, padding=0, dtype=np.float64, rng=rng)
    padded = Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64)
    padded.weight, padded.bias = conv.weight, conv.bias
    pad = ZeroPad2d(1)
    np.testing.assert_allclose(conv.forward(pad.forward(x)), padded.forward(x), rtol=1e-12,
                               atol=1e-14)
    g = rng.standard_normal(padded.forward(x).shape)
    conv.forward(pad.forward(x))
    np.testing.assert_allclose(pad.backward(conv.backward(g)), padded.backward(g), rtol=1e-12,
                               atol=1e-14)


# ----------------------------------------------------------------------------- ChannelShuffle

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups, shape", [(1, (2, 6, 3, 3)), (2, (1, 6, 3, 5)),
                                           (3, (2, 6, 1, 1)), (6, (1, 6, 2, 3)),
                                           (4, (3, 12, 5, 3))])
def test_channel_shuffle_matches_torch(dtype, groups, shape, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(dtype)
    check_against_torch(ChannelShuffle(groups), torch.nn.ChannelShuffle(groups), [x], rng)


def test_channel_shuffle_by_hand_and_finite_differences(rng):
    layer = ChannelShuffle(2)
    x = np.arange(6.0).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(layer.forward(x).ravel(), [0, 3, 1, 4, 2, 5])
    np.testing.assert_array_equal(layer.backward(layer.forward(x)), x)   # the inverse
    three = ChannelShuffle(3)
    np.testing.assert_array_equal(three.forward(x).ravel(), [0, 2, 4, 1, 3, 5])
    np.testing.assert_array_equal(three.backward(x).ravel(), [0, 3, 1, 4, 2, 5])
    check_finite_differences(ChannelShuffle(3), [rng.standard_normal((2, 9, 2, 3))], rng)


# ----------------------------------------------------------------------------- ChannelSlice

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start, stop", [(0, 3), (3, 7), (2, 3), (0, 7)])
def test_channel_slice_matches_torch(dtype, start, stop, rng):
    for N in (1, 3):
        x = rng.standard_normal((N, 7, 3, 5)).astype(dtype)
        check_against_torch(ChannelSlice(start, stop), lambda t: t[:, start:stop], [x], rng)


def test_channel_slices_add_up_to_the_whole_gradient(rng):
    """torch's x.chunk(2, dim=1) as two slices: their gradients, summed where they meet,
    are the whole gradient, each half in its own channels."""
    x = rng.standard_normal((2, 8, 3, 3))
    first, second = ChannelSlice(0, 4), ChannelSlice(4, 8)
    np.testing.assert_array_equal(np.concatenate([first.forward(x), second.forward(x)], 1), x)
    g = rng.standard_normal(x.shape)
    g1, g2 = first.backward(g[:, :4]), second.backward(g[:, 4:])
    assert not g1[:, 4:].any() and not g2[:, :4].any()
    np.testing.assert_array_equal(g1 + g2, g)
    check_finite_differences(ChannelSlice(1, 3), [rng.standard_normal((2, 5, 2, 3))], rng)


# ----------------------------------------------------------------------------- graphs

def random_weights(model, rng, dtype):
    for layer in model.layers:
        for p, value in layer.parameters().items():
            setattr(layer, p, rng.normal(0, 0.5, value.shape).astype(dtype))
    return model


def se_block(rng, dtype=np.float64, gate=Sigmoid):
    """Conv -> Hardswish -> squeeze-and-excitation (global pool, 1x1 conv, ReLU, 1x1 conv,
    gate) -> Mul(gate, features), as torchvision's SqueezeExcitation -> pool -> Linear. The
    Hardswish's output feeds both the squeeze and the Mul."""
    return random_weights(Graph([
        ("stem", Conv2d(3, 6, 3, padding=1), "input"), ("stem.act", Hardswish(), "stem"),
        ("se.pool", AdaptiveAvgPool2d(1), "stem.act"), ("se.fc1", Conv2d(6, 3, 1), "se.pool"),
        ("se.relu", ReLU(), "se.fc1"), ("se.fc2", Conv2d(3, 6, 1), "se.relu"),
        ("se.gate", gate(), "se.fc2"),
        ("se.mul", Mul(), ("se.gate", "stem.act")),
        ("pool", AdaptiveAvgPool2d(1), "se.mul"), ("flatten", Flatten(), "pool"),
        ("fc", Linear(6, 4), "flatten")]), rng, dtype)


def shufflenet_unit(rng, dtype=np.float64):
    """A ShuffleNet V2 unit (stride 1): the stem's channels split in two halves (two
    ChannelSlice nodes reading one value), one half through 1x1 conv, ReLU, 3x3 conv, ReLU6,
    the halves concatenated and shuffled, then pool and Linear."""
    return random_weights(Graph([
        ("stem", Conv2d(3, 8, 3, padding=1), "input"), ("stem.relu", ReLU(), "stem"),
        ("half1", ChannelSlice(0, 4), "stem.relu"), ("half2", ChannelSlice(4, 8), "stem.relu"),
        ("branch.0", Conv2d(4, 4, 1), "half2"), ("branch.1", ReLU(), "branch.0"),
        ("branch.2", Conv2d(4, 4, 3, padding=1), "branch.1"), ("branch.3", ReLU6(), "branch.2"),
        ("cat", Concat(), ("half1", "branch.3")), ("shuffle", ChannelShuffle(2), "cat"),
        ("pool", MaxPool2d(2), "shuffle"), ("flatten", Flatten(), "pool"),
        ("fc", Linear(8 * 4 * 5, 4), "flatten")]), rng, dtype)


def same_padding_net(rng, dtype=np.float64):
    """TensorFlow's "same" padding of a 3x3, stride-2 conv on an even-sized input: one more
    row and column of zeros at the bottom and right (EfficientNet-Lite), then SiLU, a
    symmetric ZeroPad2d and a conv with padding 0, Hardtanh, Linear."""
    return random_weights(Sequential([
        ("pad", ZeroPad2d((0, 1, 0, 1))), ("conv", Conv2d(3, 4, 3, stride=2)), ("act", SiLU()),
        ("pad2", ZeroPad2d(1)), ("conv2", Conv2d(4, 5, 3)), ("act2", Hardtanh(-1.0, 2.0)),
        ("flatten", Flatten()), ("fc", Linear(5 * 4 * 5, 4))]), rng, dtype)


NETS = {"se-sigmoid": se_block, "se-hardsigmoid": lambda rng, dtype=np.float64: se_block(
    rng, dtype, Hardsigmoid), "shufflenet": shufflenet_unit, "same-padding": same_padding_net}
INNER = {"se-sigmoid": "stem.act", "se-hardsigmoid": "stem.act", "shufflenet": "stem.relu",
         "same-padding": "pad2"}      # the node whose gradient to compare (a fan-out, mostly)


def keep_output(twin, index):
    """After the twin's next forward, ``kept["out"]`` is the output of its module ``index``
    (a model's node), whose ``.grad`` the backward fills in."""
    kept = {}

    def hook(module, inputs, output):
        output.retain_grad()
        kept["out"] = output
    modules = twin.nodes if hasattr(twin, "nodes") else twin   # a graph, or a Sequential
    modules[index].register_forward_hook(hook)
    return kept


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [1, 3])
def test_graphs_match_their_torch_twin(kernel_name, name, dtype, N, torch, rng):
    """Scores, input gradient and the gradient at an inner node (where two paths' gradients
    add up) against torch autograd on the same graph; float32 against float64 torch."""
    model = NETS[name](rng, dtype)
    twin = torch_twin(model)
    inner = keep_output(twin, model.index(INNER[name]))
    x = rng.standard_normal((N, 3, 8, 10)).astype(dtype)
    targets = rng.integers(0, 4, N)
    seed = np.eye(4, dtype=dtype)[targets]
    scores = model.forward(x)
    grad = model.backward(seed)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    scores_t = twin(xt)
    scores_t[torch.arange(N), torch.as_tensor(targets)].sum().backward()
    assert scores.dtype == grad.dtype == dtype
    assert_close(scores, scores_t.detach().numpy(), dtype, what="scores")
    if name == "se-hardsigmoid" and dtype == np.float64:
        # torch's hardsigmoid backward multiplies by float32(1/6): 3e-8 relative on the part
        # of the gradient that passes through the gate (tests/engine/test_activations.py)
        for got, want in ((grad, xt.grad.numpy()),
                          (model.gradient_at(INNER[name]), inner["out"].grad.numpy())):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 * np.abs(want).max())
        return
    assert_close(grad, xt.grad.numpy(), dtype, what="input gradient")
    assert_close(model.gradient_at(INNER[name]), inner["out"].grad.numpy(), dtype,
                 what=f"gradient at {INNER[name]}")


@pytest.mark.parametrize("name", list(NETS))
def test_graphs_match_finite_differences(name, rng):
    model = NETS[name](rng)
    x = rng.standard_normal((1, 3, 8, 10))
    seed = rng.standard_normal((1, 4))
    numerical = numerical_input_gradient(model.forward, x, seed)
    model.forward(x)
    np.testing.assert_allclose(model.backward(seed), numerical, rtol=1e-6, atol=1e-8)


def test_the_shufflenet_halves_gradients_meet_at_the_stem(rng):
    """The stem's gradient is the sum of what the two slices send back: the untouched half's
    gradient in channels 0-3, the branch's in 4-7."""
    model = shufflenet_unit(rng)
    model.forward(rng.standard_normal((2, 3, 8, 10)))
    model.backward(np.eye(4)[[1, 3]])
    first = model["half1"].backward(model.gradient_at("half1"))
    second = model["half2"].backward(model.gradient_at("half2"))
    np.testing.assert_allclose(model.gradient_at("stem.relu"), first + second, rtol=1e-15)
    assert model.consumers("stem.relu") == ["half1", "half2"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_gives_forward_and_spares_values_a_view_was_taken_of(kernel_name, dtype, rng):
    """predict's ReLU may overwrite its input only if no view of it is still to be read: here
    a ChannelSlice and a Flatten each take a view of a value that a ReLU then reads last."""
    conv = lambda c, f: Conv2d(c, f, 1, dtype=dtype, rng=rng)    # noqa: E731
    traps = Graph([
        ("a", conv(3, 4), "input"), ("a.half", ChannelSlice(0, 2), "a"), ("a.relu", ReLU(), "a"),
        ("cat", Concat(), ("a.half", "a.relu")),
        ("b", conv(6, 2), "cat"), ("b.flat", Flatten(), "b"), ("b.relu", ReLU(), "b"),
        ("b.relu.flat", Flatten(), "b.relu"), ("out", minicnn.Add(), ("b.flat", "b.relu.flat"))])
    for model in (traps, *(make(rng, dtype) for make in NETS.values())):
        x = rng.standard_normal((2, 3, 8, 10)).astype(dtype)
        scores = model.forward(x).copy()
        np.testing.assert_array_equal(model.predict(x), scores)


# ----------------------------------------------------------------------------- config, files

def test_config_round_trips():
    layers = [Mul(), ZeroPad2d(2), ZeroPad2d((0, 1, 2, 3)), ChannelShuffle(3), ChannelSlice(2, 5)]
    for layer in layers:
        config = json.loads(json.dumps(layer.config()))
        assert LAYER_TYPES[config["type"]] is type(layer)
        assert layer_from_config(config).config() == config
    assert ZeroPad2d(2).config() == {"type": "ZeroPad2d", "padding": [2, 2, 2, 2]}
    assert repr(ChannelSlice(2, 5)) == "ChannelSlice(start=2, stop=5)"
    for name in ("Mul", "ZeroPad2d", "ChannelShuffle", "ChannelSlice"):
        assert name in minicnn.__all__


def test_graph_config_and_weights_file_round_trip(rng, tmp_path):
    """Every new layer but ZeroPad2d (below) in one file: the SE block's and the ShuffleNet
    unit's layers, and a Hardtanh with its range."""
    for make in (se_block, shufflenet_unit):
        model = make(rng)
        copy = Graph.from_config(json.loads(json.dumps(model.config())), dtype=np.float64)
        copy.load_state_dict(model.state_dict())
        x = rng.standard_normal((2, 3, 8, 10))
        np.testing.assert_array_equal(copy.forward(x), model.forward(x))
        loaded = minicnn.load(minicnn.save(model.astype(np.float32), tmp_path / "g.npz"))
        assert type(loaded) is Graph and loaded.config() == model.config()
        np.testing.assert_array_equal(loaded.forward(x.astype(np.float32)),
                                      model.forward(x.astype(np.float32)))
    chain = Sequential([Hardtanh(-0.5, 2.0), ReLU6(), Flatten()])
    loaded = minicnn.load(minicnn.save(chain, tmp_path / "c.npz"))
    assert loaded.config() == chain.config()


def test_zeropad2d_in_a_weights_file(rng, tmp_path):
    model = same_padding_net(rng, np.float32)
    loaded = minicnn.load(minicnn.save(model, tmp_path / "pad.npz"))
    assert loaded.config() == model.config()


@pytest.mark.parametrize("node, key, value, message", [
    ("shuffle", "groups", 1.5, r"layer 'shuffle' has groups 1.5, expected an int in 1\.\."),
    ("shuffle", "groups", 0, r"layer 'shuffle' has groups 0, expected an int in 1\.\."),
    ("half2", "stop", "8", r"layer 'half2' has stop \"8\", expected an int in 1\.\."),
    ("half2", "start", None, r"layer 'half2' has start null, expected a finite number"),
    ("half2", "start", 2.5, r"bad architecture: bad config for ChannelSlice: .*\(ChannelSlice: "
                            r"start and stop must be ints, got start=2.5, stop=8\)"),
    ("half2", "start", 9, r"bad architecture: ChannelSlice: need 0 <= start < stop, got "
                          r"start=9, stop=8"),
])
def test_bad_values_in_a_weights_file_name_the_layer(rng, tmp_path, node, key, value, message):
    path = minicnn.save(shufflenet_unit(rng, np.float32), tmp_path / "g.npz")
    with np.load(path) as f:
        arrays = dict(f)
    config = json.loads(str(arrays["__architecture__"]))
    next(c for c in config if c["name"] == node)[key] = value
    arrays["__architecture__"] = np.array(json.dumps(config))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WeightsFileError, match=message):
        minicnn.load(tmp_path / "bad.npz")


def test_bad_hardtanh_range_in_a_weights_file(tmp_path):
    path = minicnn.save(Sequential([("act", Hardtanh()), ("flat", Flatten())]),
                        tmp_path / "h.npz")
    with np.load(path) as f:
        arrays = dict(f)
    config = json.loads(str(arrays["__architecture__"]))
    config[0]["max_val"] = "1"
    arrays["__architecture__"] = np.array(json.dumps(config))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WeightsFileError, match=r"layer 'act' has max_val \"1\", expected a "
                                               r"finite number"):
        minicnn.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- bad input

def test_bad_input_messages():
    mul = Mul()
    mul.name = "se.mul"
    with pytest.raises(ValueError, match=r"Mul 'se.mul': input shapes \(2, 3, 4, 5\) and "
                                         r"\(2, 4, 1, 1\) do not broadcast together"):
        mul.forward(np.ones((2, 3, 4, 5)), np.ones((2, 4, 1, 1)))
    with pytest.raises(ValueError, match=r"Mul 'se.mul': inputs must have one dtype, got "
                                         r"float64 and float32"):
        mul.forward(np.ones((1, 2)), np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"Mul 'se.mul': expected two inputs, got 3"):
        mul.forward(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"Mul 'se.mul': input must have dtype float32 or "
                                        r"float64, got int64"):
        mul.forward(np.ones(2), np.ones(2, np.int64))

    with pytest.raises(ValueError, match=r"ZeroPad2d: padding must be >= 0 on every side "
                                         r"\(left, right, top, bottom\), got \(1, -1, 0, 0\)"):
        ZeroPad2d((1, -1, 0, 0))
    with pytest.raises(ValueError, match=r"padding must be >= 0 on every side .* got "
                                         r"\(-2, -2, -2, -2\)"):
        ZeroPad2d(-2)
    with pytest.raises(TypeError, match=r"ZeroPad2d: padding must be an int or four ints "
                                        r"\(left, right, top, bottom\), got \(1, 1\)"):
        ZeroPad2d((1, 1))
    with pytest.raises(TypeError, match=r"ZeroPad2d: padding must be an int or four ints"):
        ZeroPad2d(1.0)
    with pytest.raises(ValueError, match=r"ZeroPad2d: input must be 4-D, shaped \(N, C, H, W\), "
                                         r"got shape \(3, 4\)"):
        ZeroPad2d(1).forward(np.ones((3, 4)))

    shuffle = ChannelShuffle(4)
    shuffle.name = "stage2.0.shuffle"
    with pytest.raises(ValueError, match=r"ChannelShuffle 'stage2.0.shuffle': the input's 6 "
                                         r"channels do not split into 4 groups, got input of "
                                         r"shape \(1, 6, 2, 2\)"):
        shuffle.forward(np.ones((1, 6, 2, 2)))
    with pytest.raises(ValueError, match=r"ChannelShuffle: groups must be >= 1, got 0"):
        ChannelShuffle(0)
    with pytest.raises(TypeError, match=r"ChannelShuffle: groups must be an int, got 2.0"):
        ChannelShuffle(2.0)

    half = ChannelSlice(4, 8)
    half.name = "stage2.0.half2"
    with pytest.raises(ValueError, match=r"ChannelSlice 'stage2.0.half2': channels 4:8 need at "
                                         r"least 8 input channels, got input of shape "
                                         r"\(1, 6, 2, 2\)"):
        half.forward(np.ones((1, 6, 2, 2)))
    with pytest.raises(ValueError, match=r"ChannelSlice: need 0 <= start < stop, got start=3, "
                                         r"stop=3"):
        ChannelSlice(3, 3)
    with pytest.raises(ValueError, match=r"need 0 <= start < stop, got start=-1, stop=2"):
        ChannelSlice(-1, 2)
    with pytest.raises(TypeError, match=r"ChannelSlice: start and stop must be ints, got "
                                        r"start=0, stop=True"):
        ChannelSlice(0, True)
    with pytest.raises(ValueError, match=r"ChannelSlice 'stage2.0.half2': grad_out must have "
                                         r"the forward output's shape \(1, 4, 2, 2\), got "
                                         r"\(1, 8, 2, 2\)"):
        half.forward(np.ones((1, 8, 2, 2)))
        half.backward(np.ones((1, 8, 2, 2)))
