"""The paper's teaching points, as the examples in examples/teach_*.py compute them."""
import importlib.util
from pathlib import Path

import numpy as np

import minicnn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_cnn(seed=0):
    rng = np.random.default_rng(seed)
    model = minicnn.Sequential([
        minicnn.Conv2d(3, 8, 3, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(2),
        minicnn.Conv2d(8, 8, 3, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(2),
        minicnn.Flatten(), minicnn.Linear(8 * 4 * 4, 32), minicnn.ReLU(), minicnn.Linear(32, 4)])
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.4, size=value.shape))
    return model


def test_linear_model_saliency_is_exactly_the_weight():
    assert example("teach_linear").check() == 0.0


def test_first_order_taylor_is_exact_until_a_unit_switches():
    x0 = np.random.default_rng(1).normal(size=(1, 3, 16, 16))
    sizes = [10.0 ** -k for k in range(8, -2, -1)]
    rows = example("teach_taylor").taylor_table(random_cnn(), x0, target=2, sizes=sizes)
    no_switch = [err for _, err, switched in rows if not switched]
    switch = [err for _, err, switched in rows if switched]
    assert no_switch and switch, "expected both regimes over 1e-8..10"
    assert max(no_switch) < 1e-11                    # linear region: exact up to rounding
    assert max(switch) > 1e3 * max(no_switch)        # crossing kinks: a real error
    # switching is monotone in |d| along one direction: small steps stay in the region
    flags = [switched for _, _, switched in rows]
    assert flags == sorted(flags)


def test_a_step_can_lower_the_score_and_raise_the_probability():
    x0 = np.random.default_rng(2).normal(size=(1, 3, 16, 16))
    model = random_cnn(seed=3)
    c = int(np.argsort(model.forward(x0)[0])[-2])    # the runner-up: p_c well inside (0, 1)
    cos, d_score, d_prob = example("teach_softmax_vs_score").score_down_probability_up(model, x0, c)
    assert d_score < 0 < d_prob
    assert cos < 0.999
