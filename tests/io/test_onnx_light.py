"""The nine classic architectures the onnx wheel ships (onnx/backend/test/data/light/:
SqueezeNet, VGG19, ResNet-50, DenseNet-121, Inception v1 and v2, AlexNet, ZFNet-512,
ShuffleNet; opset 9, made by onnx-caffe2) converted by ``minicnn.from_onnx``.

Their weights are ConstantOfShape nodes (every weight one repeated number), so the tests
replace each by seeded random values of its shape: He-scaled weights, BatchNorm scales and
variances in [0.5, 1.5], so that the activations keep their size through 121 layers. Then

- the scores (before the trailing Softmax) equal onnxruntime's for a random 224 x 224 image;
- the input gradient of the top score equals torch autograd through ``torch_twin``, a
  second, independent reading of the same ONNX graph (tests/io/test_onnx_twin.py).

Tolerances. Scores in float32 (onnxruntime computes in float32): the libraries sum in
different orders, so they agree to ~1e-6 of the largest score (measured 2e-7 to 1.6e-6);
1e-4 leaves room and still catches a wrong pad, window or fold (those move scores by
percents). Gradients in float64 (the minicnn model cast with ``astype``, the twin in double):
in float32 two max-pool inputs closer than the rounding noise, which a ReLU network has
plenty of, send the gradient to different pixels in two libraries (measured: 10% of the
largest gradient at one pixel of Inception v1), which says nothing about either. In float64
they agree to ~1e-12 where nothing is folded; where a BatchNorm is folded into the convolution
before it, minicnn's folded weights were rounded to float32 once, at conversion, and the twin
applies the BatchNorm itself, so they agree to ~1e-7 (measured 1.3e-7 on ResNet-50); 1e-5 is
asserted. The VGG19 case makes a 550 MB model (1.1 GB in
float64); the file's slowest cases, VGG19 and ZFNet, take about a minute and 30 s.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

from minicnn.io.onnx import from_onnx  # noqa: E402
from tests.io.test_onnx_twin import input_gradient, onnxruntime_output  # noqa: E402

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
NAMES = ["squeezenet", "vgg19", "resnet50", "densenet121", "inception_v1", "inception_v2",
         "bvlc_alexnet", "zfnet512", "shufflenet"]


def filled(name, seed=0):
    """The light file ``name`` with every ConstantOfShape weight replaced by a seeded random
    initializer of its shape; ir_version 7, so that initializers need not be inputs."""
    model = onnx.load(LIGHT / f"light_{name}.onnx")
    shapes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    positive = {n.input[i] for n in model.graph.node if n.op_type == "BatchNormalization"
                for i in (1, 4)}                     # scale and variance
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            nodes.append(node)
            continue
        shape = tuple(int(d) for d in shapes[node.input[0]])
        if node.output[0] in positive:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:                        # a weight: He's scale keeps activations O(1)
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        weights.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    kept = [t for t in model.graph.initializer if not t.name.endswith("__SHAPE")]
    inputs = [i for i in model.graph.input if not i.name.endswith("__SHAPE")]
    graph = helper.make_graph(nodes, name, inputs, list(model.graph.output), kept + weights)
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = 7
    return out


def test_light_files_are_the_nine():
    assert sorted(p.name for p in LIGHT.glob("light_*.onnx")) == sorted(
        f"light_{n}.onnx" for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_light_network_matches_onnxruntime_and_autograd(name, tmp_path):
    pytest.importorskip("torch")
    model = filled(name)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    net = from_onnx(path)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)

    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    scores_value = softmax[0].input[0] if softmax else None     # the score before the softmax
    if softmax:
        assert any("Softmax" in note and "left out" in note for note in net.meta["onnx"]["notes"])
    expected = onnxruntime_output(model, x, scores_value)
    scores = net.forward(x)
    assert scores.shape == expected.shape == (1, 1000)
    scale = np.abs(expected).max()
    assert np.abs(scores - expected).max() <= 1e-4 * scale, name

    target = int(np.argmax(expected[0]))
    x64 = x.astype(np.float64)
    one_hot = np.zeros((1, 1000))
    one_hot[0, target] = 1
    net.astype(np.float64).forward(x64)
    grad = net.backward(one_hot)
    _, want = input_gradient(model, x64, target, scores_value)
    assert grad.shape == want.shape == x.shape
    assert np.abs(grad - want).max() <= 1e-5 * np.abs(want).max(), name


def test_light_names_come_from_the_file(tmp_path):
    """A node without a name takes its output's; the node names are the minicnn names."""
    model = filled("squeezenet")
    path = tmp_path / "squeezenet.onnx"
    onnx.save(model, path)
    net = from_onnx(path)
    onnx_names = {n.name or n.output[0] for n in model.graph.node}
    assert set(net.names) <= onnx_names | {"flatten"}
    assert net.meta["input_shape"] == [3, 224, 224]
    assert net.meta["onnx"]["opset"] == 9
