"""Guided backprop and deconvnet on networks with activations other than ReLU.

The decisions under test (``minicnn/engine/layers/activations.py``): rectifiers (ReLU6,
Hardswish, SiLU) take the rules as ReLU does, gates (Sigmoid, Hardsigmoid) pass the gradient.
So: a ReLU6 network gives a ReLU network's maps while no unit reaches 6, and other maps once
units saturate; on a network whose activations are ReLUs and gates minicnn equals Captum (which
hooks nn.ReLU only); on a ReLU6 network Captum's guided backprop is the plain gradient and
minicnn's is not. And the rule's old keyword, relu_rule=, still works."""
import numpy as np
import pytest

from minicnn import (AdaptiveAvgPool2d, Conv2d, Flatten, Graph, Hardsigmoid, Hardswish, Linear,
                     MaxPool2d, Mul, ReLU, ReLU6, Sequential, Sigmoid, SiLU)
from minicnn import saliency
from minicnn.saliency import backprop, deconvnet, gradient, guided_backprop
from tests.helpers.compare import assert_relative
from tests.helpers.torch_twin import captum, torch_twin

TARGETS = [1, 0, 3]
METHODS = {"gradient": gradient, "guided": guided_backprop, "deconvnet": deconvnet}


def with_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for p, value in layer.parameters().items():
            setattr(layer, p, rng.normal(0, 0.5, value.shape))
    return model


def chain(act):
    """Conv/act/max-pool x2, Linear/act/Linear, float64: (N, 3, 12, 12) -> (N, 4). The
    pre-activations are the nodes "0", "3" and "7"."""
    return with_weights(Sequential([
        Conv2d(3, 6, 3, padding=1), act(), MaxPool2d(2),
        Conv2d(6, 8, 3, stride=2, padding=1), act(), MaxPool2d(3),
        Flatten(), Linear(8, 16), act(), Linear(16, 4)]))


PRE = ["0", "3", "7"]


def test_relu6_gives_relus_maps_until_units_saturate():
    relu, relu6 = chain(ReLU), chain(ReLU6)
    x = np.random.default_rng(1).normal(size=(3, 3, 12, 12))
    small = 0.1 * x
    relu6.forward(small)
    assert max(relu6.activation(k).max() for k in PRE) < 6          # no unit saturates
    for method in METHODS.values():
        np.testing.assert_array_equal(method(relu6, small, TARGETS), method(relu, small, TARGETS))

    large = 5 * x
    for method in (gradient, guided_backprop):
        assert not np.allclose(method(relu6, large, TARGETS), method(relu, large, TARGETS))
    # where a unit saturated (its input >= 6) guided backprop sends nothing back through it,
    # where a ReLU would have
    for model in (relu6, relu):
        model.forward(large)
        model.backward(np.eye(4, dtype=large.dtype)[TARGETS], rule="guided")
    saturated = {k: relu6.activation(k) >= 6 for k in PRE}
    assert sum(s.sum() for s in saturated.values()) > 100
    for k in PRE:
        assert not relu6.gradient_at(k)[saturated[k]].any()
    assert any(relu.gradient_at(k)[saturated[k]].any() for k in PRE)


def se_net(gate):
    """Conv -> ReLU -> squeeze-and-excitation with ``gate`` -> Mul -> conv -> ReLU -> pool ->
    Linear, float64: a network whose activations are ReLUs and a gate."""
    return with_weights(Graph([
        ("conv", Conv2d(3, 6, 3, padding=1), "input"), ("relu", ReLU(), "conv"),
        ("se.pool", AdaptiveAvgPool2d(1), "relu"), ("se.fc1", Conv2d(6, 3, 1), "se.pool"),
        ("se.relu", ReLU(), "se.fc1"), ("se.fc2", Conv2d(3, 6, 1), "se.relu"),
        ("se.gate", gate(), "se.fc2"), ("se.mul", Mul(), ("se.gate", "relu")),
        ("conv2", Conv2d(6, 5, 3, stride=2), "se.mul"), ("relu2", ReLU(), "conv2"),
        ("pool", AdaptiveAvgPool2d(2), "relu2"), ("flatten", Flatten(), "pool"),
        ("fc", Linear(20, 4), "flatten")]), seed=2)


@pytest.mark.parametrize("gate", [Sigmoid, Hardsigmoid])
@pytest.mark.parametrize("ours, theirs", [(guided_backprop, "GuidedBackprop"),
                                          (deconvnet, "Deconvolution")])
def test_relus_and_gates_equal_captum(captum_attr, gate, ours, theirs):
    model = se_net(gate)
    x = np.random.default_rng(3).normal(0, 2, size=(3, 3, 9, 9))
    want = captum(getattr(captum_attr, theirs), torch_twin(model), x, target=TARGETS)
    got = ours(model, x, TARGETS)
    if gate is Hardsigmoid:
        # torch's hardsigmoid backward multiplies by float32(1/6) (tests/engine/
        # test_activations.py): 3e-8 relative on what passes through the gate
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 * np.abs(want).max())
    else:
        assert_relative(got, want, rtol=1e-9)


@pytest.mark.parametrize("act", [ReLU6, Hardswish, SiLU])
def test_captum_leaves_other_rectifiers_alone_and_minicnn_does_not(captum_attr, act):
    """Captum hooks nn.ReLU only: on a network of ReLU6 (Hardswish, SiLU) its guided backprop
    and deconvnet are the plain gradient; minicnn applies the rules to these rectifiers."""
    model = chain(act)
    x = 5 * np.random.default_rng(4).normal(size=(3, 3, 12, 12))
    twin = torch_twin(model)
    plain = gradient(model, x, TARGETS)
    for theirs, ours in (("GuidedBackprop", guided_backprop), ("Deconvolution", deconvnet)):
        assert_relative(captum(getattr(captum_attr, theirs), twin, x, target=TARGETS), plain,
                        rtol=1e-9)
        assert not np.allclose(ours(model, x, TARGETS), plain)


def test_backprop_takes_rule_and_its_old_name():
    model = chain(SiLU)
    x = np.random.default_rng(5).normal(size=(2, 3, 12, 12))
    for rule in ("gradient", "guided", "deconvnet"):
        want, scores, targets = backprop(model, x, [0, 2], rule=rule)
        np.testing.assert_array_equal(backprop(model, x, [0, 2], rule)[0], want)
        np.testing.assert_array_equal(backprop(model, x, [0, 2], relu_rule=rule)[0], want)
        np.testing.assert_array_equal(METHODS[rule](model, x, [0, 2]), want)
    with pytest.raises(ValueError, match=r"unknown relu_rule 'smooth'; valid rules are"):
        backprop(model, x, 0, relu_rule="smooth")
    with pytest.raises(ValueError, match=r"unknown rule 'smooth'; valid rules are"):
        backprop(model, x, 0, rule="smooth")


def test_shared_passes_on_other_activations_equal_the_methods():
    """``attribute`` runs one forward and a backward per rule: on Hardswish and SiLU units the
    results are the methods' own."""
    for act in (Hardswish, SiLU):
        model = chain(act)
        x = np.random.default_rng(6).normal(size=(2, 3, 12, 12))
        names = ["gradient", "guided_backprop", "deconvnet", "input_x_gradient"]
        _, _, results = saliency.attribute(model, x, names, target=[3, 1])
        for name in names:
            np.testing.assert_array_equal(results[name],
                                          saliency.get_method(name)(model, x, [3, 1]))
