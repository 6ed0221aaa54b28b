"""The LRP rules by their definitions, layer by layer, and the messages for rules that do not
apply. Each rule of a layer with weights is written out here with NumPy on one Linear layer
(signed inputs, so the x+ / x- split matters); the other layers' rules on graphs made for
them: the product of squeeze-and-excitation (the signal takes all), an addition (in
proportion), a BatchNorm2d that follows no convolution (its own rule), LRN and the layers that
only move values (relevance passes)."""
import numpy as np
import pytest

import minicnn
from minicnn import saliency as S
from minicnn.engine.layers import Conv2d, Linear
from tests.helpers.relevance import random_images, seed_of


def _linear(seed=0):
    layer = Linear(6, 4)
    rng = np.random.default_rng(seed)
    layer.weight, layer.bias = rng.normal(size=(4, 6)), rng.normal(size=4) * 0.3
    model = minicnn.Sequential([("fc", layer)])
    x = rng.normal(size=(3, 6))
    return model, layer, x


def _stab(d, e):
    return d + e * np.where(d >= 0, 1, -1)


def _by_definition(rule, x, w, b, R):
    """The rule written out for one dense layer z = x w^T + b: R (N, O) -> R_in (N, I)."""
    xp, xn, wp, wn = np.maximum(x, 0), np.minimum(x, 0), np.maximum(w, 0), np.minimum(w, 0)
    bp, bn = np.maximum(b, 0), np.minimum(b, 0)
    if isinstance(rule, S.Epsilon):
        c = R / _stab(x @ w.T + b, rule.epsilon)
        return x * (c @ w)
    if isinstance(rule, (S.ZPlus, S.AlphaBeta)):
        a, be = (1, 0) if isinstance(rule, S.ZPlus) else (rule.alpha, rule.beta)
        cp = R / _stab(xp @ wp.T + xn @ wn.T + bp, rule.stabilizer)
        cn = R / _stab(xp @ wn.T + xn @ wp.T + bn, rule.stabilizer)
        return a * (xp * (cp @ wp) + xn * (cp @ wn)) - be * (xp * (cn @ wn) + xn * (cn @ wp))
    if isinstance(rule, S.Gamma):
        g, z = rule.gamma, x @ w.T + b
        up, down = w + g * wp, w + g * wn
        cp = np.where(z > 0, R, 0) / _stab(xp @ up.T + xn @ down.T + b + g * bp, rule.stabilizer)
        cn = np.where(z < 0, R, 0) / _stab(xp @ down.T + xn @ up.T + b + g * bn, rule.stabilizer)
        return xp * (cp @ up) + xn * (cp @ down) + xp * (cn @ down) + xn * (cn @ up)
    if isinstance(rule, S.ZBox):
        lo, hi = np.broadcast_to(rule.low, x.shape), np.broadcast_to(rule.high, x.shape)
        c = R / _stab(x @ w.T - lo @ wp.T - hi @ wn.T, rule.stabilizer)
        return x * (c @ w) - lo * (c @ wp) - hi * (c @ wn)
    if isinstance(rule, (S.Flat, S.WSquare)):
        v = np.ones_like(w) if isinstance(rule, S.Flat) else w * w
        c = R / _stab(np.ones_like(x) @ v.T, rule.stabilizer)
        return c @ v
    raise AssertionError(rule)


@pytest.mark.parametrize("rule", [S.Epsilon(0.0), S.Epsilon(0.3), S.ZPlus(), S.AlphaBeta(2, 1),
                                  S.AlphaBeta(1.5, 0.5), S.Gamma(0.25), S.Gamma(2.0),
                                  S.ZBox(-2.0, 2.5), S.Flat(), S.WSquare()],
                         ids=lambda r: S.describe_rule(r))
def test_each_rule_of_a_layer_with_weights_is_its_definition(rule):
    model, layer, x = _linear()
    scores = model.forward(x)
    R = seed_of(scores, [0, 1, 3])
    got = model.backward(R, rule=rule)
    np.testing.assert_allclose(got, _by_definition(rule, x, layer.weight, layer.bias, R),
                               rtol=1e-12, atol=1e-14)


def _se_net(seed=0):
    """A squeeze-and-excitation block: features (N, 4, 6, 6) scaled per channel by a sigmoid
    gate computed from their mean, then a classifier."""
    nodes = [("conv", Conv2d(3, 4, 3, padding=1), "input"), ("act", minicnn.Hardswish(), "conv"),
             ("squeeze", minicnn.AdaptiveAvgPool2d(1), "act"), ("fc1", Conv2d(4, 2, 1), "squeeze"),
             ("relu", minicnn.ReLU(), "fc1"), ("fc2", Conv2d(2, 4, 1), "relu"),
             ("gate", minicnn.Sigmoid(), "fc2"), ("scale", minicnn.Mul(), ("gate", "act")),
             ("pool", minicnn.AdaptiveAvgPool2d(1), "scale"), ("flat", minicnn.Flatten(), "pool"),
             ("out", Linear(4, 3), "flat")]
    model = minicnn.Graph(nodes).astype(np.float64)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.5, size=value.shape))
    return model


