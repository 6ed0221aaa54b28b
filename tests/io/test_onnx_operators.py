"""Each ONNX operator ``minicnn.from_onnx`` converts, one small graph at a time:

- the onnx wheel's single-operator cases that carry expected outputs
  (onnx/backend/test/data/pytorch-converted/: Conv2d depthwise, grouped, dilated, strided,
  padded; pools; BatchNorm; Linear; ReLU; ZeroPad2d; Softmax). They are opset 6; minicnn reads
  7 and later, so each is first raised to opset 7 by onnx's own version converter (which keeps
  what they compute), then compared with the outputs the wheel stores;
- graphs made here for every operator and attribute the converter maps (auto_pad, unequal
  pads, ceil_mode, count_include_pad, Clip before and after opset 11, HardSigmoid's alpha,
  the constant chains of a decomposed BatchNorm, the channel shuffle, ...), at the opsets
  where their form changes: scores against onnxruntime in float32, input gradients against
  the torch twin (tests/io/test_onnx_twin.py) in float64.

Float32 tolerances: 1e-5 of the largest magnitude (these graphs are a few operators deep).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from minicnn.engine.layers import (LRN, AvgPool2d, BatchNorm2d, ChannelShuffle,  # noqa: E402
                                   Conv2d, Hardtanh, Linear, MaxPool2d, ReLU, ReLU6, ZeroPad2d)
from minicnn.io.onnx import OnnxError, from_onnx  # noqa: E402
from tests.io.test_onnx_twin import input_gradient, onnxruntime_output  # noqa: E402

CONVERTED = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
CASES = ["test_Conv2d", "test_Conv2d_depthwise", "test_Conv2d_depthwise_padded",
         "test_Conv2d_depthwise_strided", "test_Conv2d_depthwise_with_multiplier",
         "test_Conv2d_dilated", "test_Conv2d_groups", "test_Conv2d_groups_thnn",
         "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Conv2d_strided",
         "test_AvgPool2d", "test_AvgPool2d_stride", "test_MaxPool2d", "test_BatchNorm2d_eval",
         "test_BatchNorm2d_momentum_eval", "test_Linear", "test_Linear_no_bias", "test_ReLU",
         "test_ZeroPad2d", "test_Sigmoid"]


def _tensor(path):
    t = TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def _flattened(model):
    """The model with a Flatten after its output, so that any output is (N, D) scores."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    last = out.graph.output[0].name
    out.graph.node.append(helper.make_node("Flatten", [last], ["flat"], name="flat"))
    del out.graph.output[:]
    out.graph.output.append(helper.make_tensor_value_info("flat", TensorProto.FLOAT, None))
    return out


@pytest.mark.parametrize("case", CASES)
def test_pytorch_converted_case(case, tmp_path):
    from onnx import version_converter
    model = version_converter.convert_version(onnx.load(CONVERTED / case / "model.onnx"), 7)
    x = _tensor(CONVERTED / case / "test_data_set_0" / "input_0.pb")
    expected = _tensor(CONVERTED / case / "test_data_set_0" / "output_0.pb")
    if expected.ndim > 2:
        model = _flattened(model)
    onnx.save(model, tmp_path / "m.onnx")
    net = from_onnx(tmp_path / "m.onnx")
    got = net.forward(x.astype(np.float32))
    expected = expected.reshape(x.shape[0], -1)
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


def test_pytorch_converted_softmax_alone_is_refused(tmp_path):
    """A Softmax alone: the score before it is the input itself, nothing to explain."""
    from onnx import version_converter
    model = version_converter.convert_version(
        onnx.load(CONVERTED / "test_Softmax" / "model.onnx"), 7)
    onnx.save(model, tmp_path / "softmax.onnx")
    with pytest.raises(OnnxError, match=r"softmax.onnx: the output '.*' is the input itself"):
        from_onnx(tmp_path / "softmax.onnx")


def test_pytorch_converted_constant_pad_is_refused(tmp_path):
    from onnx import version_converter
    model = version_converter.convert_version(
        onnx.load(CONVERTED / "test_ConstantPad2d" / "model.onnx"), 7)
    onnx.save(_flattened(model), tmp_path / "pad.onnx")
    with pytest.raises(OnnxError, match=r"Pad node .*: mode 'constant', value 2.0, pads "
                                        r"\[0, 0, 3, 1, 0, 0, 4, 2\]: minicnn pads the height "
                                        r"and width of an image with zeros"):
        from_onnx(tmp_path / "pad.onnx")


