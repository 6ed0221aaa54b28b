"""What ``minicnn.from_onnx`` and ``convert_onnx`` refuse, each in one line naming the file
(and the tensor, node or operator): files that are not ONNX, truncated or damaged; opsets
and IR versions it does not read; custom operator domains and model-local functions;
external data whose location leaves the model's folder (``..``, an absolute path, a symbolic
link out) or whose range leaves its file; tensors that declare more than the limits or other
sizes than they hold; constants that would be giant; protobuf nested absurdly deep;
unsupported operators. And in every case nothing is written. The command line's own
handling (``minicnn convert X.onnx``, exit 2) is tested once cli.py dispatches .onnx files.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from minicnn.io.onnx import OnnxError, convert_onnx, from_onnx  # noqa: E402
from minicnn.io.onnx.reader import MAX_TENSOR_BYTES  # noqa: E402


def small_model(opset=13, weight=None, extra_nodes=(), domain_ops=()):
    """x (1, 3, 4, 4) -> Conv 1x1 (weight "w") -> GlobalAveragePool -> Flatten: (1, 2)."""
    w = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) / 10 if weight is None else weight
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             *extra_nodes,
             helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    *domain_ops])
    model.ir_version = 8
    return model


def refused(path, pattern, tmp_path=None):
    """from_onnx(path) raises OnnxError matching ``pattern`` in one line naming the file, and
    convert_onnx writes nothing."""
    with pytest.raises(OnnxError) as info:
        from_onnx(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and len(message) < 2000, message
    assert re.search(pattern, message), message
    out = path.parent / "out.npz"
    with pytest.raises(OnnxError):
        convert_onnx(path, out)
    assert not out.exists() and not [p for p in path.parent.iterdir() if p.suffix == ".npz"]
    return message


def test_a_good_small_file_converts(tmp_path):
    onnx.save(small_model(), tmp_path / "m.onnx")
    out, notes = convert_onnx(tmp_path / "m.onnx", tmp_path / "m.npz")
    import minicnn
    model = minicnn.load(out)
    x = np.ones((1, 3, 4, 4), np.float32)
    np.testing.assert_allclose(model.forward(x), [[0.3, 1.2]], rtol=1e-6)
    assert any("preprocessing" in n for n in notes)


# ----------------------------------------------------------------------------- not ONNX

@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,           # an image
    b"this is a text file, not a model\n" * 10,
    b"",
    b"\x08\x07",                                            # ir_version 7 and nothing else
])
def test_not_onnx(content, tmp_path):
    (tmp_path / "m.onnx").write_bytes(content)
    refused(tmp_path / "m.onnx", r"not (a readable ONNX file|an ONNX model|a readable ONNX "
                                 r"model)")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated(keep, tmp_path):
    data = small_model(weight=np.ones((2, 3, 1, 1), np.float32)).SerializeToString()
    (tmp_path / "m.onnx").write_bytes(data[:int(len(data) * keep)])
    refused(tmp_path / "m.onnx", r"(truncated or damaged|no graph)")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(OnnxError, match="no such file"):
        from_onnx(tmp_path / "absent.onnx")
    with pytest.raises(OnnxError, match="is not a file"):
        from_onnx(tmp_path)


@pytest.mark.parametrize("opset, message", [
    (6, r"opset 6; minicnn reads opsets 7 to \d+ \(the installed onnx package's newest\)"),
    (999, r"opset 999; minicnn reads opsets 7 to \d+"),
])
def test_unknown_opset(opset, message, tmp_path):
    onnx.save(small_model(opset=opset), tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", message)


def test_unknown_ir_version(tmp_path):
    model = small_model()
    model.ir_version = 99
    onnx.save(model, tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", r"ONNX IR version 99; minicnn reads 3 to \d+")


# ----------------------------------------------------------------------------- nothing runs

def test_custom_domain_refused_by_name(tmp_path):
    custom = helper.make_node("FancyAct", ["c"], ["c2"], name="fancy", domain="com.example")
    model = small_model(extra_nodes=[custom],
                        domain_ops=[helper.make_opsetid("com.example", 1)])
    model.graph.node[2].input[0] = "c2"
    onnx.save(model, tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", r"node 'fancy' is operator 'FancyAct' of the custom domain "
                                 r"'com.example'")


def test_model_local_function_refused_by_name(tmp_path):
    model = small_model(domain_ops=[helper.make_opsetid("local", 1)])
    body = [helper.make_node("Relu", ["a"], ["b"])]
    model.functions.append(helper.make_function("local", "MyRelu", ["a"], ["b"], body,
                                                [helper.make_opsetid("", 13)]))
    onnx.save(model, tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", r"defines its own functions \('local.MyRelu'\)")


def test_unsupported_operator_names_type_node_and_the_supported(tmp_path):
    node = helper.make_node("Elu", ["c"], ["c2"], name="act3")
    model = small_model(extra_nodes=[node])
    model.graph.node[2].input[0] = "c2"
    onnx.save(model, tmp_path / "m.onnx")
    message = refused(tmp_path / "m.onnx", r"unsupported operator 'Elu' \(node 'act3'\); "
                                           r"minicnn converts Add, AveragePool, "
                                           r"BatchNormalization, ")
    assert "Softmax" in message and "LRN" in message


def test_subgraphs_are_never_run(tmp_path):
    """Control flow (If, Loop) is an unsupported operator; a subgraph in the attributes of an
    operator minicnn converts is refused."""
    branch = helper.make_graph([], "b", [], [helper.make_tensor_value_info(
        "c", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["cond"], ["c2"], name="branchy", then_branch=branch,
                            else_branch=branch)
    model = small_model(extra_nodes=[node])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    model.graph.node[2].input[0] = "c2"
    onnx.save(model, tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", r"unsupported operator 'If' \(node 'branchy'\)")
    model = small_model()
    model.graph.node[0].attribute.append(helper.make_attribute("body", branch))
    onnx.save(model, tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", r"Conv node 'conv': attribute 'body' holds a subgraph")


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_nested_absurdly_deep(tmp_path):
    """A node whose attribute holds a graph whose node's attribute holds a graph ... 2,000
    deep, written with the wire format directly: refused in one line, no crash."""
    graph = b""
    for _ in range(2000):
        attribute = _field(1, b"g") + _varint(20 << 3) + _varint(5) + _field(6, graph)
        node = _field(4, b"If") + _field(5, attribute)
        graph = _field(1, node)
    model = (_varint(1 << 3) + _varint(8) + _field(8, _varint(2 << 3) + _varint(13))
             + _field(7, graph))
    (tmp_path / "m.onnx").write_bytes(model)
    refused(tmp_path / "m.onnx", r"not a readable ONNX model \(.*nested too deeply")


# ----------------------------------------------------------------------------- declared sizes

def _with_tensor(tmp_path, tensor):
    model = small_model()
    del model.graph.initializer[:]
    model.graph.initializer.append(tensor)
    onnx.save(model, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_giant_dims_refused_before_allocation(tmp_path):
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10 ** 6, 10 ** 6, 3, 1],
                         raw_data=b"\0" * 24)
    refused(_with_tensor(tmp_path, tensor), rf"tensor 'w' declares dims \[1000000, 1000000, "
                                            rf"3, 1\], 12,000,000,000,000 bytes, more than "
                                            rf"the limit of {MAX_TENSOR_BYTES:,}")


def test_dims_that_do_not_match_the_bytes(tmp_path):
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3, 1, 1],
                         raw_data=b"\0" * 20)
    refused(_with_tensor(tmp_path, tensor), r"tensor 'w' declares dims \[2, 3, 1, 1\] "
                                            r"\(24 bytes\) but holds 20 bytes")


def test_negative_dims(tmp_path):
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[-2, 3, 1, 1])
    refused(_with_tensor(tmp_path, tensor), r"tensor 'w' declares a negative dimension")


def test_giant_constant_of_shape_refused(tmp_path):
    shape = numpy_helper.from_array(np.array([2, 3, 10 ** 6, 10 ** 6], np.int64), "shape")
    node = helper.make_node("ConstantOfShape", ["shape"], ["w2"], name="fill")
    model = small_model(extra_nodes=[])
    model.graph.node.insert(0, node)
    model.graph.node[1].input[1] = "w2"
    model.graph.initializer.append(shape)
    onnx.save(model, tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", r"ConstantOfShape node 'fill': its output: shape "
                                 r"\[2, 3, 1000000, 1000000\] is 24,000,000,000,000 bytes")


def test_giant_input_refused(tmp_path):
    model = small_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 10 ** 9
    onnx.save(model, tmp_path / "m.onnx")
    refused(tmp_path / "m.onnx", r"input 'x' of 1000000000x4 pixels; at most \d+ a side")


# ----------------------------------------------------------------------------- external data

def _external(tmp_path, location_after=None):
    """small_model saved with its weight in "weights.bin" beside it; the location then
    rewritten to ``location_after``."""
    folder = tmp_path / "model"
    folder.mkdir()
    model = small_model()
    onnx.save(model, folder / "m.onnx", save_as_external_data=True, location="weights.bin",
              size_threshold=0)
    if location_after is not None:
        saved = onnx.load(folder / "m.onnx", load_external_data=False)
        for entry in saved.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location_after
        onnx.save(saved, folder / "m.onnx")
    return folder / "m.onnx"


def test_external_data_in_the_folder_is_read(tmp_path):
    model = from_onnx(_external(tmp_path))
    np.testing.assert_allclose(model.forward(np.ones((1, 3, 4, 4), np.float32)), [[0.3, 1.2]],
                               rtol=1e-6)


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "sub/../../x.bin",
                                      "C:\\weights.bin"])
def test_external_data_outside_the_folder_refused(location, tmp_path):
    path = _external(tmp_path, location)
    (tmp_path / "weights.bin").write_bytes((path.parent / "weights.bin").read_bytes())
    refused(path, rf"tensor 'w' is stored in {re.escape(repr(location))}, outside the "
                  rf"model's folder; refusing to read it")


def test_external_data_through_a_symbolic_link_out_refused(tmp_path):
    path = _external(tmp_path, "link.bin")
    outside = tmp_path / "secret.bin"
    outside.write_bytes((path.parent / "weights.bin").read_bytes())
    os.symlink(outside, path.parent / "link.bin")
    refused(path, r"tensor 'w' is stored in 'link.bin', which leads outside the model's "
                  r"folder \(a symbolic link\?\)")


def test_external_data_beyond_its_file_refused(tmp_path):
    path = _external(tmp_path)
    (path.parent / "weights.bin").write_bytes(b"\0" * 8)
    refused(path, r"tensor 'w' is stored in 'weights.bin' at bytes 0..24, beyond its 8 bytes")


# ----------------------------------------------------------------------------- the command line

def test_cli_converts_and_refuses_in_one_line(tmp_path, capsys):
    from minicnn import cli
    import inspect
    if ".onnx" not in inspect.getsource(cli.cmd_convert):
        pytest.skip("cli.py does not dispatch .onnx files to minicnn.io.onnx yet")
    onnx.save(small_model(), tmp_path / "m.onnx")
    assert cli.main(["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.npz")]) == 0
    printed = capsys.readouterr().out
    assert "preprocessing: ImageNet's defaults" in printed and "wrote" in printed
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    assert cli.main(["convert", str(tmp_path / "bad.onnx"), "-o",
                     str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minicnn: error: ") and err.count("\n") == 1
    assert not (tmp_path / "bad.npz").exists()
