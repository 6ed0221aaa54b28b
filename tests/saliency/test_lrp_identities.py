"""LRP's identities, which need no other library, float64:

- LRP-0 is input x gradient on a ReLU network (chains and graphs: additions, concatenations,
  average and max pools), each image's relevance x * dS_c/dx;
- with zero biases and every epsilon and stabiliser -> 0, the input's relevance adds up to the
  explained score (conservation, to 1e-9), under every rule that conserves (z-plus,
  alpha-beta, gamma, the box, flat and w^2 rules in the first layer);
- the ledger adds up: at every node, relevance in = passed on + what it says was absorbed,
  up to rounding, and the score = the input's relevance + all that was absorbed;
- the fast and the readable kernels give the same relevance, each image alone the same as in
  a batch, float32 the float64 result to float32's precision.
"""
import numpy as np
import pytest

import minicnn
from minicnn import saliency as S
from minicnn.engine.layers import Conv2d, Linear
from tests.helpers.nets import small_net
from tests.helpers.relevance import minicnn_relevance, random_images, seed_of

TINY = 1e-14


def _randomise(model, seed, zero_biases=False):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name, value in layer.parameters().items():
            new = rng.normal(0, 0.5, size=value.shape)
            if name == "bias" and zero_biases:
                new[:] = 0
            if name == "running_var":
                new = np.abs(new) + 0.5
            setattr(layer, name, new)
    return model


def residual_net(seed=0, zero_biases=False):
    """A graph with a skip connection (Add), a branch joined by Concat, max and average
    pools: (N, 3, 12, 12) -> (N, 4)."""
    nodes = [("conv1", Conv2d(3, 6, 3, padding=1), "input"), ("relu1", minicnn.ReLU(), "conv1"),
             ("pool1", minicnn.MaxPool2d(2), "relu1"),
             ("conv2", Conv2d(6, 6, 3, padding=1), "pool1"), ("relu2", minicnn.ReLU(), "conv2"),
             ("add", minicnn.Add(), ("pool1", "relu2")),
             ("left", Conv2d(6, 4, 1), "add"), ("right", Conv2d(6, 4, 3, padding=1), "add"),
             ("cat", minicnn.Concat(), ("left", "right")), ("relu3", minicnn.ReLU(), "cat"),
             ("gap", minicnn.AdaptiveAvgPool2d(1), "relu3"), ("flat", minicnn.Flatten(), "gap"),
             ("fc", Linear(8, 4), "flat")]
    return _randomise(minicnn.Graph(nodes).astype(np.float64), seed, zero_biases)


def chain_net(seed=0, zero_biases=False):
    return _randomise(small_net(seed), seed, zero_biases)


NETS = {"chain": (chain_net, (3, 3, 23, 23)), "graph": (residual_net, (3, 3, 12, 12))}


@pytest.mark.parametrize("kind", list(NETS))
def test_lrp_0_is_input_times_gradient_on_relu_networks(kind, kernel_name):
    make, shape = NETS[kind]
    model, x = make(1), random_images(shape, 2)
    targets = [0, 3, 1]
    relevance = S.lrp(model, x, targets, rule="lrp-0")
    np.testing.assert_allclose(relevance, x * S.gradient(model, x, targets), rtol=1e-10,
                               atol=1e-13 * np.abs(relevance).max())


RULES = {"lrp-0": S.Epsilon(0.0), "z-plus": S.ZPlus(TINY), "alpha2-beta1": S.AlphaBeta(2, 1, TINY),
         "alpha3-beta2": S.AlphaBeta(3, 2, TINY), "gamma": S.Gamma(0.5, TINY)}
FIRST = {"z-box": S.ZBox(-3.0, 3.0, TINY), "flat": S.Flat(TINY), "w-square": S.WSquare(TINY)}


@pytest.mark.parametrize("kind", list(NETS))
@pytest.mark.parametrize("name", list(RULES) + list(FIRST))
def test_with_zero_biases_the_input_relevance_adds_up_to_the_score(kind, name):
    make, shape = NETS[kind]
    model, x = make(3, zero_biases=True), random_images(shape, 4)
    if name in FIRST:                                        # a first-layer rule, then z-plus
        rule = S.Composite(first=(((Conv2d, Linear), FIRST[name]),), otherwise=S.ZPlus(TINY),
                           stabilizer=TINY)
    else:
        rule = S.Composite(otherwise=RULES[name], stabilizer=TINY)
    scores = model.forward(x)
    targets = scores.argmax(1)
    relevance = model.backward(seed_of(scores, targets), rule=rule)
    explained = scores[np.arange(len(x)), targets]
    created = sum(e["stabiliser"] for e in model.ledger()[:-1])
    assert not any(e["bias"].any() or e["batchnorm"].any() for e in model.ledger()[:-1])
    if name.startswith("alpha") and kind == "graph":
        # alpha-beta conserves only where an output has negative contributions too: the
        # graph's 1x1 convolution has a filter whose weights are all positive, so beta's
        # share of its outputs has nothing to go to, and the stabiliser's column says so
        assert np.any(np.abs(created) > 1e-3 * np.abs(explained))
        np.testing.assert_allclose(relevance.sum(axis=(1, 2, 3)), explained - created,
                                   rtol=1e-9)
        return
    np.testing.assert_allclose(relevance.sum(axis=(1, 2, 3)), explained, rtol=1e-9)