# ----------------------------------------------------------------------------- graphs made here

def make(nodes, weights, shape=(2, 3, 9, 8), opset=13, meta=None):
    """A model of ``nodes`` reading "x" of ``shape``, its output the last node's first
    output; ``weights``: name -> array (float32 unless integer)."""
    inits = [numpy_helper.from_array(v if np.asarray(v).dtype.kind in "iu"
                                     else np.asarray(v, np.float32), k)
             for k, v in weights.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(shape))], [helper.make_tensor_value_info(
            nodes[-1].output[0], TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset < 15 else 8
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def check(model, tmp_path, rng, name="m"):
    """Convert; scores against onnxruntime (float32), input gradient against the twin
    (float64). Returns the minicnn model."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    net = from_onnx(path)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = rng.standard_normal(shape).astype(np.float32)
    expected = onnxruntime_output(model, x)
    got = net.forward(x)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    x64 = x.astype(np.float64)
    target = int(np.argmax(expected[0]))
    one_hot = np.zeros(expected.shape)
    one_hot[0, target] = 1
    net64 = from_onnx(path).astype(np.float64)
    net64.forward(x64)
    grad = net64.backward(one_hot)
    _, want = input_gradient(model, x64, target)
    assert np.abs(grad - want).max() <= 1e-5 * max(1e-30, np.abs(want).max())
    return net


def head(name, channels, classes=5, rng=None):
    """GlobalAveragePool, Flatten, Gemm to ``classes`` scores, reading ``name``."""
    return ([helper.make_node("GlobalAveragePool", [name], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], transB=1,
                              name="fc")],
            {"fc_w": rng.standard_normal((classes, channels)),
             "fc_b": rng.standard_normal(classes)})


@pytest.mark.parametrize("auto_pad, pads, strides, dilations", [
    ("SAME_UPPER", None, [2, 2], [1, 1]),
    ("SAME_LOWER", None, [2, 3], [1, 1]),
    ("VALID", None, [1, 2], [1, 1]),
    ("NOTSET", [0, 1, 2, 1], [1, 1], [1, 1]),          # unequal pads: ZeroPad2d + Conv2d
    ("NOTSET", [2, 2, 2, 2], [1, 1], [2, 2]),          # dilated
])
def test_conv_padding(auto_pad, pads, strides, dilations, tmp_path, rng):
    kwargs = dict(auto_pad=auto_pad, strides=strides, dilations=dilations, name="conv")
    if pads is not None:
        kwargs["pads"] = pads
    nodes, weights = head("c", 4, rng=rng)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **kwargs)] + nodes
    weights.update(w=rng.standard_normal((4, 3, 3, 3)), b=rng.standard_normal(4))
    net = check(make(nodes, weights), tmp_path, rng)
    assert isinstance(net["conv"], Conv2d)
    if pads == [0, 1, 2, 1]:
        assert isinstance(net["conv.pad"], ZeroPad2d) and net["conv"].padding == (0, 1)


def test_grouped_conv_batchnorm_folded(tmp_path, rng):
    """Conv (group 3) + BatchNormalization: one Conv2d, the BatchNorm in its weights."""
    nodes, weights = head("r", 6, rng=rng)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=3, pads=[1, 1, 1, 1],
                              name="conv"),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"],
                              epsilon=1e-3, name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu")] + nodes
    weights.update(w=rng.standard_normal((6, 1, 3, 3)), s=rng.uniform(0.5, 2, 6),
                   bb=rng.standard_normal(6), m=rng.standard_normal(6), v=rng.uniform(0.5, 2, 6))
    net = check(make(nodes, weights), tmp_path, rng)
    assert "bn" not in net.names and net["conv"].groups == 3 and net["conv"].bias is not None


def test_decomposed_batchnorm_constant_chain(tmp_path, rng):
    """DenseNet's light file: BatchNormalization on a concatenation, then Mul and Add by
    Unsqueeze-d constants; the constants fold at conversion into one BatchNorm2d."""
    nodes, weights = head("r", 6, rng=rng)
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu0"),
             helper.make_node("Concat", ["x", "a"], ["cat"], axis=1, name="cat"),
             helper.make_node("BatchNormalization", ["cat", "s", "bb", "m", "v"], ["n"],
                              name="bn"),
             helper.make_node("Unsqueeze", ["sw", "axes"], ["sw3"], name="u1"),
             helper.make_node("Mul", ["n", "sw3"], ["scaled"], name="mul"),
             helper.make_node("Unsqueeze", ["sb", "axes"], ["sb3"], name="u2"),
             helper.make_node("Add", ["scaled", "sb3"], ["shifted"], name="add"),
             helper.make_node("Relu", ["shifted"], ["r"], name="relu")] + nodes
    weights.update(s=rng.uniform(0.5, 2, 6), bb=rng.standard_normal(6),
                   m=rng.standard_normal(6), v=rng.uniform(0.5, 2, 6),
                   sw=rng.standard_normal(6), sb=rng.standard_normal(6),
                   axes=np.array([1, 2], np.int64))
    net = check(make(nodes, weights), tmp_path, rng)
    assert isinstance(net["bn"], BatchNorm2d) and "mul" not in net.names


def test_affine_without_a_layer_to_absorb_it(tmp_path, rng):
    """x * c + d on the input itself: a 1x1 depthwise Conv2d; Sub and Div likewise."""
    nodes, weights = head("e", 3, rng=rng)
    nodes = [helper.make_node("Mul", ["x", "c"], ["a"], name="mul"),
             helper.make_node("Sub", ["d", "a"], ["b"], name="sub"),
             helper.make_node("Div", ["b", "e2"], ["e"], name="div")] + nodes
    weights.update(c=rng.standard_normal((3, 1, 1)), d=rng.standard_normal((1, 3, 1, 1)),
                   e2=np.float32(2.5))
    net = check(make(nodes, weights), tmp_path, rng)
    assert net["mul"].groups == 3


@pytest.mark.parametrize("opset", [7, 10, 12, 18])
def test_pools(opset, tmp_path, rng):
    ceil = {"ceil_mode": 1} if opset >= 10 else {}
    nodes, weights = head("p4", 3, rng=rng)
    nodes = [helper.make_node("MaxPool", ["x"], ["p1"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], name="maxpool", **ceil),
             helper.make_node("Relu", ["p1"], ["r1"], name="relu"),
             # TensorFlow's 2x2 stride-1 "same" pool: no ceil_mode gives its windows
             helper.make_node("MaxPool", ["r1"], ["p2"], kernel_shape=[2, 2], strides=[1, 1],
                              pads=[0, 0, 1, 1], name="maxpool_uneven"),
             helper.make_node("AveragePool", ["p2"], ["p3"], kernel_shape=[3, 3],
                              strides=[1, 1], pads=[0, 1, 2, 1], count_include_pad=1,
                              name="avg_counted"),
             helper.make_node("AveragePool", ["p3"], ["p4"], kernel_shape=[3, 2],
                              strides=[2, 2], auto_pad="SAME_UPPER", name="avg_same")] + nodes
    net = check(make(nodes, weights, shape=(2, 3, 11, 10), opset=opset), tmp_path, rng)
    assert isinstance(net["maxpool_uneven"], MaxPool2d)
    assert isinstance(net["maxpool_uneven.pad"], ZeroPad2d)     # zeros: the ReLU's are >= 0
    assert isinstance(net["avg_counted.pad"], ZeroPad2d)
    assert isinstance(net["avg_same"], AvgPool2d) and not net["avg_same"].count_include_pad


def test_uneven_maxpool_of_signed_values_refused(tmp_path, rng):
    """-inf padding that no PyTorch pool reproduces, on values that may be negative."""
    nodes, weights = head("p", 3, rng=rng)
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], pads=[0, 0, 1, 1],
                              name="pool")] + nodes
    onnx.save(make(nodes, weights), tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match=r"m.onnx: MaxPool node 'pool': pads \[0, 0, 1, 1\] with "
                                        r"kernel \[2, 2\], strides \[1, 1\]: no PyTorch pool "
                                        r"gives the same windows"):
        from_onnx(tmp_path / "m.onnx")


@pytest.mark.parametrize("opset", [7, 11, 13])
def test_clip_relu6_hardtanh_relu(opset, tmp_path, rng):
    def clip(x, y, low, high, name):
        if opset < 11:
            return helper.make_node("Clip", [x], [y], min=low, max=high, name=name), {}
        return (helper.make_node("Clip", [x, f"{name}_lo", f"{name}_hi"], [y], name=name),
                {f"{name}_lo": np.float32(low), f"{name}_hi": np.float32(high)})
    n1, w1 = clip("x", "a", 0.0, 6.0, "relu6")
    n2, w2 = clip("a", "b", -0.5, 1.5, "hardtanh")
    nodes, weights = head("b", 3, rng=rng)
    net = check(make([n1, n2] + nodes, {**weights, **w1, **w2}, opset=opset), tmp_path, rng)
    assert isinstance(net["relu6"], ReLU6) and isinstance(net["hardtanh"], Hardtanh)


def test_activations_and_gates(tmp_path, rng):
    """HardSwish, HardSigmoid (PyTorch's alpha 1/6 and the default 0.2), Sigmoid, Mul of two
    values (squeeze-and-excitation), Sum of three, LRN."""
    nodes, weights = head("l", 3, rng=rng)
    nodes = [helper.make_node("HardSwish", ["x"], ["a"], name="hswish"),
             helper.make_node("HardSigmoid", ["a"], ["g1"], alpha=float(np.float32(1 / 6)),
                              name="hsig"),
             helper.make_node("HardSigmoid", ["x"], ["g2"], name="hsig_keras"),
             helper.make_node("GlobalAveragePool", ["a"], ["se"], name="se_pool"),
             helper.make_node("Sigmoid", ["se"], ["gate"], name="gate"),
             helper.make_node("Mul", ["a", "gate"], ["m"], name="se_mul"),
             helper.make_node("Sum", ["m", "g1", "g2"], ["s"], name="sum"),
             helper.make_node("LRN", ["s"], ["l"], size=3, alpha=0.3, beta=0.75, bias=1.5,
                              name="lrn")] + nodes
    net = check(make(nodes, weights, opset=14), tmp_path, rng)
    assert isinstance(net["lrn"], LRN) and net["hsig_keras.scale"].groups == 3


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_reduce_mean_matmul_add_dropout_identity(opset, tmp_path, rng):
    axes = {"axes": [2, 3]} if opset < 18 else {}
    inputs = ["c"] if opset < 18 else ["c", "axes"]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("ReduceMean", inputs, ["r"], keepdims=0, name="mean", **axes),
             helper.make_node("Dropout", ["r"], ["d"], name="drop"),
             helper.make_node("Identity", ["d"], ["i"], name="id"),
             helper.make_node("MatMul", ["i", "mw"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "mb"], ["scores"], name="fc_bias")]
    weights = {"w": rng.standard_normal((4, 3, 3, 3)), "mw": rng.standard_normal((4, 7)),
               "mb": rng.standard_normal(7), "axes": np.array([2, 3], np.int64)}
    net = check(make(nodes, weights, opset=opset), tmp_path, rng)
    assert isinstance(net["fc"], Linear) and net["fc"].bias is not None
    assert "drop" not in net.names and "fc_bias" not in net.names


@pytest.mark.parametrize("opset", [7, 11, 20])
def test_channel_shuffle_pad_gemm_transposed(opset, tmp_path, rng):
    """ShuffleNet's Reshape -> Transpose -> Reshape is a ChannelShuffle; Pad with zeros a
    ZeroPad2d; Gemm with transB = 0, alpha and beta a Linear; Reshape to (N, D) a Flatten."""
    pad_node = (helper.make_node("Pad", ["s"], ["p"], pads=[0, 0, 1, 2, 0, 0, 3, 0],
                                 name="pad") if opset < 11 else
                helper.make_node("Pad", ["s", "pads"], ["p"], name="pad"))
    nodes = [helper.make_node("Reshape", ["x", "shape5"], ["g"], name="group"),
             helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4], name="swap"),
             helper.make_node("Reshape", ["t", "shape4"], ["s"], name="shuffle"),
             pad_node,
             helper.make_node("Reshape", ["p", "flat"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "gw", "gb"], ["scores"], alpha=0.5, beta=2.0,
                              name="fc")]
    weights = {"shape5": np.array([2, 3, 2, 5, 4], np.int64),
               "shape4": np.array([2, 6, 5, 4], np.int64),
               "pads": np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64),
               "flat": np.array([0, -1], np.int64),
               "gw": rng.standard_normal((6 * 9 * 6, 4)), "gb": rng.standard_normal(4)}
    net = check(make(nodes, weights, shape=(2, 6, 5, 4), opset=opset), tmp_path, rng)
    assert isinstance(net["shuffle"], ChannelShuffle) and net["shuffle"].groups == 3
    assert net["pad"].padding == (2, 0, 1, 3)


def test_trailing_softmax_left_out(tmp_path, rng):
    nodes, weights = head("x", 3, rng=rng)
    nodes.append(helper.make_node("Softmax", ["scores"], ["prob"], axis=1, name="prob"))
    path = tmp_path / "soft.onnx"
    onnx.save(make(nodes, weights), path)
    net = from_onnx(path)
    assert net.names[-1] == "fc"
    assert net.meta["onnx"]["notes"][0] == ("the trailing Softmax 'prob' is left out: minicnn "
                                            "explains the score before the softmax")


def test_convolution_classifier_flattened(tmp_path, rng):
    """A 1x1 convolution as the classifier (SqueezeNet, DenseNet's light file): (N, K, 1, 1)
    scores are flattened by a node called "flatten"."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
             helper.make_node("Conv", ["g", "w"], ["scores"], name="classifier")]
    net = check(make(nodes, {"w": rng.standard_normal((4, 3, 1, 1))}), tmp_path, rng)
    assert net.names[-1] == "flatten"


def test_relu_alias_names(tmp_path, rng):
    """A node without a name takes its output's; two nodes of one name get .1 appended."""
    nodes, weights = head("b", 3, rng=rng)
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"],
                                                                      name="a")] + nodes
    net = check(make(nodes, weights), tmp_path, rng)
    assert net.names[:2] == ["a", "a.1"] and isinstance(net["a.1"], ReLU)


# ----------------------------------------------------------------------------- metadata

@pytest.mark.parametrize("props, resize, mean, std, how", [
    ({}, 73, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225],
     "ImageNet's defaults (the file does not say)"),
    ({"preprocess": '{"resize": 80, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}'}, 80,
     [0.5] * 3, [0.25] * 3, "the file's metadata (preprocess)"),
    ({"Image.NominalPixelRange": "Normalized_1_1"}, 73, [0.5] * 3, [0.5] * 3,
     "the file's metadata (Image.NominalPixelRange Normalized_1_1)"),
])
def test_preprocessing_from_the_metadata_or_imagenet(props, resize, mean, std, how, tmp_path,
                                                     rng):
    nodes, weights = head("x", 3, rng=rng)
    onnx.save(make(nodes, weights, shape=(1, 3, 64, 64), meta=props), tmp_path / "m.onnx")
    net = from_onnx(tmp_path / "m.onnx")
    assert net.meta["preprocess"] == {"resize": resize, "crop": 64, "mean": mean, "std": std}
    assert net.meta["input_shape"] == [3, 64, 64]
    assert f"preprocessing: {how}: resize {resize}, crop 64" in net.meta["onnx"]["notes"][0]


