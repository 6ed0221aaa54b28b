"""An ONNX graph -> minicnn nodes: the values that flow, their shapes, and the folds.

Every ONNX value is one of two things while the graph is walked in order:

- a CONSTANT (an initializer, a Constant node, or anything computed from constants alone, as
  exporters' Shape -> Gather -> Unsqueeze -> Concat chains and the Unsqueeze/Mul/Add chains of
  a decomposed BatchNorm): a numpy array, computed here once (``constant_ops``);
- an ACTIVATION, computed from the image: the minicnn node that computes it and its shape per
  image, without the batch axis ((C, H, W), or (D,) after a flatten).

An operator on activations becomes a minicnn node (``operators``). A few are folded into the
node before them instead, when that node's output is read by nothing else, so that the network
has the layers a person would have written: a BatchNormalization after a Conv or Gemm goes into
its weights and bias, and so does a multiplication or addition by a constant that is the same
at every pixel of a channel (x * scale[c] + shift[c]); elsewhere such a per-channel map is a
1x1 depthwise convolution. Identity and Dropout make no node (their readers read their input).

Each node takes its ONNX node's name (so that ``--layer`` can name it), or, for a node without
one, the name of its first output; a clash gets ".1", ".2" appended.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from minicnn.engine.layers import BatchNorm2d, Conv2d, Linear
from minicnn.engine.model import INPUT
from minicnn.io.onnx.reader import (MAX_TENSOR_BYTES, OnnxError, OnnxFile, _cut,
                                    array_from_proto, read_tensor)

__all__ = ["Act", "Builder"]


@dataclass
class Act:
    """An activation: the minicnn node computing it (or "input") and its shape per image.
    ``view`` marks the two halves of a channel shuffle written as reshapes and a transpose:
    ("grouped", g) after (N, C, H, W) -> (N, g, C/g, H, W), ("shuffled", g) after the
    transpose of the two group axes."""

    node: str
    shape: tuple
    view: tuple | None = None


class Builder:
    """Walks one ONNX graph, keeping the values and the minicnn nodes made so far."""

    def __init__(self, file: OnnxFile, opset: int, batch: int):
        self.file, self.path, self.opset, self.batch = file, file.path, opset, batch
        self.consts = {}            # value name -> numpy array
        self.acts = {}              # value name -> Act
        self.nodes = []             # [name, layer, inputs], in order
        self.index = {}             # minicnn node name -> its position in self.nodes
        self.readers = Counter()    # minicnn node name -> how many ONNX inputs read its output
        self.uses = Counter()       # ONNX value name -> how many node inputs and outputs read it
        self.names = set()
        self.notes = []
        self.node = None            # the ONNX node being converted, for messages

    # --- values ---------------------------------------------------------------------------

    def is_const(self, value) -> bool:
        return value in self.consts or value in self.file.tensors

    def const(self, value, what="") -> np.ndarray:
        """The constant ``value``: computed, or an initializer read now (not kept, so that a
        weight is in memory once, in the layer that takes it)."""
        if value in self.consts:
            return self.consts[value]
        if value in self.file.tensors:
            array = read_tensor(self.file, value)
            if array.nbytes <= 1 << 20:        # shapes, axes, BatchNorm statistics
                self.consts[value] = array
            return array
        raise self.refuse(f"{what or 'an input'} {_cut(repr(value))} must be a constant (an "
                          f"initializer or computed from them), and it is computed from the "
                          f"image")

    def act(self, value) -> Act:
        if value not in self.acts:
            if self.is_const(value):
                raise self.refuse(f"input {_cut(repr(value))} is a constant where minicnn "
                                  f"expects a value computed from the image")
            raise self.refuse(f"input {_cut(repr(value))} is produced by no node before it")
        return self.acts[value]

    def alias(self, value, act: Act):
        """``value`` is ``act`` itself (Identity, Dropout, a fold): its readers read that node."""
        self.acts[value] = act
        if act.node != INPUT:
            self.readers[act.node] += self.uses[value] - 1

    def add(self, layer, inputs, shape, name=None, out=None) -> Act:
        """A new minicnn node reading the activations ``inputs``; its output is ONNX value
        ``out`` (default: the node's first output)."""
        name = self.fresh(name or self.name())
        out = self.node.output[0] if out is None else out
        self.index[name] = len(self.nodes)
        self.nodes.append([name, layer, tuple(a.node for a in inputs)])
        act = Act(name, tuple(int(d) for d in shape))
        self.acts[out] = act
        self.readers[name] = self.uses[out]
        return act

    def name(self) -> str:
        node = self.node
        return node.name or (node.output[0] if node.output else "") or node.op_type

    def fresh(self, base) -> str:
        if len(base) > 1000:
            raise self.refuse(f"a node name of {len(base):,} characters")
        base = base if base != INPUT else f"{INPUT}.node"
        name, k = base, 0
        while name in self.names:
            k += 1
            name = f"{base}.{k}"
        self.names.add(name)
        return name

    def layer_of(self, act: Act):
        """The layer computing ``act``, or None for the input."""
        return None if act.node == INPUT else self.nodes[self.index[act.node]][1]

    def sole_reader(self, act: Act) -> bool:
        """Is the ONNX node being converted the only reader of ``act``'s node?"""
        return act.node != INPUT and self.readers[act.node] == 1

    # --- messages -------------------------------------------------------------------------

    def refuse(self, what) -> OnnxError:
        node = self.node
        where = (f"{node.op_type} node {_cut(repr(self.name()))}" if node is not None
                 else "the graph")
        return OnnxError(f"{self.path}: {where}: {what}")

    # --- attributes and inputs ------------------------------------------------------------

    def attrs(self) -> dict:
        from onnx import helper
        out = {}
        for a in self.node.attribute:
            if a.ref_attr_name:
                raise self.refuse(f"attribute {a.name!r} refers to a function's attribute")
            value = helper.get_attribute_value(a)
            if a.type == a.TENSOR:
                value = array_from_proto(self.path, value)
            elif a.type in (a.GRAPH, a.GRAPHS):
                raise self.refuse(f"attribute {a.name!r} holds a subgraph, which minicnn "
                                  f"does not run")
            elif isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            out[a.name] = value
        return out

    def inputs(self):
        """The node's input names; "" marks an optional input left out."""
        return list(self.node.input)

    def optional_const(self, index, default=None, what=""):
        names = self.inputs()
        if index >= len(names) or not names[index]:
            return default
        return self.const(names[index], what)

    def ints(self, values, what) -> list:
        array = np.asarray(values)
        if array.dtype.kind not in "iu" and not (array.dtype.kind == "f"
                                                 and np.all(array == np.round(array))):
            raise self.refuse(f"{what} must be integers, got {_cut(array.tolist())}")
        return [int(v) for v in array.reshape(-1)]

    # --- folds ----------------------------------------------------------------------------

    def per_channel(self, act: Act, constant, what) -> np.ndarray | None:
        """A constant that broadcasts against ``act`` (N, *shape) as one number per channel
        (or feature) -> those numbers, float64, (C,); None if it varies along another axis."""
        c = np.asarray(constant, np.float64)
        full = (1,) + act.shape
        if c.ndim > len(full):
            return None
        dims = (1,) * (len(full) - c.ndim) + c.shape
        C = act.shape[0]
        if dims[0] != 1 or dims[1] not in (1, C) or any(d != 1 for d in dims[2:]):
            return None
        return np.broadcast_to(c.reshape(-1), (C,)).astype(np.float64) if dims[1] == 1 \
            else c.reshape(C)

    def affine(self, act: Act, scale, shift, out=None, name=None) -> Act:
        """act * scale[c] + shift[c] (scale, shift: (C,) float64). Folded into the Conv2d,
        Linear or BatchNorm2d that computes ``act`` when nothing else reads it; else a 1x1
        depthwise Conv2d (a per-channel affine map) for an image, refused for a vector."""
        out = self.node.output[0] if out is None else out
        layer = self.layer_of(act)
        if self.sole_reader(act) and isinstance(layer, (Conv2d, Linear)):
            w = np.asarray(layer.weight, np.float64)
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            b = 0.0 if layer.bias is None else np.asarray(layer.bias, np.float64)
            layer.weight = w.astype(np.float32)
            layer.bias = (b * scale + shift).astype(np.float32)
            self.alias(out, act)
            return act
        if self.sole_reader(act) and isinstance(layer, BatchNorm2d):
            layer.weight = (np.asarray(layer.weight, np.float64) * scale).astype(np.float32)
            layer.bias = (np.asarray(layer.bias, np.float64) * scale + shift).astype(np.float32)
            self.alias(out, act)
            return act
        if len(act.shape) != 3:
            raise self.refuse(f"a per-feature scale or shift of a {len(act.shape) + 1}-D value "
                              f"that no Gemm, MatMul or Conv before it can absorb")
        C = act.shape[0]
        conv = Conv2d(C, C, 1, groups=C, init=False)
        conv.weight = scale.reshape(C, 1, 1, 1).astype(np.float32)
        conv.bias = shift.astype(np.float32)
        return self.add(conv, [act], act.shape, name=name, out=out)

    # --- the walk -------------------------------------------------------------------------

    def count_uses(self, graph, output):
        for node in graph.node:
            for value in node.input:
                if value:
                    self.uses[value] += 1
        self.uses[output] += 1


def size_checked(path, shape, dtype, what):
    """OnnxError unless an array of ``shape`` and ``dtype`` fits MAX_TENSOR_BYTES; checked
    before a constant is computed, so that a crafted shape allocates nothing."""
    if any(d < 0 for d in shape):
        raise OnnxError(f"{path}: {what}: negative dimension in {_cut(list(shape))}")
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size > MAX_TENSOR_BYTES:
        raise OnnxError(f"{path}: {what}: shape {_cut(list(shape))} is {size:,} bytes, more "
                        f"than the limit of {MAX_TENSOR_BYTES:,}")
    return tuple(shape)
