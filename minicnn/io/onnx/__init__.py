"""ONNX in: a CNN exported to ONNX from any framework becomes a minicnn model, so that its
saliency maps come from minicnn's own backward pass, with no framework and no ONNX runtime.

    model = minicnn.from_onnx("resnet50.onnx")          # a Graph (or a Sequential)
    minicnn convert resnet50.onnx -o resnet50.npz       # the same, written as a weights file

Needs the ``onnx`` package (``pip install "minicnn[onnx]"``), for its protobuf classes and to
know the newest opset; the weights themselves are read by ``reader`` (see there why, and
what it refuses). Opsets 7 to the installed onnx package's newest are read; the operators,
and what each becomes, are listed in ``operators``; anything else is refused in one line
naming the operator, its node and the supported operators. A trailing Softmax is left out:
minicnn explains the class score before the softmax, as Simonyan et al. (2013, section 3)
do, because the softmax's output for one class also rises when the others' scores fall.

Names: each minicnn node takes its ONNX node's name (``--layer`` can name it). The input's
size comes from the file (its first input that is not an initializer), its preprocessing from
the file's metadata where it says (``metadata_props``: a JSON ``preprocess`` in minicnn's
form, ``{"resize": 256, "crop": 224, "mean": [...], "std": [...]}``, or Windows ML's
``Image.NominalPixelRange``), otherwise ImageNet's defaults; the notes say which
(``model.meta["onnx"]["notes"]``, printed by ``minicnn convert``).

Refused, each in one line (``OnnxError``, a ``ConversionError``): a file that is missing,
not ONNX, truncated or damaged, nested too deeply; an opset outside 7..newest; operators of
another domain than ONNX's own (custom operators) and model-local functions, by name; a
tensor that declares more than the limits or other sizes than it holds; external data whose
location leaves the model's folder. Nothing in a file is run: the graph is only read.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from minicnn.engine.layers import Flatten
from minicnn.engine.model import INPUT, as_model
from minicnn.io.onnx.graph import Act, Builder
from minicnn.io.onnx.operators import ACTIVATION_OPS, CONSTANT_OPS, SUPPORTED, shape_of_value
from minicnn.io.onnx.reader import OnnxError, _cut, read_onnx

__all__ = ["from_onnx", "convert_onnx", "OnnxError", "SUPPORTED", "MIN_OPSET"]

MIN_OPSET = 7
MAX_NODES = 100_000          # ONNX nodes in a graph (DenseNet-121's light file has 1,746)
MAX_CHANNELS = 4096          # of the input image
_DOMAINS = ("", "ai.onnx")   # ONNX's own operators


def _onnx():
    try:
        import onnx
        import onnx.defs
    except ImportError:
        raise OnnxError('reading ONNX files needs the onnx package: pip install '
                        '"minicnn[onnx]"') from None
    return onnx


def from_onnx(path):
    """The network in the ONNX file ``path`` as a minicnn model (float32), with
    ``model.meta``: the input shape, preprocessing, class names where known, and
    ``meta["onnx"]`` (opset, producer, the conversion's notes). Raises OnnxError (one line
    naming the file) for everything the module docstring lists."""
    onnx = _onnx()
    path = Path(path)
    file = read_onnx(path)
    model = file.model
    opset = _check_model(onnx, model, path)
    graph = model.graph
    if len(graph.node) > MAX_NODES:
        raise OnnxError(f"{path}: {len(graph.node):,} nodes, more than the limit of "
                        f"{MAX_NODES:,}")
    if len(graph.sparse_initializer):
        raise OnnxError(f"{path}: sparse initializers, which minicnn does not read")
    for node in graph.node:
        if node.domain not in _DOMAINS:
            raise OnnxError(f"{path}: node {_cut(repr(node.name or node.output[0]))} is "
                            f"operator {_cut(repr(node.op_type))} of the custom domain "
                            f"{_cut(repr(node.domain))}; minicnn converts ONNX's own "
                            f"operators only")
    notes = []
    image, shape, batch = _input(graph, file, path, model, notes)
    output, dropped = _output(graph, path, notes)

    b = Builder(file, opset, batch)
    b.count_uses(graph, output)
    b.acts[image] = Act(INPUT, shape)
    for node in graph.node:
        if node is dropped:
            continue
        b.node = node
        _convert_node(b, node, path)
    b.node = None
    nodes = _finish(b, output, path)

    meta = _meta(model, path, shape, nodes, opset, notes)
    return as_model([tuple(n) for n in nodes], meta)


def convert_onnx(path, out):
    """Convert the ONNX file ``path`` and write it as a minicnn weights file ``out`` (.npz).
    Returns (the path written, the notes). The output path is checked before any work."""
    from minicnn.io.atomic import OutputPathError, check_output_file
    from minicnn.io.weights import save
    try:
        out = check_output_file(out, ".npz")
    except OutputPathError as e:
        raise OnnxError(str(e)) from None
    model = from_onnx(path)
    return save(model, out, meta=model.meta), list(model.meta["onnx"]["notes"])


# ----------------------------------------------------------------------------- the steps

def _check_model(onnx, model, path) -> int:
    """The opset of ONNX's own operators; OnnxError for a file minicnn cannot read."""
    if model.ir_version < 3 or model.ir_version > onnx.IR_VERSION:
        raise OnnxError(f"{path}: ONNX IR version {model.ir_version}; minicnn reads 3 to "
                        f"{onnx.IR_VERSION} (the installed onnx package's newest)")
    newest = onnx.defs.onnx_opset_version()
    opsets = [o.version for o in model.opset_import if o.domain in _DOMAINS]
    if not opsets:
        raise OnnxError(f"{path}: imports no opset of ONNX's own operators")
    opset = max(opsets)
    if not MIN_OPSET <= opset <= newest:
        raise OnnxError(f"{path}: opset {opset}; minicnn reads opsets {MIN_OPSET} to {newest} "
                        f"(the installed onnx package's newest)")
    if len(model.functions):
        names = ", ".join(_cut(repr(f"{f.domain}.{f.name}" if f.domain else f.name))
                          for f in model.functions[:5])
        raise OnnxError(f"{path}: defines its own functions ({names}); minicnn converts "
                        f"ONNX's own operators only")
    return opset