def test_class_names_and_open_input_size_from_the_metadata(tmp_path, rng):
    nodes, weights = head("x", 3, rng=rng)
    model = make(nodes, weights, meta={"class_names": '["a", "b", "c", "d", "e"]',
                                       "preprocess": '{"crop": 32, "resize": 40}'})
    for axis in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = "side"
    onnx.save(model, tmp_path / "m.onnx")
    net = from_onnx(tmp_path / "m.onnx")
    assert net.meta["class_names"] == ["a", "b", "c", "d", "e"]
    assert net.meta["input_shape"] == [3, 32, 32]
    assert "input size: the file leaves it open; 32x32 assumed" in net.meta["onnx"]["notes"]
    model.metadata_props[0].value = '["a", "b"]'
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match="its metadata 'class_names' is not a JSON list of 5 "
                                        "strings"):
        from_onnx(tmp_path / "m.onnx")


def test_average_of_whole_maps_is_a_global_pool(tmp_path, rng):
    """ResNet-50's light file averages its 7x7 maps with a 7x7 AveragePool: a global pool,
    where Grad-CAM's default looks for the last maps (the ReLU it reads)."""
    from minicnn.engine.layers import AdaptiveAvgPool2d
    from minicnn.saliency import default_cam_layer
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="last_maps"),
             helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[9, 8], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w"], ["scores"], transB=1, name="fc")]
    net = check(make(nodes, {"w": rng.standard_normal((4, 3))}), tmp_path, rng)
    assert isinstance(net["pool"], AdaptiveAvgPool2d)
    assert default_cam_layer(net) == "last_maps"
