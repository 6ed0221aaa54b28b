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
                         "padding": [1, 1], "bias": True, "groups": 1, "dilation": [1, 1]}
    copy = Sequential.from_config(config)
    assert copy.names == model.names and copy.config() == model.config()
    assert sorted(model.state_dict()) == sorted([
        "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
        "classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"])
    copy.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    assert copy["features.0"].weight.dtype == np.float32  # cast to the model's dtype
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(copy(x), model(x))
    with pytest.raises(ValueError, match=r"unknown layer type 'GELU'"):
        Sequential.from_config([{"name": "0", "type": "GELU"}])


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


def test_import_loads_no_compiler():
    """``import minicnn`` (and the command line's --help) stays quick: Numba, SciPy and
    matplotlib load when a kernel, a figure or a SciPy user first needs them."""
    result = run_python("import sys, minicnn; print(sorted(m for m in ('numba', 'scipy', "
                        "'matplotlib', 'torch') if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def residual_net(rng, dtype=np.float64):
    """input -> conv a -> relu -> (conv b -> relu -> conv c) + skip -> relu -> pool -> linear:
    the relu's output feeds both the block and the skip connection."""
    from minicnn import Add, Graph
    layers = {"a": Conv2d(2, 3, 3, padding=1, dtype=dtype, rng=rng),
              "b": Conv2d(3, 3, 3, padding=1, dtype=dtype, rng=rng),
              "c": Conv2d(3, 3, 1, dtype=dtype, rng=rng),
              "fc": Linear(3 * 2 * 2, 4, dtype=dtype, rng=rng)}
    return Graph([("a", layers["a"], "input"), ("a.relu", ReLU(), "a"),
                  ("block.b", layers["b"], "a.relu"), ("block.relu", ReLU(), "block.b"),
                  ("block.c", layers["c"], "block.relu"),
                  ("block.add", Add(), ("block.c", "a.relu")),   # the skip connection
                  ("block.relu.1", ReLU(), "block.add"), ("pool", MaxPool2d(2), "block.relu.1"),
                  ("flatten", Flatten(), "pool"), ("fc", layers["fc"], "flatten")])


def test_graph_backward_matches_finite_differences(rng):
    model = residual_net(rng)
    x = rng.standard_normal((2, 2, 4, 4))
    seed = rng.standard_normal((2, 4))
    model.forward(x)
    grad = model.backward(seed)
    numerical = numerical_input_gradient(model.forward, x, seed)
    np.testing.assert_allclose(grad, numerical, rtol=1e-7, atol=1e-8)


def test_gradients_add_where_a_value_feeds_two_nodes(rng):
    """The relu output feeds the block and the skip: its gradient is the sum of what comes
    back along each path, i.e. d(score)/d(block.add) (through the skip, unchanged) plus
    what comes back through the block's convolutions."""
    model = residual_net(rng)
    x = rng.standard_normal((1, 2, 4, 4))
    model.forward(x)
    model.backward(np.eye(4)[[1]])
    through_skip = model.gradient_at("block.add")
    through_block = model["block.b"].backward(model["block.relu"].backward(
        model["block.c"].backward(model.gradient_at("block.add"))))
    np.testing.assert_allclose(model.gradient_at("a.relu"), through_skip + through_block,
                               rtol=1e-12)
    assert model.consumers("a.relu") == ["block.b", "block.add"]


def test_graph_activations_gradients_blocks_and_stop_at(rng):
    model = residual_net(rng)
    x = rng.standard_normal((1, 2, 4, 4))
    scores = model.forward(x)
    np.testing.assert_array_equal(model.activation("block"), model.activation("block.relu.1"))
    assert model.index("block") == model.index("block.relu.1")
    g = model.backward(np.eye(4)[[2]])
    full = model.gradient_at("block")
    np.testing.assert_array_equal(model.backward(np.eye(4)[[2]], stop_at="block"), full)
    with pytest.raises(ValueError, match=r"stopped before layer 'a.relu'"):
        model.gradient_at("a.relu")
    assert g.shape == x.shape and scores.shape == (1, 4)
    assert "block.add" in repr(model) and "<- block.c, a.relu" in repr(model)


def test_a_node_the_output_does_not_read_gets_zero_gradient(rng):
    from minicnn import Graph
    conv = Conv2d(1, 1, 1, dtype=np.float64, rng=rng)
    model = Graph([("side", conv, "input"), ("flatten", Flatten(), "input"),
                   ("fc", Linear(4, 2, dtype=np.float64, rng=rng), "flatten")])
    x = rng.standard_normal((1, 1, 2, 2))
    model.forward(x)
    model.backward(np.ones((1, 2)))
    assert not model.gradient_at("side").any()


def test_graph_config_round_trip_and_weights_file(rng, tmp_path):
    from minicnn import Graph
    model = residual_net(rng)
    config = model.config()
    assert config[5] == {"name": "block.add", "type": "Add", "inputs": ["block.c", "a.relu"]}
    copy = Graph.from_config(config, dtype=np.float64).load_state_dict(model.state_dict())
    x = rng.standard_normal((2, 2, 4, 4))
    np.testing.assert_array_equal(copy.forward(x), model.forward(x))
    path = minicnn.save(model.astype(np.float32), tmp_path / "g.npz")
    loaded = minicnn.load(path)
    assert type(loaded) is Graph and loaded.inputs == model.inputs
    np.testing.assert_allclose(loaded.forward(x), model.forward(x), rtol=1e-6)
    chain = Sequential([Conv2d(1, 1, 1), Flatten()])          # chains keep the old format
    assert all("inputs" not in c for c in chain.config())
    assert type(minicnn.load(minicnn.save(chain, tmp_path / "c.npz"))) is Sequential


@pytest.mark.parametrize("edit, message", [
    (lambda c: c[2].update(inputs=["a.rellu"]), r"node 'block.b' reads 'a.rellu', which is no node"),
    (lambda c: c[2].update(inputs=["block.c"]),
     r"node 'block.b' reads 'block.c', which is a node that comes later \(a cycle"),
    (lambda c: c[2].update(inputs=["block.b"]), r"node 'block.b' reads 'block.b', which is itself"),
    (lambda c: c[2].update(inputs=[]), r"node 'block.b' reads nothing"),
    (lambda c: c[3].update(name="a"), r"node names must be unique, got 'a' twice"),
])
def test_bad_graph_files_name_the_node(rng, tmp_path, edit, message):
    import json
    model = residual_net(rng)
    path = minicnn.save(model.astype(np.float32), tmp_path / "g.npz")
    with np.load(path) as f:
        arrays = dict(f)
    config = json.loads(str(arrays["__architecture__"]))
    edit(config)
    arrays["__architecture__"] = np.array(json.dumps(config))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(minicnn.io.weights.WeightsFileError, match=message):
        minicnn.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("kind", ["residual", "concat", "dense"])
def test_branching_nets_match_torch(torch, kind):
    """Small random residual, concat and DenseNet-style nets in float64 against torch: scores,
    input gradients and the gradient at an inner node, to 1e-9."""
    nn = torch.nn
    torch.manual_seed(0)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.relu = nn.ReLU(inplace=True)
            self.inner = nn.Conv2d(4, 4, 3, padding=1)
            self.down = nn.Conv2d(4, 4, 1, stride=2)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            x = self.relu(self.bn(self.conv(x)))
            out = self.inner(x)
            out += x
            out = self.relu(out)
            out = self.down(out)
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))

    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.left, self.right = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 3, 3, padding=1)
            self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.head = nn.Linear(5 * 3 * 3, 3)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            x = torch.cat([self.left(x), nn.functional.relu(self.right(x))], dim=1)
            return self.head(self.pool(x).view(x.size(0), -1))

    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(3 + 2 * i), nn.ReLU(),
                                                      nn.Conv2d(3 + 2 * i, 2, 3, padding=1))
                                        for i in range(3))
            self.head = nn.Linear(9, 3)

        def forward(self, x):
            features = [x]
            for layer in self.layers:
                features.append(layer(torch.cat(features, 1)))
            pooled = nn.functional.adaptive_avg_pool2d(torch.cat(features, 1), (1, 1))
            return self.head(torch.flatten(pooled, 1))

    net = {"residual": Residual, "concat": Branches, "dense": Dense}[kind]().double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    scores_t = net(xt)
    scores_t[[0, 1], [2, 0]].sum().backward()
    for fold in (True, False):
        model = minicnn.from_torch(net, fold_batchnorm=fold)
        scores = model.forward(x)
        seed = np.zeros_like(scores)
        seed[[0, 1], [2, 0]] = 1
        grad = model.backward(seed)
        np.testing.assert_allclose(scores, scores_t.detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    numerical = numerical_input_gradient(model.forward, x[:1], seed[:1])
    model.forward(x[:1])
    np.testing.assert_allclose(model.backward(seed[:1]), numerical, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- predict

class PassThrough(minicnn.Layer):
    """A user's own layer that hands its input on unchanged (as Dropout does)."""

    def forward(self, x):
        self._remember(x, x)
        return x

    def backward(self, grad_out):
        return grad_out


def overwrite_traps(rng, dtype=np.float64):
    """A graph in which an in-place ReLU at the wrong place would change a value that another
    node still reads: a conv read by a ReLU and an Add; two Flatten views of one value, one
    of them under a ReLU; a user's pass-through layer under a ReLU; a ReLU on the input."""
    from minicnn import Add, Graph
    conv = lambda c, f: Conv2d(c, f, 3, padding=1, dtype=dtype, rng=rng)  # noqa: E731
    return Graph([
        ("relu_in", ReLU(), "input"),
        ("a", conv(2, 3), "relu_in"), ("a.relu", ReLU(), "a"),
        ("add", Add(), ("a.relu", "a")),                        # "a" read twice
        ("b", conv(3, 3), "add"), ("b.same", PassThrough(), "b"), ("b.relu", ReLU(), "b.same"),
        ("add2", Add(), ("b.relu", "b")),                       # "b" read through b.same too
        ("pool", MaxPool2d(2), "add2"),
        ("flat1", Flatten(), "pool"), ("flat1.relu", ReLU(), "flat1"),
        ("flat2", Flatten(), "pool"),                           # a second view of "pool"
        ("fc1", Linear(12, 4, dtype=dtype, rng=rng), "flat1.relu"),
        ("fc2", Linear(12, 4, dtype=dtype, rng=rng), "flat2"),
        ("out", Add(), ("fc1", "fc2"))])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predict_gives_the_forward_scores_and_overwrites_only_its_own_values(kernel_name, rng,
                                                                          dtype):
    for model, size in ((overwrite_traps(rng, dtype), 4), (residual_net(rng, dtype), 4),
                        (tiny_model(dtype), 9)):
        x = rng.standard_normal((3, 2, size, size)).astype(dtype)
        x_before = x.copy()
        scores = model.forward(x).copy()
        np.testing.assert_array_equal(model.predict(x), scores)
        np.testing.assert_array_equal(x, x_before)              # the caller's input untouched
    with pytest.raises(ValueError, match="backward: called before forward"):
        model.backward(np.ones_like(scores))
    with pytest.raises(ValueError, match="no forward pass yet"):
        model.activation(0)
    with pytest.raises(ValueError, match="backward called before forward"):
        model["features.1"].backward(np.ones((3, 3, 4, 4), dtype))  # a ReLU keeps nothing


def test_predict_matches_forward_on_the_zoo_graphs():
    """ResNet-18 and SqueezeNet 1.1 at a small size: skip connections and Concat."""
    from minicnn.io import zoo
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    for arch in ("resnet18", "squeezenet1_1"):
        model = zoo.build(arch)
        np.testing.assert_array_equal(model.predict(x), model.forward(x))