def _input(graph, file, path, model, notes):
    """(the input's name, its shape per example: (C, H, W) for images, (D,) for vectors, the
    batch size N the file declares, or 1)."""
    from minicnn.io.images import MAX_SIDE
    inputs = [v for v in graph.input if v.name not in file.tensors]
    if len(inputs) != 1:
        raise OnnxError(f"{path}: {len(inputs)} inputs ({_cut([v.name for v in inputs])}); "
                        f"minicnn explains networks of one image input")
    value = inputs[0]
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    name = _cut(repr(value.name))
    if tensor.elem_type not in (1, 10, 11) or len(dims) not in (2, 4):
        raise OnnxError(f"{path}: input {name} is not a batch of float images (N, C, H, W) "
                        f"(type {tensor.elem_type}, {len(dims)} axes)")
    N, C, *size = dims
    if C is None or not 1 <= C <= (MAX_CHANNELS if size else MAX_SIDE * MAX_SIDE):
        raise OnnxError(f"{path}: input {name} has {C} {'channels' if size else 'features'}")
    if size and None in size:
        side = _metadata_preprocess(model, path).get("crop", 224)
        size = [n or side for n in size]
        notes.append(f"input size: the file leaves it open; {size[0]}x{size[1]} assumed")
    if not all(1 <= n <= MAX_SIDE for n in size):
        raise OnnxError(f"{path}: input {name} of {size[0]}x{size[1]} pixels; at most "
                        f"{MAX_SIDE} a side")
    return value.name, (C, *size), (N if N else 1)


def _output(graph, path, notes):
    """(the value to explain, the trailing Softmax node left out or None)."""
    if len(graph.output) != 1:
        raise OnnxError(f"{path}: {len(graph.output)} outputs; minicnn explains one vector "
                        f"of class scores")
    output = graph.output[0].name
    producer = next((n for n in graph.node if output in n.output), None)
    if producer is not None and producer.op_type == "Softmax":
        notes.append(f"the trailing Softmax {producer.name or producer.output[0]!r} is left "
                     f"out: minicnn explains the score before the softmax")
        return producer.input[0], producer
    return output, None


def _convert_node(b, node, path):
    op, inputs = node.op_type, [n for n in node.input if n]
    if op in CONSTANT_OPS and all(b.is_const(n) for n in inputs):
        values = CONSTANT_OPS[op](b)
        for name, value in zip(node.output, values):
            b.consts[name] = np.asarray(value)
        return
    if op == "Shape":
        b.consts[node.output[0]] = shape_of_value(b)[0]
        return
    if op not in ACTIVATION_OPS:
        raise OnnxError(f"{path}: unsupported operator {_cut(repr(op))} (node "
                        f"{_cut(repr(b.name()))}); minicnn converts {', '.join(SUPPORTED)}")
    ACTIVATION_OPS[op](b)