@pytest.mark.parametrize("kind", list(NETS))
@pytest.mark.parametrize("rule", ["epsilon-plus", "epsilon-alpha2-beta1", "epsilon-plus-flat",
                                  "gamma"])
def test_the_ledger_adds_up(kind, rule):
    make, shape = NETS[kind]
    model, x = make(5), random_images(shape, 6)
    relevance, ledger = S.lrp_ledger(model, x, None, rule=rule)
    score = model.forward(x).max(axis=1)
    assert ledger[0]["name"] == model.names[-1] and ledger[-1]["name"] == "input"
    np.testing.assert_allclose(ledger[0]["relevance_out"], score, rtol=1e-12)
    np.testing.assert_allclose(ledger[-1]["relevance_out"], relevance.sum(axis=(1, 2, 3)),
                               rtol=1e-12)
    absorbed = 0
    for entry in ledger[:-1]:
        assert np.all(np.abs(entry["residual"]) <= 1e-12 * np.abs(score)), entry["name"]
        absorbed = absorbed + entry["bias"] + entry["stabiliser"] + entry["batchnorm"]
    np.testing.assert_allclose(score - ledger[-1]["relevance_out"], absorbed, rtol=1e-9,
                               atol=1e-12)
    passes = [e for e in ledger if e["rule"] == "pass"]
    assert passes
    for e in passes:
        np.testing.assert_allclose(e["relevance_in"], e["relevance_out"], rtol=1e-12)


def test_the_bias_column_is_what_the_bias_took():
    """For one Linear layer under epsilon: sum_k R_k b_k / (z_k + e sign z_k)."""
    layer = Linear(5, 3)
    layer.astype(np.float64)
    model = minicnn.Sequential([layer])
    x = random_images((2, 5), 7)
    scores = model.forward(x)
    R = seed_of(scores, [0, 2])
    model.backward(R, rule=S.Epsilon(0.1))
    z = scores
    want = (R * layer.bias / (z + 0.1 * np.where(z >= 0, 1, -1))).sum(axis=1)
    np.testing.assert_allclose(model.ledger()[0]["bias"], want, rtol=1e-12)


def test_alpha1_beta0_is_z_plus():
    model, x = chain_net(8), random_images((2, 3, 23, 23), 9)
    np.testing.assert_array_equal(S.lrp(model, x, rule=S.AlphaBeta(1, 0)),
                                  S.lrp(model, x, rule=S.ZPlus()))


@pytest.mark.parametrize("rule", ["epsilon-plus", "epsilon-gamma-box", "epsilon-alpha2-beta1",
                                  "epsilon-plus-flat", "lrp-0"])
def test_fast_and_reference_kernels_batches_and_float32_agree(rule):
    model, x = chain_net(10), random_images((3, 3, 23, 23), 11)
    bounded = S.EpsilonGammaBox(-4.0, 4.0) if rule == "epsilon-gamma-box" else rule
    fast = S.lrp(model, x, [1, 2, 3], rule=bounded)
    with minicnn.use_kernels("reference"):
        reference = S.lrp(model, x, [1, 2, 3], rule=bounded)
    np.testing.assert_allclose(fast, reference, rtol=1e-10, atol=1e-13 * np.abs(fast).max())
    alone = S.lrp(model, x[1:2], 2, rule=bounded)
    np.testing.assert_allclose(alone[0], fast[1], rtol=1e-12, atol=1e-15)
    model32 = chain_net(10).astype(np.float32)
    single = S.lrp(model32, x.astype(np.float32), [1, 2, 3], rule=bounded)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, fast, rtol=1e-3, atol=1e-4 * np.abs(fast).max())


def test_lrp_in_attribute_shares_the_forward_pass_and_equals_the_method(monkeypatch):
    model, x = chain_net(12), random_images((2, 3, 23, 23), 13)
    calls = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda m, x: calls.append(len(x)) or forward(m, x))
    _, _, out = S.attribute(model, x, ["gradient", "lrp"], options={"lrp": {"rule": "z-plus"}})
    assert calls == [2]
    np.testing.assert_allclose(out["lrp"], S.lrp(model, x, rule="z-plus"), rtol=1e-12)
