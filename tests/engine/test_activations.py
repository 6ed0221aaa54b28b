"""The activations (ReLU6, Hardtanh, Hardswish, Hardsigmoid, SiLU, Sigmoid, and ReLU among them):
forward and input gradient against PyTorch and central finite differences, the derivative at
every kink as PyTorch defines it, the three backward rules by their definitions on hand-made
values, the rule reaching every activation of a model, and the bad-input messages."""
import warnings

import numpy as np
import pytest

import minicnn
from minicnn import (Activation, Conv2d, Flatten, Hardsigmoid, Hardswish, Hardtanh, Linear,
                     ReLU, ReLU6, Sequential, Sigmoid, SiLU)
from minicnn.engine.layers import LAYER_TYPES, layer_from_config
from tests.helpers.compare import assert_close
from tests.helpers.gradcheck import numerical_input_gradient

DTYPES = [np.float64, np.float32]
SHAPES = [(1, 3, 5, 7), (4, 2, 3, 1), (3, 5)]           # batch 1 and > 1, odd sizes, 2-D

# (minicnn layer, the torch function, its kinks)
ACTIVATIONS = {
    "relu": (ReLU, lambda F, t: F.relu(t), (0.0,)),
    "relu6": (ReLU6, lambda F, t: F.relu6(t), (0.0, 6.0)),
    "hardtanh": (Hardtanh, lambda F, t: F.hardtanh(t), (-1.0, 1.0)),
    "hardtanh(-0.5,2.5)": (lambda: Hardtanh(-0.5, 2.5), lambda F, t: F.hardtanh(t, -0.5, 2.5),
                           (-0.5, 2.5)),
    "hardswish": (Hardswish, lambda F, t: F.hardswish(t), (-3.0, 3.0)),
    "hardsigmoid": (Hardsigmoid, lambda F, t: F.hardsigmoid(t), (-3.0, 3.0)),
    "silu": (SiLU, lambda F, t: F.silu(t), ()),
    "sigmoid": (Sigmoid, lambda F, t: t.sigmoid(), ()),
}

# PyTorch's CPU hardsigmoid_backward multiplies by 1/6 rounded to float32 even in float64;
# minicnn's derivative is 1/6 in the input's dtype (the finite differences agree with it).
TORCH_SIXTH = float(np.float32(1 / 6))