def _finish(b, output, path):
    """The nodes the output needs, in order, the output's node last (flattened to (N, K))."""
    from minicnn.io.weights import MAX_LAYERS
    if output not in b.acts:
        raise OnnxError(f"{path}: the output {_cut(repr(output))} does not depend on the image")
    act = b.acts[output]
    if act.node == INPUT or act.view:
        raise OnnxError(f"{path}: the output {_cut(repr(output))} is the input itself, or "
                        f"half of a channel shuffle")
    if len(act.shape) == 3 and act.shape[1:] == (1, 1):        # a 1x1 convolution classifier
        act = b.add(Flatten(), [act], act.shape[:1], name="flatten", out=f"{output} (flat)")
    if len(act.shape) != 1:
        raise OnnxError(f"{path}: the output has shape (N, {', '.join(map(str, act.shape))}); "
                        f"minicnn explains class scores (N, K)")
    needed, reads = {act.node}, {name: r for name, _, r in b.nodes}
    for name, _, _ in reversed(b.nodes):
        if name in needed:
            needed.update(r for r in reads[name] if r != INPUT)
    nodes = [n for n in b.nodes if n[0] in needed and n[0] != act.node]
    nodes.append(b.nodes[b.index[act.node]])
    if len(nodes) > MAX_LAYERS:
        raise OnnxError(f"{path}: {len(nodes):,} layers, more than a weights file holds "
                        f"({MAX_LAYERS:,})")
    return nodes


# ----------------------------------------------------------------------------- metadata

_PIXEL_RANGES = {   # Windows ML's Image.NominalPixelRange -> (mean, std) on pixels in [0, 1]
    "Normalized_0_1": ((0.0,) * 3, (1.0,) * 3),
    "Normalized_1_1": ((0.5,) * 3, (0.5,) * 3),
    "NominalRange_0_255": ((0.0,) * 3, (1 / 255,) * 3),
}


def _metadata_preprocess(model, path) -> dict:
    """The file's ``preprocess`` metadata entry as a dict ({} if none)."""
    props = {p.key: p.value for p in model.metadata_props}
    if "preprocess" not in props:
        return {}
    try:
        value = json.loads(props["preprocess"])
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise OnnxError(f"{path}: its metadata 'preprocess' is not a JSON object")
    return value


def _meta(model, path, shape, nodes, opset, notes):
    from minicnn.io import imagenet
    from minicnn.io.images import MAX_SIDE, Preprocess
    C, H, W = shape if len(shape) == 3 else (shape[0], None, None)
    props = {p.key: p.value for p in model.metadata_props}
    K = nodes[-1][1].out_features if hasattr(nodes[-1][1], "out_features") else None
    meta = {"name": path.stem,
            "description": f"{model.producer_name or 'an'} ONNX model converted by minicnn",
            "source": {"file": path.name, "sha256": _sha256(path)}}
    if C == 3 and H == W:
        given = _metadata_preprocess(model, path)
        default = imagenet.PREPROCESS
        if given:
            how = "the file's metadata (preprocess)"
        elif props.get("Image.NominalPixelRange") in _PIXEL_RANGES:
            mean, std = _PIXEL_RANGES[props["Image.NominalPixelRange"]]
            given = {"mean": mean, "std": std}
            how = (f"the file's metadata (Image.NominalPixelRange "
                   f"{props['Image.NominalPixelRange']})")
        else:
            how = "ImageNet's defaults (the file does not say)"
        settings = {"resize": min(MAX_SIDE, round(H * default.resize / default.crop)),
                    "crop": H, "mean": default.mean, "std": default.std,
                    "resample": default.resample, **given}
        try:
            prep = Preprocess(**{k: settings[k]
                                 for k in ("resize", "crop", "mean", "std", "resample")})
        except (TypeError, ValueError) as e:
            raise OnnxError(f"{path}: bad preprocessing in its metadata: {e}") from None
        if prep.crop != H:
            raise OnnxError(f"{path}: its metadata crops {prep.crop} pixels, its input is {H}")
        meta.update(input_shape=[3, H, W], preprocess=prep.to_meta())
        notes.append(f"preprocessing: {how}: resize {prep.resize}, crop {prep.crop}, mean "
                     f"{list(prep.mean)}, std {list(prep.std)}, {prep.resample}")
    else:
        notes.append(f"input {'x'.join(map(str, shape))}: not a square colour image, so no "
                     f"preprocessing is recorded")
    names = props.get("class_names")
    if names is not None:
        try:
            names = json.loads(names)
        except (ValueError, RecursionError):
            names = None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                and (K is None or len(names) == K)):
            raise OnnxError(f"{path}: its metadata 'class_names' is not a JSON list of "
                            f"{K} strings")
        meta["class_names"] = names
    elif K == 1000:
        meta["class_names"] = list(imagenet.class_names())
        notes.append("class names: ImageNet's (1000 outputs; the file names none)")
    meta["onnx"] = {"opset": opset, "ir_version": model.ir_version,
                    "producer": f"{model.producer_name} {model.producer_version}".strip(),
                    "notes": notes}
    return meta


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