def test_at_a_gate_the_signal_takes_all_and_the_gate_nothing():
    model, x = _se_net(), random_images((2, 3, 6, 6), 1)
    relevance, ledger = S.lrp_ledger(model, x, [0, 2], rule="epsilon")
    for name in ("gate", "fc2", "relu", "fc1", "squeeze"):          # the gate's branch
        assert not model.gradient_at(name).any(), name
    scale = next(e for e in ledger if e["name"] == "scale")
    np.testing.assert_allclose(scale["relevance_in"], scale["relevance_out"], rtol=1e-12)
    np.testing.assert_allclose(model.gradient_at("act"), model.gradient_at("scale"), rtol=1e-15)


def test_a_product_of_two_full_inputs_has_no_gate_and_says_so():
    nodes = [("a", Conv2d(3, 2, 1), "input"), ("b", Conv2d(3, 2, 1), "input"),
             ("mul", minicnn.Mul(), ("a", "b")), ("flat", minicnn.Flatten(), "mul"),
             ("out", Linear(2 * 4 * 4, 2), "flat")]
    model = minicnn.Graph(nodes).astype(np.float64)
    x = random_images((1, 3, 4, 4), 2)
    model.forward(x)
    with pytest.raises(ValueError, match="Mul 'mul': LRP passes a product's relevance to its "
                                         "signal and none to its gate, the input that was "
                                         "broadcast; here both inputs have the output's shape"):
        model.backward(np.ones((1, 2)), rule=S.Epsilon())
    model.backward(np.ones((1, 2)))                              # the gradient still goes


def test_an_addition_shares_in_proportion_and_a_lone_batchnorm_has_its_own_rule():
    nodes = [("a", Conv2d(3, 2, 3, padding=1), "input"), ("b", Conv2d(3, 2, 1), "input"),
             ("add", minicnn.Add(), ("a", "b")), ("bn", minicnn.BatchNorm2d(2), "add"),
             ("relu", minicnn.ReLU(), "bn"), ("flat", minicnn.Flatten(), "relu"),
             ("out", Linear(2 * 5 * 5, 2), "flat")]
    model = minicnn.Graph(nodes).astype(np.float64)
    rng = np.random.default_rng(3)
    bn = model["bn"]
    bn.weight, bn.bias = rng.normal(size=2), rng.normal(size=2)
    bn.running_mean, bn.running_var = rng.normal(size=2), rng.random(2) + 0.5
    x = random_images((2, 3, 5, 5), 4)
    model.forward(x)
    scores = model.activation(-1)
    model.backward(seed_of(scores, [0, 1]), rule=S.Epsilon(1e-6))
    R_bn = model.gradient_at("bn")
    scale, shift = bn.scale_shift()
    y = model.activation("bn")
    c = R_bn / _stab(y, 1e-6)
    R_add = model.activation("add") * scale[:, None, None] * c
    np.testing.assert_allclose(model.gradient_at("add"), R_add, rtol=1e-12)
    share = R_add / _stab(model.activation("add"), 1e-6)
    np.testing.assert_allclose(model.gradient_at("a"), model.activation("a") * share, rtol=1e-12)
    np.testing.assert_allclose(model.gradient_at("b"), model.activation("b") * share, rtol=1e-12)
    entry = next(e for e in model.ledger() if e["name"] == "bn")
    np.testing.assert_allclose(entry["batchnorm"], (c * shift[:, None, None]).sum(axis=(1, 2, 3)),
                               rtol=1e-12)


def test_lrn_and_the_layers_that_move_values_pass_relevance_through():
    nodes = [("pad", minicnn.ZeroPad2d((1, 0, 2, 1)), "input"), ("conv", Conv2d(3, 4, 3), "pad"),
             ("lrn", minicnn.LRN(3), "conv"), ("relu", minicnn.ReLU(), "lrn"),
             ("shuffle", minicnn.ChannelShuffle(2), "relu"),
             ("left", minicnn.ChannelSlice(0, 2), "shuffle"),
             ("right", minicnn.ChannelSlice(2, 4), "shuffle"),
             ("cat", minicnn.Concat(), ("right", "left")), ("flat", minicnn.Flatten(), "cat"),
             ("drop", minicnn.Dropout(0.2), "flat"), ("out", Linear(4 * 6 * 4, 3), "drop")]
    model = minicnn.Graph(nodes).astype(np.float64)
    x = random_images((2, 3, 5, 5), 5)
    relevance, ledger = S.lrp_ledger(model, x, [1, 2], rule="epsilon")
    for entry in ledger:
        if entry["name"] in ("out", "conv", "input"):
            continue
        assert entry["rule"] == "pass", entry["name"]
        np.testing.assert_allclose(entry["relevance_in"], entry["relevance_out"], rtol=1e-12)
    np.testing.assert_array_equal(model.gradient_at("conv"), model.gradient_at("lrn"))
    # under the flat rule the padding's zeros get a share, cropped off with them
    relevance, ledger = S.lrp_ledger(model, x, [1, 2], rule={"conv": S.Flat(),
                                                             "Linear": S.Epsilon()})
    pad = next(e for e in ledger if e["name"] == "pad")
    assert np.all(np.abs(pad["residual"]) > 1e-6)