def torch_forward_backward(fn, x, grad_out):
    """PyTorch's fn(x) and d(sum(fn(x) * grad_out))/dx as numpy arrays."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    out = fn(F, xt)
    out.backward(torch.tensor(grad_out))
    return out.detach().numpy(), xt.grad.numpy()


def with_kinks(rng, shape, kinks, dtype):
    """Normal values spread over [-8, 8], a quarter of them replaced by the kinks exactly."""
    x = rng.uniform(-8, 8, shape)
    if kinks:
        at = rng.random(shape) < 0.25
        x[at] = rng.choice(kinks, int(at.sum()))
    return x.astype(dtype)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_gradient_match_torch(kernel_name, name, dtype, shape, rng):
    make, fn, kinks = ACTIVATIONS[name]
    layer = make()
    x = with_kinks(rng, shape, kinks, dtype)
    out = layer.forward(x)
    grad_out = rng.standard_normal(shape).astype(dtype)
    want_out, want_grad = torch_forward_backward(fn, x, grad_out)
    if name == "hardsigmoid" and dtype == np.float64:
        want_grad = want_grad * ((1 / 6) / TORCH_SIXTH)
    assert out.dtype == dtype and out.shape == shape
    assert_close(out, want_out, dtype, what=f"{name} forward")
    grad = layer.backward(grad_out)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, want_grad, dtype, what=f"{name} backward")


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if ACTIVATIONS[n][2]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_derivative_at_the_kinks_is_torchs_exactly(name, dtype):
    make, fn, kinks = ACTIVATIONS[name]
    x = np.array(kinks, dtype)
    layer = make()
    layer.forward(x)
    ones = np.ones_like(x)
    _, want = torch_forward_backward(fn, x, ones)
    np.testing.assert_array_equal(layer.backward(ones), want)


@pytest.mark.parametrize("make, x, out, slope", [
    (ReLU, [-1, 0, 2], [0, 0, 2], [0, 0, 1]),
    (ReLU6, [-1, 0, 3, 6, 7], [0, 0, 3, 6, 6], [0, 0, 1, 0, 0]),
    (Hardtanh, [-2, -1, -0.5, 0, 1, 2], [-1, -1, -0.5, 0, 1, 1], [0, 0, 1, 1, 0, 0]),
    (lambda: Hardtanh(-0.5, 2.5), [-1, -0.5, 0, 2.5, 3], [-0.5, -0.5, 0, 2.5, 2.5],
     [0, 0, 1, 0, 0]),
    # x (x + 3) / 6 between the kinks, slope x / 3 + 1/2 there; 0 at -3, 1 at 3
    (Hardswish, [-4, -3, -1.5, 0, 1.5, 3, 4], [0, 0, -0.375, 0, 1.125, 3, 4],
     [0, 0, 0, 0.5, 1, 1, 1]),
    (Hardsigmoid, [-4, -3, 0, 1.5, 3, 4], [0, 0, 0.5, 0.75, 1, 1], [0, 0, 1 / 6, 1 / 6, 0, 0]),
    (SiLU, [0, 40], [0, 40], [0.5, 1]),
    (Sigmoid, [0, 40, -40], [0.5, 1, 4.248354255291589e-18], [0.25, 0, 4.248354255291589e-18]),
], ids=["relu", "relu6", "hardtanh", "hardtanh-range", "hardswish", "hardsigmoid", "silu",
        "sigmoid"])
def test_function_and_derivative_on_hand_made_values(make, x, out, slope):
    layer = make()
    x = np.array(x, np.float64)
    np.testing.assert_allclose(layer.forward(x), out, rtol=1e-15, atol=0)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), slope, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_backward_matches_finite_differences(kernel_name, name, rng):
    make, _, kinks = ACTIVATIONS[name]
    x = rng.uniform(-8, 8, (2, 3, 4, 3))
    for kink in kinks:                                   # keep h = 1e-6 far from every kink
        near = np.abs(x - kink) < 0.05
        x[near] = kink + 0.1
    layer = make()
    grad_out = rng.standard_normal(x.shape)
    numerical = numerical_input_gradient(layer.forward, x, grad_out)
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(grad_out), numerical, rtol=1e-7, atol=1e-8)


def test_sigmoid_and_silu_never_overflow():
    x = np.array([-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4])
    for dtype in DTYPES:
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise",
                                                    divide="raise"):
            warnings.simplefilter("error")
            for layer in (Sigmoid(), SiLU()):
                out = layer.forward(x.astype(dtype))
                grad = layer.backward(np.ones(7, dtype))
                assert np.isfinite(out).all() and np.isfinite(grad).all()
        s = Sigmoid().forward(x.astype(dtype))
        np.testing.assert_array_equal(s[[0, 1, 3, -2, -1]], [0, 0, 0.5, 1, 1])
        assert 0 < s[2] < 1e-17                          # sigmoid(-40) = 4.2e-18, not 0


# ----------------------------------------------------------------------------- rules

G = np.array([2.0, -3.0, 0.5, -1.0, 4.0])    # an incoming signal of both signs


@pytest.mark.parametrize("make, x", [
    (ReLU, [-1.0, 1.0, 0.0, 2.0, 3.0]),
    (ReLU6, [-1.0, 1.0, 6.0, 7.0, 3.0]),
    (Hardtanh, [-2.0, 0.5, -1.0, 1.0, 0.0]),
    (Hardswish, [-4.0, -2.0, -3.0, 1.0, 3.0]),
    (SiLU, [-4.0, -2.0, -0.5, 1.0, 3.0]),
], ids=["relu", "relu6", "hardtanh", "hardswish", "silu"])
def test_rectifier_rules_by_their_definitions(kernel_name, make, x):
    """guided = f'(x) max(g, 0); deconvnet = max(g, 0), x ignored; gradient = f'(x) g."""
    layer = make()
    assert layer.rectifier
    x = np.array(x)
    layer.forward(x)
    slope = layer.backward(np.ones_like(x))               # f'(x)
    np.testing.assert_array_equal(layer.backward(G), slope * G)
    np.testing.assert_array_equal(layer.backward(G, rule="guided"), slope * np.maximum(G, 0))
    np.testing.assert_array_equal(layer.backward(G, rule="deconvnet"), np.maximum(G, 0))


def test_rectifier_rules_on_known_arrays():
    """The same, written out: ReLU6 stops at 0 and 6; Hardswish' is 0 at -3, x/3 + 1/2
    between the kinks (negative below -1.5), 1 at 3."""
    relu6 = ReLU6()
    relu6.forward(np.array([-1.0, 1.0, 6.0, 7.0, 3.0]))
    np.testing.assert_array_equal(relu6.backward(G), [0, -3, 0, 0, 4])
    np.testing.assert_array_equal(relu6.backward(G, rule="guided"), [0, 0, 0, 0, 4])
    np.testing.assert_array_equal(relu6.backward(G, rule="deconvnet"), [2, 0, 0.5, 0, 4])
    hardswish = Hardswish()
    hardswish.forward(np.array([-3.0, -2.25, -2.25, 0.0, 3.0]))    # slopes 0, -1/4, 1/2, 1
    np.testing.assert_array_equal(hardswish.backward(G), [0, 0.75, -0.125, -0.5, 4])
    np.testing.assert_array_equal(hardswish.backward(G, rule="guided"), [0, 0, -0.125, 0, 4])
    np.testing.assert_array_equal(hardswish.backward(G, rule="deconvnet"), [2, 0, 0.5, 0, 4])


@pytest.mark.parametrize("make", [Sigmoid, Hardsigmoid])
def test_gates_pass_the_gradient_under_every_rule(make):
    layer = make()
    assert not layer.rectifier
    x = np.array([-4.0, -3.0, -1.0, 0.5, 3.0])
    layer.forward(x)
    gradient = layer.backward(G)
    assert (gradient != 0).any()
    for rule in ("guided", "deconvnet"):
        np.testing.assert_array_equal(layer.backward(G, rule=rule), gradient)


def test_an_activation_nobody_classified_passes_the_gradient_under_every_rule():
    class Tanh(Activation):                              # a user's own, rectifier not said
        def function(self, x):
            return np.tanh(x)

        def chain(self, grad_out, x):
            return grad_out * (1 - np.tanh(x) ** 2)

    layer = Tanh()
    layer.forward(np.array([-2.0, -0.5, 0.0, 1.0, 3.0]))
    gradient = layer.backward(G)
    for rule in ("guided", "deconvnet"):
        np.testing.assert_array_equal(layer.backward(G, rule=rule), gradient)


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
def test_relu6_is_relu_where_no_unit_reaches_6(kernel_name, rule, rng):
    x = rng.uniform(-5.9, 5.9, (3, 4, 5))
    x[0, 0, :2] = 0.0                                     # the kink they share
    g = rng.standard_normal(x.shape)
    relu, relu6 = ReLU(), ReLU6()
    np.testing.assert_array_equal(relu6.forward(x), relu.forward(x))
    np.testing.assert_array_equal(relu6.backward(g, rule=rule), relu.backward(g, rule=rule))


def test_unknown_rule_names_the_layer():
    for layer in (Hardswish(), Sigmoid(), ReLU()):
        layer.name = "features.3"
        layer.forward(np.ones(3))
        kind = type(layer).__name__
        with pytest.raises(ValueError, match=rf"{kind} 'features.3': unknown backward rule "
                                             r"'smooth'; valid rules are \('gradient', "
                                             r"'deconvnet', 'guided'\)"):
            layer.backward(np.ones(3), rule="smooth")


# ----------------------------------------------------------------------------- in a model

def every_activation_net(dtype=np.float64):
    """Conv -> Hardswish -> conv -> ReLU6 -> conv -> SiLU -> Flatten -> Linear -> Hardtanh ->
    Linear -> Sigmoid -> Linear -> Hardsigmoid -> Linear -> ReLU -> Linear: (N, 2, 6, 5) -> 3."""
    rng = np.random.default_rng(7)
    layers = [Conv2d(2, 4, 3, padding=1), Hardswish(), Conv2d(4, 4, 3), ReLU6(),
              Conv2d(4, 3, 1), SiLU(), Flatten(), Linear(3 * 4 * 3, 10), Hardtanh(-0.5, 1.5),
              Linear(10, 8), Sigmoid(), Linear(8, 7), Hardsigmoid(), Linear(7, 6), ReLU(),
              Linear(6, 3)]
    model = Sequential(layers)
    for layer in model.layers:
        for p, value in layer.parameters().items():
            setattr(layer, p, rng.normal(0, 0.8, value.shape).astype(dtype))
    return model


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_model_of_every_activation_matches_torch(kernel_name, dtype, torch, rng):
    from tests.helpers.torch_twin import torch_input_gradient, torch_twin
    model = every_activation_net(dtype)
    x = rng.normal(0, 2, (3, 2, 6, 5)).astype(dtype)
    targets = [0, 2, 1]
    scores = model.forward(x)
    seed = np.eye(3, dtype=dtype)[targets]
    grad = model.backward(seed)
    want_scores, want_grad = torch_input_gradient(torch_twin(model), x.astype(np.float64),
                                                  targets)
    assert scores.dtype == grad.dtype == dtype
    assert_close(scores, want_scores, dtype, what="scores")
    if dtype == np.float32:
        assert_close(grad, want_grad, dtype, what="input gradient")
    else:
        # torch's hardsigmoid multiplies by float32(1/6) (see above): 3e-8 relative on the
        # part of the gradient that passes through it
        np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-7 * np.abs(want_grad).max())
        numerical = numerical_input_gradient(model.forward, x[:1], seed[:1])
        model.forward(x[:1])
        np.testing.assert_allclose(model.backward(seed[:1]), numerical, rtol=1e-6, atol=1e-8)


def test_the_rule_reaches_every_activation(rng):
    model = every_activation_net()
    x = rng.normal(0, 2, (2, 2, 6, 5))
    g = rng.standard_normal((2, 3))
    model.forward(x)
    maps = {}
    for rule in ("gradient", "guided", "deconvnet"):
        maps[rule] = model.backward(g, rule=rule)
        h = g                                             # by hand, layer by layer
        for layer in reversed(model.layers):
            h = layer.backward(h, rule=rule) if isinstance(layer, Activation) \
                else layer.backward(h)
        np.testing.assert_array_equal(maps[rule], h)
    assert not np.allclose(maps["guided"], maps["gradient"])
    assert not np.allclose(maps["deconvnet"], maps["guided"])


def test_graph_backward_takes_rule_and_its_old_name(rng):
    model = every_activation_net()
    x = rng.normal(0, 2, (1, 2, 6, 5))
    g = np.ones((1, 3))
    model.forward(x)
    for rule in ("gradient", "guided", "deconvnet"):
        want = model.backward(g, rule=rule)
        np.testing.assert_array_equal(model.backward(g, rule), want)       # positional
        np.testing.assert_array_equal(model.backward(g, relu_rule=rule), want)
    with pytest.raises(ValueError, match=r"Sequential.backward: unknown rule 'x'; valid rules "
                                         r"are \('gradient', 'deconvnet', 'guided'\)"):
        model.backward(g, rule="x")
    with pytest.raises(ValueError, match=r"Sequential.backward: unknown relu_rule 'x'"):
        model.backward(g, relu_rule="x")
    with pytest.raises(TypeError, match=r"Sequential.backward: got both rule='guided' and "
                                        r"relu_rule='deconvnet'; relu_rule is the old name"):
        model.backward(g, rule="guided", relu_rule="deconvnet")


@pytest.mark.parametrize("dtype", DTYPES)
def test_infer_gives_forward_and_keeps_nothing(dtype, rng):
    x = rng.uniform(-8, 8, (2, 3, 4, 5)).astype(dtype)
    for name, (make, _, _) in ACTIVATIONS.items():
        layer = make()
        want = layer.forward(x)
        np.testing.assert_array_equal(layer.infer(x), want, err_msg=name)
        with pytest.raises(ValueError, match="backward called before forward"):
            layer.backward(want)
    model = every_activation_net(dtype)
    x = rng.normal(0, 2, (3, 2, 6, 5)).astype(dtype)
    np.testing.assert_array_equal(model.predict(x), model.forward(x))


# ----------------------------------------------------------------------------- config, bad input

def test_config_round_trips_and_repr():
    layers = [ReLU(), ReLU6(), Hardtanh(), Hardtanh(-2, 0.5), Hardswish(), Hardsigmoid(),
              SiLU(), Sigmoid()]
    for layer in layers:
        config = layer.config()
        assert LAYER_TYPES[config["type"]] is type(layer)
        copy = layer_from_config(config)
        assert type(copy) is type(layer) and copy.config() == config
    assert ReLU6().config() == {"type": "ReLU6"}
    assert Hardtanh(-2, 0.5).config() == {"type": "Hardtanh", "min_val": -2.0, "max_val": 0.5}
    assert repr(Hardtanh()) == "Hardtanh(min_val=-1.0, max_val=1.0)"
    assert repr(ReLU6()) == "ReLU6()" and isinstance(ReLU6(), Hardtanh)
    for name in ("ReLU6", "Hardtanh", "Hardswish", "Hardsigmoid", "SiLU", "Sigmoid",
                 "Activation"):
        assert name in minicnn.__all__ and getattr(minicnn, name) is getattr(minicnn.engine,
                                                                               name)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"Hardtanh: min_val must be less than max_val, got "
                                         r"min_val=1.0, max_val=-1.0"):
        Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match=r"Hardtanh: min_val must be less than max_val, got "
                                         r"min_val=2, max_val=2"):
        Hardtanh(2, 2)
    with pytest.raises(ValueError, match=r"Hardtanh: max_val must be finite, got inf"):
        Hardtanh(0, float("inf"))
    with pytest.raises(TypeError, match=r"Hardtanh: min_val must be a number, got '0'"):
        Hardtanh("0", 1)
    with pytest.raises(TypeError, match=r"Hardtanh: min_val must be a number, got True"):
        Hardtanh(True, 2)
    with pytest.raises(ValueError, match=r"bad config for Hardtanh: .*min_val must be a number"):
        layer_from_config({"type": "Hardtanh", "min_val": [3], "max_val": 1})
    with pytest.raises(ValueError, match=r"bad config for ReLU6: .*unexpected keyword"):
        layer_from_config({"type": "ReLU6", "min_val": 0.0})
    layer = SiLU()
    layer.name = "features.5"
    with pytest.raises(TypeError, match=r"SiLU 'features.5': input must have dtype float32 or "
                                        r"float64, got int64"):
        layer.forward(np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"SiLU 'features.5': backward called before forward"):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"SiLU 'features.5': grad_out must have the forward "
                                         r"output's shape \(2, 3\), got \(3, 2\)"):
        layer.backward(np.ones((3, 2)))
