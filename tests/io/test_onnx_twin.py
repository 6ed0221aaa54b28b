"""A second reading of an ONNX graph, in torch, as the oracle for minicnn's input gradients:
``torch_twin(model)`` evaluates the graph node by node with torch.nn.functional, straight
from ONNX's operator specifications, with no folding and no shape tricks, so that autograd
gives d(score)/d(image) independently of ``minicnn.io.onnx``. (onnx2torch would be another
such reading, but it lacks converters these files need: Dropout of opset 7-11, AveragePool
with unequal pads.) onnxruntime is the oracle for forward values; it has no gradients.

The tests here check the twin itself against onnxruntime on the operators it implements.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _pads(attrs, x, kernel, strides, dilations):
    """ONNX's pads as torch's F.pad order (left, right, top, bottom)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        (t, b_), (l, r) = out
        return [l, r, t, b_]
    if auto == "VALID":
        return [0, 0, 0, 0]
    t, l, b_, r = attrs.get("pads", [0, 0, 0, 0])
    return [l, r, t, b_]


def torch_twin(model, opset=None, dtype=np.float32):
    """A function image tensor -> the graph's output tensors {name: tensor}, computed in
    ``dtype`` (the graph's float weights are cast to it). The graph's initializers are its
    weights; a trailing Softmax is evaluated too."""
    import torch
    import torch.nn.functional as F

    graph = model.graph
    if opset is None:
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))

    def tensor(array):
        array = np.asarray(array)
        return torch.tensor(array.astype(dtype) if array.dtype.kind == "f" else array.copy())

    weights = {t.name: tensor(numpy_helper.to_array(t)) for t in graph.initializer}
    image = next(i.name for i in graph.input if i.name not in weights)

    def run(x):
        v = dict(weights)
        v[image] = x
        for node in graph.node:
            a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
            a = {k: (tensor(numpy_helper.to_array(val)) if isinstance(val, TensorProto)
                     else val) for k, val in a.items()}
            ins = [v[n] if n else None for n in node.input]
            op = node.op_type
            if op == "Conv":
                w = ins[1]
                k, s = list(w.shape[2:]), a.get("strides", [1, 1])
                d = a.get("dilations", [1, 1])
                y = F.conv2d(F.pad(ins[0], _pads(a, ins[0], k, s, d)), w,
                             ins[2] if len(ins) > 2 else None, s, 0, d, a.get("group", 1))
            elif op in ("MaxPool", "AveragePool"):
                k, s = a["kernel_shape"], a.get("strides", [1, 1])
                p = _pads(a, ins[0], k, s, [1, 1])
                ceil = bool(a.get("ceil_mode", 0))
                x0 = ins[0]
                if op == "MaxPool":
                    y = F.max_pool2d(F.pad(x0, p, value=-math.inf), k, s, 0, ceil_mode=ceil)
                else:
                    total = F.avg_pool2d(F.pad(x0, p), k, s, 0, ceil_mode=ceil,
                                         divisor_override=1)
                    if a.get("count_include_pad", 0):
                        ones = F.pad(torch.ones_like(x0[:1, :1]), p, value=1.0)
                    else:
                        ones = F.pad(torch.ones_like(x0[:1, :1]), p)
                    count = F.avg_pool2d(ones, k, s, 0, ceil_mode=ceil, divisor_override=1)
                    y = total / count
                # ONNX (and onnxruntime) drop a ceil_mode window that starts in the end pads
                keep = [(o - 1) * st < n + pb for o, st, n, pb in
                        zip(y.shape[2:], s, x0.shape[2:], (p[2], p[0]))]
                y = y[:, :, :y.shape[2] - (not keep[0]), :y.shape[3] - (not keep[1])]
            elif op == "GlobalAveragePool":
                y = ins[0].mean(dim=(2, 3), keepdim=True)
            elif op == "ReduceMean":
                axes = a.get("axes") if opset < 18 else ins[1].tolist()
                y = ins[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))
            elif op == "Relu":
                y = F.relu(ins[0])
            elif op == "Sigmoid":
                y = torch.sigmoid(ins[0])
            elif op == "HardSwish":
                y = F.hardswish(ins[0])
            elif op == "HardSigmoid":
                y = torch.clamp(a.get("alpha", 0.2) * ins[0] + a.get("beta", 0.5), 0, 1)
            elif op == "Clip":
                lo, hi = ((a.get("min"), a.get("max")) if opset < 11 else
                          ((ins[1] if len(ins) > 1 else None),
                           (ins[2] if len(ins) > 2 else None)))
                y = torch.clamp(ins[0], None if lo is None else float(lo),
                                None if hi is None else float(hi))
            elif op == "LRN":
                y = F.local_response_norm(ins[0], a["size"], a.get("alpha", 1e-4),
                                          a.get("beta", 0.75), a.get("bias", 1.0))
            elif op == "BatchNormalization":
                y = F.batch_norm(ins[0], ins[3], ins[4], ins[1], ins[2], False, 0.0,
                                 a.get("epsilon", 1e-5))
            elif op in ("Add", "Sum"):
                y = ins[0]
                for other in ins[1:]:
                    y = y + other
            elif op == "Mul":
                y = ins[0] * ins[1]
            elif op == "Sub":
                y = ins[0] - ins[1]
            elif op == "Div":
                y = ins[0] / ins[1]
            elif op == "Gemm":
                A, B = ins[0], ins[1]
                A = A.T if a.get("transA", 0) else A
                B = B.T if a.get("transB", 0) else B
                y = a.get("alpha", 1.0) * A @ B
                if len(ins) > 2 and ins[2] is not None:
                    y = y + a.get("beta", 1.0) * ins[2]
            elif op == "MatMul":
                y = ins[0] @ ins[1]
            elif op == "Flatten":
                y = torch.flatten(ins[0], a.get("axis", 1))
            elif op == "Reshape":
                shape = [int(s) for s in ins[1].tolist()]
                shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
                y = ins[0].reshape(shape)
            elif op == "Transpose":
                y = ins[0].permute(*a.get("perm", list(range(ins[0].dim()))[::-1]))
            elif op == "Concat":
                y = torch.cat(ins, dim=a["axis"])
            elif op in ("Dropout", "Identity"):
                y = ins[0]
            elif op == "Unsqueeze":
                axes = a.get("axes") if opset < 13 else ins[1].tolist()
                y = ins[0]
                for axis in sorted(axes):
                    y = y.unsqueeze(axis)
            elif op == "Constant":
                y = a["value"]
            elif op == "Pad":
                pads = a["pads"] if opset < 11 else ins[1].tolist()
                n = len(pads) // 2
                torch_pads = []
                for axis in reversed(range(n)):
                    torch_pads += [pads[axis], pads[axis + n]]
                y = F.pad(ins[0], torch_pads)
            elif op == "Softmax":
                y = torch.softmax(ins[0], dim=a.get("axis", 1 if opset < 13 else -1))
            else:
                raise NotImplementedError(f"torch_twin: {op}")
            v[node.output[0]] = y
        return {o.name: v[o.name] for o in graph.output}
    return run