# ============================================================================ bad input

@pytest.fixture
def net():
    from tests.helpers.nets import small_net
    model = small_net()
    model.forward(random_images((1, 3, 23, 23), 6))
    return model


def test_a_rule_that_does_not_apply_names_the_layer_the_rule_and_what_applies(net):
    with pytest.raises(ValueError, match=r"MaxPool2d '2': the LRP rule gamma 0.25 does not apply "
                                         r"to this layer; what applies here: Pass \(winner takes "
                                         r"all: each window's relevance goes to the input the max "
                                         r"came from\)"):
        net.backward(np.ones((1, 5)), rule={"2": S.Gamma(), "Conv2d": S.ZPlus(),
                                            "Linear": S.Epsilon()})
    with pytest.raises(ValueError, match=r"ReLU '1': the LRP rule epsilon 1e-06 does not apply"):
        net.backward(np.ones((1, 5)), rule={"ReLU": S.Epsilon(), "Conv2d": S.ZPlus(),
                                            "Linear": S.Epsilon()})
    with pytest.raises(ValueError, match=r"Conv2d '0': the LRP rule pass does not apply to this "
                                         r"layer; what applies here: Epsilon \("):
        net.backward(np.ones((1, 5)), rule=S.Pass())


def test_the_box_rule_without_bounds_says_what_it_needs(net):
    with pytest.raises(ValueError, match=r"Conv2d '0': the rule z-box needs the input's bounds, "
                                         r"ZBox\(low, high\)"):
        net.backward(np.ones((1, 5)), rule=S.EpsilonGammaBox())   # small_net has no preprocessing
    with pytest.raises(ValueError, match=r"ZBox: bounds of shape \(2,\) do not fit"):
        net.backward(np.ones((1, 5)), rule=S.EpsilonGammaBox([0.0, 0.0], [1.0, 1.0]))


def test_a_mapping_that_leaves_a_layer_without_a_rule_says_which(net):
    with pytest.raises(ValueError, match=r"your mapping: no rule for nodes '7' \(Linear\), "
                                         r"'10' \(Linear\); map its name or its layer type"):
        net.backward(np.ones((1, 5)), rule={"Conv2d": S.ZPlus()})
    with pytest.raises(ValueError, match=r"your mapping: key 'conv9' is neither a node of the "
                                         r"model nor a layer type in it"):
        net.backward(np.ones((1, 5)), rule={"conv9": S.ZPlus()})
    with pytest.raises(TypeError, match=r"the rule for 'Conv2d' must be an LRP rule"):
        net.backward(np.ones((1, 5)), rule={"Conv2d": "z-plus"})


def test_an_unknown_composite_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown LRP rule or composite 'epsilon-pluss': "
                                         "composites are epsilon-plus, epsilon-gamma-box, "
                                         "epsilon-alpha2-beta1, epsilon-plus-flat; rules"):
        S.resolve_rule("epsilon-pluss")
    with pytest.raises(TypeError, match="lrp: rule must be a name"):
        S.lrp(minicnn.Sequential([Linear(2, 2)]), np.zeros((1, 1, 1, 2)), rule=3)


def test_rule_parameters_are_checked():
    with pytest.raises(ValueError, match="AlphaBeta: alpha - beta must be 1"):
        S.AlphaBeta(2, 2)
    with pytest.raises(ValueError, match="Epsilon: epsilon must be >= 0"):
        S.Epsilon(-1)
    with pytest.raises(TypeError, match="Gamma: gamma must be a finite number"):
        S.Gamma("big")
    with pytest.raises(ValueError, match="ZBox: low must not exceed high"):
        S.ZBox(1.0, 0.0)
    with pytest.raises(ValueError, match="ZBox: give both bounds or neither"):
        S.ZBox(1.0)


def test_deeplift_needs_images_stacked_over_references(net):
    with pytest.raises(ValueError, match="the rescale rule needs the forward pass on the images "
                                         r"stacked over their references \(2N rows\), got a "
                                         "batch of 1"):
        net.backward(np.ones((1, 5)), rule=S.Rescale())


def test_a_layer_minicnn_does_not_know_has_no_lrp_rule():
    class Double(minicnn.Layer):
        def forward(self, x):
            self._remember(x, 2 * x)
            return 2 * x

        def backward(self, grad_out):
            return 2 * self._check_grad(grad_out)

    model = minicnn.Sequential([Linear(3, 3), Double(), Linear(3, 2)])
    model.forward(np.ones((1, 3), np.float32))
    model.backward(np.ones((1, 2), np.float32))                 # the gradient works
    with pytest.raises(ValueError, match="Double '1': the LRP rule epsilon 1e-06 does not apply "
                                         "to this layer; what applies here: none: minicnn has no "
                                         "LRP rule for this layer"):
        model.backward(np.ones((1, 2), np.float32), rule=S.Epsilon())
