"""Sequential: forward/backward, reading activations and gradients, config and state_dict,
dtypes, bad input, and ``import minicnn`` without PyTorch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.gradcheck import numerical_input_gradient
import minicnn
from minicnn import (AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d,
                     ReLU, Sequential)


def tiny_model(dtype=np.float32):
    return Sequential([
        ("features.0", Conv2d(2, 3, 3, padding=1, dtype=dtype, rng=0)),
        ("features.1", ReLU()),
        ("features.2", MaxPool2d(2)),
        ("features.3", Conv2d(3, 4, (2, 3), stride=(1, 2), dtype=dtype, rng=1)),
        ("features.4", ReLU()),
        ("avgpool", AdaptiveAvgPool2d((2, 2))),
        ("flatten", Flatten()),
        ("classifier.0", Linear(16, 6, dtype=dtype, rng=2)),
        ("classifier.1", ReLU()),
        ("classifier.2", Dropout(0.5)),
        ("classifier.3", Linear(6, 3, dtype=dtype, rng=3)),
    ])


def test_forward_backward_and_reading_by_index_and_name(kernel_name, rng):
    model = tiny_model(np.float64)
    x = rng.standard_normal((2, 2, 9, 10))
    scores = model(x)
    assert scores.shape == (2, 3)
    assert model.activation(-1) is scores
    assert model.activation("features.3").shape == model.activation(3).shape == (2, 4, 3, 2)
    np.testing.assert_array_equal(model.activation("features.1"),
                                  np.maximum(model.activation("features.0"), 0))
    one_hot = np.zeros_like(scores)
    one_hot[:, 1] = 1.0
    grad = model.backward(one_hot)
    assert grad.shape == x.shape
    assert model.gradient_at(-1) is one_hot
    # gradient at a layer's output, then the remaining layers by hand, gives the same answer
    g = model.gradient_at("features.2")
    for layer in reversed(model.layers[:3]):
        g = layer.backward(g)
    np.testing.assert_allclose(g, grad, rtol=1e-12)
    # stop_at returns the gradient w.r.t. that layer's output (Grad-CAM's input)
    g4 = model.gradient_at("features.4")
    np.testing.assert_array_equal(model.backward(one_hot, stop_at="features.4"), g4)
    with pytest.raises(ValueError, match=r"stopped before layer 'features.0'"):
        model.gradient_at("features.0")


def test_model_gradient_matches_finite_differences(kernel_name, rng):
    model = tiny_model(np.float64)
    x = rng.standard_normal((1, 2, 7, 8))
    direction = rng.standard_normal((1, 3))
    numerical = numerical_input_gradient(model.forward, x, direction)
    model.forward(x)
    np.testing.assert_allclose(model.backward(direction), numerical, rtol=1e-6, atol=1e-8)


def test_relu_rule_reaches_every_relu(rng):
    model = tiny_model(np.float64)
    x = rng.standard_normal((1, 2, 9, 10))
    g = np.ones((1, 3))
    model(x)
    for rule in ("gradient", "deconvnet", "guided"):
        grad = model.backward(g, relu_rule=rule)
        # by hand: every ReLU gets the rule
        h = g
        for layer in reversed(model.layers):
            h = layer.backward(h, rule=rule) if isinstance(layer, ReLU) else layer.backward(h)
        np.testing.assert_array_equal(grad, h)
    with pytest.raises(ValueError, match=r"unknown relu_rule 'x'; valid rules are"):
        model.backward(g, relu_rule="x")


def test_names_access_and_find():
    model = tiny_model()
    assert len(model) == 11 and model.names[0] == "features.0"
    assert model["classifier.3"] is model[-1] is model.layers[10]
    assert model.find(Conv2d) == ["features.0", "features.3"]
    assert model.find(ReLU)[-1] == "classifier.1"
    default = Sequential([Conv2d(1, 1, 1), ReLU()])
    assert default.names == ["0", "1"] and default["1"] is default[1]
    with pytest.raises(KeyError, match=r"no layer named 'features.9'"):
        model["features.9"]
    with pytest.raises(IndexError, match=r"layer index 11 out of range for 11 layers"):
        model[11]
    with pytest.raises(ValueError, match=r"layer names must be unique"):
        Sequential([("a", ReLU()), ("a", ReLU())])
    relu = ReLU()
    with pytest.raises(ValueError, match=r"same layer object appears twice"):
        Sequential([relu, relu])
    with pytest.raises(TypeError, match=r"item 0 must be a Layer or a \(name, Layer\) pair"):
        Sequential(["conv"])


def test_reading_before_a_pass():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"no forward pass yet"):
        model.activation(0)
    with pytest.raises(ValueError, match=r"backward: called before forward"):
        model.backward(np.ones((1, 3), np.float32))
    model(np.ones((1, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"no backward pass since the last forward"):
        model.gradient_at(0)


def test_config_round_trip_and_state_dict(rng):
    model = tiny_model()
    config = json.loads(json.dumps(model.config()))
    assert config[0] == {"name": "features.0", "type": "Conv2d", "in_channels": 2,
                         "out_channels": 3, "kernel_size": [3, 3], "stride": [1, 1],
                         "padding": [1, 1], "bias": True}
    copy = Sequential.from_config(config)
    assert copy.names == model.names and copy.config() == model.config()
    assert sorted(model.state_dict()) == sorted([
        "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
        "classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"])
    copy.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    assert copy["features.0"].weight.dtype == np.float32  # cast to the model's dtype
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(copy(x), model(x))
    with pytest.raises(ValueError, match=r"unknown layer type 'Sigmoid'"):
        Sequential.from_config([{"name": "0", "type": "Sigmoid"}])


def test_load_state_dict_is_strict():
    model = tiny_model()
    state = dict(model.state_dict())
    missing = {k: v for k, v in state.items() if k != "features.3.bias"}
    with pytest.raises(ValueError, match=r"missing key 'features.3.bias' \(expected shape \(4,\)\)"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected key 'features.1.weight'"):
        model.load_state_dict({**state, "features.1.weight": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match=r"'classifier.0.weight' has shape \(16, 6\), expected \(6, 16\)"):
        model.load_state_dict({**state, "classifier.0.weight": np.ones((16, 6), np.float32)})
    with pytest.raises(TypeError, match=r"'features.0.bias' must hold floats, got int64"):
        model.load_state_dict({**state, "features.0.bias": np.ones(3, np.int64)})
    with pytest.raises(TypeError, match=r"'features.0.bias' must be a numpy.ndarray, got list"):
        model.load_state_dict({**state, "features.0.bias": [1.0, 2.0, 3.0]})


def test_float64_end_to_end_and_astype(rng):
    model = tiny_model(np.float32)
    x = rng.standard_normal((2, 2, 8, 8))
    scores = model(x)  # float64 input: computed in float64 with cached float64 weights
    assert scores.dtype == np.float64
    assert model.backward(np.ones_like(scores)).dtype == np.float64
    model64 = tiny_model(np.float32).astype(np.float64)
    assert all(v.dtype == np.float64 for v in model64.state_dict().values())
    np.testing.assert_allclose(model64(x), scores, rtol=1e-12)
    assert model64(x.astype(np.float32)).dtype == np.float32
    with pytest.raises(TypeError, match=r"Conv2d 'features.0': weights can be float32 or float64, got float16"):
        model.astype(np.float16)


def test_model_bad_input_messages():
    model = tiny_model()
    x = np.ones((1, 2, 8, 8), np.float32)
    with pytest.raises(TypeError, match=r"Sequential.forward: x must be a numpy.ndarray, got list"):
        model(x.tolist())
    for dtype in (np.int64, np.bool_, np.complex64, np.float16, object):
        with pytest.raises(TypeError, match=rf"x must have dtype float32 or float64, got {np.dtype(dtype)}"):
            model(x.astype(dtype))
    bad = x.copy()
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or inf \(first at index \(0, 1, 2, 3\): nan\)"):
        model(bad)
    bad[0, 1, 2, 3] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf"):
        model(bad)
    with pytest.raises(ValueError, match=r"Conv2d 'features.0': expected 2 input channels, got input of shape \(1, 3, 8, 8\)"):
        model(np.ones((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d 'features.0': input must be 4-D"):
        model(np.ones((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d 'features.3': kernel \(2, 3\) is larger than the padded input \(1, 1\)"):
        model(np.ones((1, 2, 3, 3), np.float32))
    model(x)
    with pytest.raises(ValueError, match=r"grad_scores must have the scores' shape \(1, 3\), got \(1, 4\)"):
        model.backward(np.ones((1, 4), np.float32))
    with pytest.raises(TypeError, match=r"Sequential.backward: grad_scores must have dtype float32 or float64, got int64"):
        model.backward(np.ones((1, 3), np.int64))


def test_avgpool_model_runs_in_both_kernels(rng):
    model = Sequential([Conv2d(1, 2, 3, dtype=np.float64), AvgPool2d(2, padding=1), Flatten(),
                        Linear(2 * 4 * 4, 2, dtype=np.float64)])
    x = rng.standard_normal((2, 1, 8, 8))
    g = rng.standard_normal((2, 2))
    with minicnn.use_kernels("reference"):
        s_ref, d_ref = model(x), model.backward(g)
    with minicnn.use_kernels("fast"):
        s_fast, d_fast = model(x), model.backward(g)
    np.testing.assert_allclose(s_fast, s_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d_fast, d_ref, rtol=1e-12, atol=1e-15)


def run_python(code, **env):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    environ = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, timeout=120)


def test_import_without_torch():
    code = """
import sys
sys.modules['torch'] = None  # any 'import torch' now raises ImportError
import numpy as np
import minicnn
m = minicnn.Sequential([minicnn.Conv2d(1, 2, 3), minicnn.ReLU(), minicnn.Flatten(), minicnn.Linear(18, 2)])
s = m(np.ones((1, 1, 5, 5), np.float32))
print(m.backward(np.ones_like(s)).shape)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 1, 5, 5)"


def test_environment_variable_selects_kernels():
    result = run_python("from minicnn.engine import kernels; print(kernels.active_name())",
                        MINICNN_KERNELS="reference")
    assert result.stdout.strip() == "reference", result.stderr
    result = run_python("import minicnn", MINICNN_KERNELS="cuda")
    assert "expected one of ('fast', 'reference'), got 'cuda'" in result.stderr