def input_gradient(model, x, target, value=None):
    """(scores, d(scores[0, target])/d(image)) by torch autograd on the twin, in x's dtype;
    ``value`` names the graph value holding the scores (default: the graph's only output)."""
    import torch
    if value is not None:
        model = _with_output(model, value)
    xt = torch.tensor(x, requires_grad=True)
    outs = torch_twin(model, dtype=x.dtype)(xt)
    scores = outs[value] if value is not None else next(iter(outs.values()))
    scores.reshape(scores.shape[0], -1)[0, target].backward()
    return scores.detach().numpy().reshape(x.shape[0], -1), xt.grad.numpy()


def _with_output(model, value):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.output[:]
    out.graph.output.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, None))
    return out


def onnxruntime_output(model, x, value=None):
    """onnxruntime's value ``value`` (default: the output) for the image x, as (N, -1)."""
    ort = pytest.importorskip("onnxruntime")
    if value is not None:
        model = _with_output(model, value)
    options = ort.SessionOptions()
    options.log_severity_level = 3          # no warnings about unused initializers
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    return out.reshape(x.shape[0], -1)


# ----------------------------------------------------------------------------- the twin's tests

def _model(nodes, inits, shape, opset=13):
    graph = helper.make_graph(
        nodes, "twin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32) if k != "shape" else v, k)
         for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("pool", [
    dict(op_type="MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1),
    dict(op_type="AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1],
         count_include_pad=0, ceil_mode=1),
    dict(op_type="AveragePool", kernel_shape=[2, 3], strides=[1, 2], pads=[0, 1, 1, 2],
         count_include_pad=1),
    dict(op_type="MaxPool", kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
])
def test_twin_pools_match_onnxruntime(pool, rng):
    pytest.importorskip("torch")
    kind = pool.pop("op_type")
    model = _model([helper.make_node(kind, ["x"], ["y"], **pool)], {}, [2, 3, 7, 6])
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    import torch
    got = torch_twin(model)(torch.tensor(x))["y"].numpy().reshape(2, -1)
    np.testing.assert_allclose(got, onnxruntime_output(model, x), rtol=1e-5, atol=1e-6)


def test_twin_conv_lrn_gemm_match_onnxruntime(rng):
    pytest.importorskip("torch")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("LRN", ["c"], ["l"], size=3, alpha=0.5, beta=0.75, bias=2.0),
             helper.make_node("Flatten", ["l"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["y"], transB=1, alpha=0.5)]
    model = _model(nodes, {"w": rng.standard_normal((4, 3, 3, 3)),
                           "g": rng.standard_normal((5, 4 * 4 * 3))}, [1, 3, 7, 6])
    x = rng.standard_normal((1, 3, 7, 6)).astype(np.float32)
    import torch
    got = torch_twin(model)(torch.tensor(x))["y"].numpy()
    np.testing.assert_allclose(got, onnxruntime_output(model, x), rtol=1e-5, atol=1e-5)
