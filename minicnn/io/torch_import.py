"""Build a minicnn model from a PyTorch model, weights included, by tracing it with torch.fx.

``from_torch(module)`` records what ``module.forward`` does with ``torch.fx.symbolic_trace``'s
machinery: a graph of calls to leaf modules (Conv2d, ReLU, ...) and functions (``+``,
``torch.cat``, ``torch.flatten``, ``F.relu``). Each becomes a minicnn node:

- a module call is named by its PyTorch module path, so the state_dict keys stay PyTorch's
  (``layer1.0.conv1``, ``features.3.expand3x3``); a module called again is a new node with
  ``.1``, ``.2`` appended (torchvision's blocks call one ``relu`` two or three times:
  ``layer1.0.relu``, ``layer1.0.relu.1``); a module registered under several names (one ReLU
  at two places of an ``nn.Sequential``) takes its k-th name at its k-th call;
- a function is named by the module whose forward called it and the operation:
  ``layer1.0.add`` (the skip connection's ``out += identity``), ``features.3.cat``, and
  ``flatten`` at the top level; ``x.view(x.size(0), -1)`` is a Flatten too.
- a few torch idioms are recognised as a whole and become one node each: ShuffleNet's
  ``channel_shuffle`` (``x.view(b, g, c // g, h, w)``, ``torch.transpose(x, 1, 2)``,
  ``.contiguous()``, ``x.view(b, c, h, w)``: a ``ChannelShuffle``,
  ``<scope>.channel_shuffle``),
  ``x.chunk(n, dim=1)`` (one ``ChannelSlice`` per part used: ``<scope>.chunk``, ``.chunk.1``),
  ``x.mean([2, 3])`` (a global ``AdaptiveAvgPool2d`` ``<scope>.mean``, then a ``Flatten``
  unless keepdim), and GoogLeNet's ``transform_input`` (each input channel sliced out,
  scaled, shifted and concatenated again: a per-channel affine map, which becomes a 1x1
  depthwise ``Conv2d`` named ``<scope>.transform_input`` holding the scales and shifts).
  Shape arithmetic (``x.size()``, ``x.shape[i]``, ``c // g``) makes no node.
- Supported: ``SUPPORTED`` below. Anything else is refused with an error that names the
  module or function, the node and the line of the forward that made it, rather than
  imported approximately.

A ``BatchNorm2d`` whose input is a convolution read by nothing else is folded into it with its
running statistics (eval-mode semantics, ``fold_batchnorm``): the conv keeps its name and the
BatchNorm node disappears; ``fold_batchnorm=False`` keeps it as a layer (the same function,
tested equal). The result is a ``Sequential`` when the graph is a chain (an ``nn.Sequential``,
a VGG), else a ``Graph``.

torch is imported inside ``from_torch`` only: ``import minicnn`` works without it.
"""
from __future__ import annotations

import operator
import re

import numpy as np

from minicnn.engine.layers import (AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d, ChannelShuffle,
                                   ChannelSlice, Concat, Conv2d, Dropout, Flatten, Hardsigmoid,
                                   Hardswish, Hardtanh, Linear, MaxPool2d, Mul, ReLU, ReLU6,
                                   Sigmoid, SiLU, ZeroPad2d, fold_batchnorm, pair)
from minicnn.engine.model import INPUT, as_model

__all__ = ["from_torch", "fold_batchnorm", "SUPPORTED"]

SUPPORTED = ("modules Conv2d (any groups and dilation, zero padding), BatchNorm2d, ReLU, ReLU6, "
             "Hardtanh, Hardswish, Hardsigmoid, SiLU, Sigmoid, MaxPool2d, AvgPool2d, "
             "AdaptiveAvgPool2d, ZeroPad2d, ConstantPad2d(value 0), ChannelShuffle, Flatten, "
             "Linear, Dropout, Identity, torchvision's StochasticDepth; functions + and * "
             "(two tensors), torch.cat(dim=1), torch.flatten(x, 1), x.view(x.size(0), -1), "
             "x.mean([2, 3]), x.chunk(n, dim=1), ShuffleNet's channel_shuffle, GoogLeNet's "
             "transform_input, F.relu, F.relu6, F.hardtanh, F.hardswish, F.hardsigmoid, "
             "F.silu, torch.sigmoid, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, "
             "F.pad (zeros), F.dropout")


def from_torch(module, fold_batchnorm: bool = True):
    """A minicnn model computing what ``module`` computes in eval mode, with its weights
    copied in its dtype (float32 or float64): a ``Sequential`` for a chain, else a ``Graph``.

    Raises TypeError for something that is not a torch module (or mixed dtypes) and
    ValueError naming the unsupported module or function, and where it occurs."""
    import torch
    from torch import fx

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    dtype = _numpy_dtype(module)
    try:
        graph = _ScopeTracer(fx).trace(module)
    except Exception as e:  # fx refuses data-dependent control flow, *args, ...
        raise ValueError(f"from_torch: cannot trace {type(module).__name__} with torch.fx "
                         f"({str(e).splitlines()[0]})") from None
    nodes = _Converter(module, dtype, torch).run(graph)
    nodes = _prune(nodes)
    if fold_batchnorm:
        nodes = _fold_batchnorms(nodes)
    return as_model(nodes)


# ----------------------------------------------------------------------------- tracing

def _ScopeTracer(fx):
    """An fx.Tracer that stamps on every node the path of the module whose forward made it
    (``node.meta["minicnn_scope"]``), through its public hooks only."""

    class ScopeTracer(fx.Tracer):
        def __init__(self):
            super().__init__()
            self.record_stack_traces = True  # for error messages: the line of the forward
            self.module_paths = [""]  # (fx.Tracer has a `scope` of its own)

        def is_leaf_module(self, m, path):
            # StochasticDepth is the identity in eval: one node-less call, as nn.Identity
            return _is_stochastic_depth(m) or super().is_leaf_module(m, path)

        def call_module(self, m, forward, args, kwargs):
            path = self.path_of_module(m)
            if self.is_leaf_module(m, path):
                return super().call_module(m, forward, args, kwargs)
            self.module_paths.append(path)
            try:
                return super().call_module(m, forward, args, kwargs)
            finally:
                self.module_paths.pop()

        def create_proxy(self, kind, target, args, kwargs, *rest, **options):
            proxy = super().create_proxy(kind, target, args, kwargs, *rest, **options)
            proxy.node.meta["minicnn_scope"] = self.module_paths[-1]
            return proxy

    return ScopeTracer()


def _where(node) -> str:
    """Where ``node`` comes from: its module path, or the module whose forward called the
    function, and the line of that forward if it is the user's (not inside torch)."""
    if node.op == "call_module":
        at = repr(node.target)
    else:
        scope = node.meta.get("minicnn_scope", "")
        at = f"the forward of {scope!r}" if scope else "the top-level forward"
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)',
                        node.meta.get("stack_trace") or "")
    for file, line, function, code in reversed(frames):
        if "/torch/" not in file and file != __file__:
            return f"{at} ({file}:{line}: {code.strip()})"
    return at


_PREVIOUS = "<the node made just before>"  # an input of the second node a torch call becomes


class _Converter:
    """Walks an fx graph in order and turns each node into (name, layer, inputs) triples."""

    def __init__(self, module, dtype, torch):
        self.torch, self.dtype = torch, dtype
        self.modules = dict(module.named_modules())
        self.paths = {}  # id(module) -> every name it is registered under, in order
        for path, m in module.named_modules(remove_duplicate=False):
            self.paths.setdefault(id(m), []).append(path)
        self.calls = {}  # base name -> how many nodes it has named so far
        self.name_of = {}  # fx node -> minicnn name ("input", or a node's name)
        self.channels = {INPUT: None}  # minicnn name -> its output's channel count, if known
        # fx nodes that are part of a recognised idiom and make no node of their own: the
        # first steps of a channel shuffle or a chunk (-> what they are), and the slices,
        # scalings and shifts of a per-channel affine map (-> None)
        self.pending = {}
        self.affines = {}  # the torch.cat that ends such a map -> (source, scales, shifts)

    def refuse(self, node, what):
        raise ValueError(f"from_torch: unsupported {what} at {_where(node)}; supported: "
                         f"{SUPPORTED}")

    def fresh(self, base, module=None):
        """base, then base.1, base.2, ...; a module registered under several names takes its
        k-th name at its k-th call."""
        k = self.calls.get(base, 0)
        self.calls[base] = k + 1
        names = self.paths.get(id(module), [base]) if module is not None else [base]
        return names[k] if k < len(names) else f"{base}.{k}"

    def run(self, graph):
        for node in graph.nodes:
            if node.op == "call_function" and node.target is self.torch.cat:
                self.match_channel_affine(node)
        nodes, taken, placeholders = [], set(), 0
        for node in graph.nodes:
            if node in self.pending:
                continue
            if node.op == "placeholder":
                placeholders += 1
                if placeholders > 1:
                    self.refuse(node, f"second forward argument {node.target!r} (one image "
                                      f"input only)")
                self.name_of[node] = INPUT
            elif node.op == "output":
                result = node.args[0]
                if not hasattr(result, "op") or self.name_of.get(result) is None:
                    self.refuse(node, "output (the forward must return one tensor)")
                return nodes, self.name_of[result]
            elif node.op == "call_module" and self.is_identity(self.modules[node.target]):
                self.name_of[node] = self.input_name(node, node.args[0])  # no node
            else:
                converted = self.convert(node)
                if converted is None:       # shape arithmetic, or the start of an idiom
                    continue
                name = None
                for base, layer, tensors, module in (converted if isinstance(converted, list)
                                                     else [converted]):
                    self.check_inplace(node, module)
                    new = self.fresh(base, module)
                    if new in taken:
                        self.refuse(node, f"name {new!r}, which another node already has")
                    reads = tuple(name if t is _PREVIOUS else self.input_name(node, t)
                                  for t in tensors)
                    nodes.append((new, layer, reads))
                    self.channels[new] = _channels_out(layer, [self.channels.get(r)
                                                               for r in reads])
                    taken.add(new)
                    name = new
                self.name_of[node] = name
        raise ValueError("from_torch: the traced graph has no output")

    def is_identity(self, module):
        """nn.Identity, and torchvision's StochasticDepth, the identity in eval."""
        return type(module) is self.torch.nn.Identity or _is_stochastic_depth(module)

    def input_name(self, node, tensor):
        if hasattr(tensor, "op") and tensor in self.pending:
            self.refuse(node, f"use of {tensor.name!r}, a step of a view, transpose, chunk or "
                              f"channel slice that is not one of the recognised idioms")
        if not hasattr(tensor, "op") or self.name_of.get(tensor) is None:
            self.refuse(node, f"argument {tensor!r} (not a tensor computed from the input)")
        return self.name_of[tensor]

    def check_inplace(self, node, module):
        """ReLU(inplace=True) and x.relu_() overwrite their input in PyTorch; a graph that
        reads it again elsewhere would compute something else here. Refuse that."""
        inplace = (getattr(module, "inplace", False) or node.kwargs.get("inplace", False)
                   or (node.op == "call_method" and node.target.endswith("_")))
        if inplace and node.args and hasattr(node.args[0], "users") \
                and len(node.args[0].users) > 1:
            others = sorted(u.name for u in node.args[0].users if u is not node)
            self.refuse(node, f"in-place operation on {node.args[0].name!r}, which {others} "
                              f"read too")

    def idiom(self, x) -> str:
        """What x is the first steps of: "view", "transposed", "chunk", or ""."""
        step = self.pending.get(x) if hasattr(x, "op") else None
        return step[0] if step else ""

    def start_idiom(self, node, what):
        """node is the first step of a recognised idiom; its one reader must be the next."""
        if len(node.users) != 1 and what[0] != "chunk":
            self.refuse(node, f"{node.target} whose result {sorted(u.name for u in node.users)} "
                              f"read (only ShuffleNet's channel shuffle is recognised)")
        self.pending[node] = what

    # --- one fx node -> (base name, layer, tensor arguments, module or None), a list of them --
    # --- (a torch call that is two minicnn nodes), or None (no node) ---------------------------

    def convert(self, node):
        scope = node.meta.get("minicnn_scope", "")
        scoped = (lambda op: f"{scope}.{op}" if scope else op)
        args, kwargs = node.args, node.kwargs
        if node.op == "call_module":
            module = self.modules[node.target]
            layer = self.layer_of(node, module)
            return node.target, layer, [a for a in args if hasattr(a, "op")], module
        torch, F = self.torch, self.torch.nn.functional
        function = node.target if node.op == "call_function" else None
        method = node.target if node.op == "call_method" else None
        if _is_shape_value(node):
            return None                     # x.size(), x.shape[0], c // g: no tensor
        if node in self.affines:
            source, scales, shifts = self.affines[node]
            return scoped("transform_input"), self.channel_affine(scales, shifts), [source], None
        if function in (operator.add, operator.iadd, torch.add) or method in ("add", "add_"):
            if len(args) != 2 or not all(hasattr(a, "op") for a in args) or kwargs:
                self.refuse(node, "addition (only of two tensors, without alpha)")
            return scoped("add"), Add(), list(args), None
        if function in (operator.mul, torch.mul) or method == "mul":
            if len(args) != 2 or not all(hasattr(a, "op") for a in args) or kwargs:
                self.refuse(node, "multiplication (only of two tensors, as a gate times the "
                                  "features)")
            return scoped("mul"), Mul(), list(args), None
        if function is torch.cat:
            tensors = args[0]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if dim not in (1, -3):
                self.refuse(node, f"torch.cat with dim={dim!r} (only the channel axis, 1)")
            return scoped("cat"), Concat(), list(tensors), None
        if function is torch.flatten or method == "flatten":
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            if (start, end) != (1, -1):
                self.refuse(node, f"flatten with start_dim={start}, end_dim={end} (only 1, -1)")
            return scoped("flatten"), Flatten(), [args[0]], None
        if method in ("view", "reshape") or function is torch.reshape:
            return self.view(node, scoped)
        if (function is torch.transpose or method == "transpose") \
                and self.idiom(args[0]) == "view" and sorted(args[1:3]) == [1, 2]:
            self.start_idiom(node, ("transposed",) + self.pending[args[0]][1:])
            return None
        if method == "contiguous" and self.idiom(args[0]):
            self.start_idiom(node, self.pending[args[0]])
            return None
        if function is torch.chunk or method == "chunk":
            a = _arguments(args, kwargs, ("input", "chunks", "dim"), {"dim": 0})
            if a["dim"] not in (1, -3):
                self.refuse(node, f"chunk along dim={a['dim']} (only the channel axis, 1)")
            self.start_idiom(node, ("chunk", a["input"], a["chunks"]))
            return None
        if function is operator.getitem and self.idiom(args[0]) == "chunk":
            return scoped("chunk"), self.chunk_part(node, *self.pending[args[0]][1:], args[1]), \
                [self.pending[args[0]][1]], None
        if function is torch.mean or method == "mean":
            a = _arguments(args, kwargs, ("input", "dim", "keepdim"), {"keepdim": False})
            dims = a.get("dim")
            dims = sorted(d % 4 for d in (dims if isinstance(dims, (list, tuple)) else [dims])) \
                if dims is not None else None
            if dims != [2, 3] or "dtype" in kwargs:
                self.refuse(node, f"mean over dim={a.get('dim')} (only the spatial axes, [2, 3])")
            pool = (scoped("mean"), AdaptiveAvgPool2d(1), [a["input"]], None)  # (N, C, 1, 1)
            return [pool] if a["keepdim"] else [pool, (scoped("flatten"), Flatten(),
                                                       [_PREVIOUS], None)]    # (N, C)
        activation = self.activation_function(node, function, method)
        if activation is not None:
            return scoped(activation[0]), activation[1], [args[0]], None
        if function is F.adaptive_avg_pool2d:
            size = args[1] if len(args) > 1 else kwargs.get("output_size")
            return scoped("adaptive_avg_pool2d"), AdaptiveAvgPool2d(size), [args[0]], None
        if function is F.avg_pool2d:
            a = _arguments(args, kwargs, ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                          "count_include_pad", "divisor_override"),
                           {"stride": None, "padding": 0, "ceil_mode": False,
                            "count_include_pad": True, "divisor_override": None})
            if a["divisor_override"] is not None:
                self.refuse(node, f"F.avg_pool2d with divisor_override={a['divisor_override']} "
                                  f"(only None)")
            layer = AvgPool2d(a["kernel_size"], a["stride"] or None, a["padding"], a["ceil_mode"],
                              a["count_include_pad"])
            return scoped("avg_pool2d"), layer, [a["input"]], None
        if function is F.pad:
            a = _arguments(args, kwargs, ("input", "pad", "mode", "value"),
                           {"mode": "constant", "value": None})
            pad = tuple(a["pad"])
            if a["mode"] != "constant" or a["value"] not in (None, 0) or len(pad) != 4 \
                    or min(pad) < 0:
                self.refuse(node, f"F.pad with pad={pad}, mode={a['mode']!r}, value={a['value']} "
                                  f"(only 4 sides >= 0 of zeros)")
            return scoped("pad"), ZeroPad2d(pad), [a["input"]], None
        if function is F.dropout:
            a = _arguments(args, kwargs, ("input", "p", "training"), {"p": 0.5, "training": True})
            if a["training"]:
                self.refuse(node, "F.dropout with training=True (put the module in eval mode)")
            return scoped("dropout"), Dropout(a["p"]), [a["input"]], None
        what = (f"function {getattr(function, '__module__', '')}."
                f"{getattr(function, '__name__', function)}" if function is not None else
                f"tensor method .{method}()" if method is not None else
                f"use of the parameter or buffer {node.target!r} outside a module call"
                if node.op == "get_attr" else f"{node.op} {node.target!r}")
        self.refuse(node, what)

    def activation_function(self, node, function, method):
        """(op name, layer) for F.relu, torch.sigmoid, x.relu(), ...; None for anything else."""
        torch, F = self.torch, self.torch.nn.functional
        if function in (F.relu, torch.relu) or method in ("relu", "relu_"):
            return "relu", ReLU()
        if function in (torch.sigmoid, F.sigmoid) or method == "sigmoid":
            return "sigmoid", Sigmoid()
        if function is F.hardtanh:
            a = _arguments(node.args, node.kwargs, ("input", "min_val", "max_val"),
                           {"min_val": -1.0, "max_val": 1.0})
            return "hardtanh", Hardtanh(a["min_val"], a["max_val"])
        simple = {F.relu6: ("relu6", ReLU6), F.hardswish: ("hardswish", Hardswish),
                  F.hardsigmoid: ("hardsigmoid", Hardsigmoid), F.silu: ("silu", SiLU)}
        if function in simple:
            return simple[function][0], simple[function][1]()
        return None

    def view(self, node, scoped):
        """x.view(x.size(0), -1) is a Flatten; the two views of a channel shuffle (the first
        starts it, the second, after the transpose, ends it); nothing else."""
        x = node.args[0]
        shape = list(node.args[1]) if len(node.args) == 2 and isinstance(
            node.args[1], (list, tuple)) else list(node.args[1:])
        if len(shape) == 2 and _is_size(shape[0], None, 0) and shape[1] == -1:
            return scoped("flatten"), Flatten(), [x], None
        if (len(shape) == 5 and not self.idiom(x) and isinstance(shape[1], int)
                and all(_is_size(shape[i], x, d) for i, d in ((0, 0), (3, 2), (4, 3)))):
            self.start_idiom(node, ("view", x, shape[1]))   # (N, groups, C // groups, H, W)
            return None
        if self.idiom(x) == "transposed" and len(shape) == 4:
            _, source, groups = self.pending[x]
            if all(_is_size(shape[i], source, i) or (i == 1 and shape[i] == -1)
                   for i in range(4)):
                return scoped("channel_shuffle"), ChannelShuffle(groups), [source], None
        self.refuse(node, f"{node.target} to the shape {shape} (only x.view(x.size(0), -1) and "
                          f"ShuffleNet's channel shuffle)")

    def chunk_part(self, node, x, chunks, index):
        """Part `index` of x.chunk(chunks, dim=1): torch makes parts of ceil(C / chunks)
        channels, the last one smaller."""
        C = self.channels.get(self.input_name(node, x))
        if C is None:
            self.refuse(node, f"chunk of {x.name!r}, whose channel count is not known here")
        size = -(-C // chunks)
        parts = -(-C // size)
        if not isinstance(index, int) or not -parts <= index < parts:
            self.refuse(node, f"part {index!r} of a chunk into {parts} parts")
        start = (index % parts) * size
        return ChannelSlice(start, min(start + size, C))

    def match_channel_affine(self, cat):
        """GoogLeNet's transform_input, torch.cat([x[:, c] unsqueezed * a_c + b_c for each c],
        1): remember (x, scales, shifts) for the cat, and mark the steps as making no node."""
        tensors = cat.args[0]
        dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
        if dim not in (1, -3) or not isinstance(tensors, (list, tuple)):
            return
        source, scales, shifts, steps = None, [], [], []
        for c, t in enumerate(tensors):
            found = _channel_affine_steps(t, self.torch)
            if found is None or found[1] != c or (source is not None and found[0] is not source):
                return
            source = found[0]
            scales.append(found[2])
            shifts.append(found[3])
            steps += found[4]
        self.affines[cat] = (source, scales, shifts)
        self.pending.update({step: None for step in steps})

    def channel_affine(self, scales, shifts):
        """x * scale + shift per channel as a 1x1 depthwise convolution."""
        C = len(scales)
        layer = Conv2d(C, C, 1, groups=C, dtype=self.dtype, init=False)
        layer.weight = np.asarray(scales, self.dtype).reshape(C, 1, 1, 1)  # (F, C // groups, 1, 1)
        layer.bias = np.asarray(shifts, self.dtype)
        return layer

    def layer_of(self, node, m):
        """A leaf torch module -> the minicnn layer with its weights, or a refusal."""
        nn = self.torch.nn
        kind = type(m)
        if kind is nn.Conv2d:
            return self.conv(node, m)
        if kind is nn.BatchNorm2d:
            if m.running_mean is None or m.running_var is None:
                self.refuse(node, "BatchNorm2d with track_running_stats=False (eval needs "
                                  "running statistics)")
            layer = BatchNorm2d(m.num_features, m.eps, dtype=self.dtype, init=False)
            layer.weight = _array(m.weight, self.dtype, np.ones(m.num_features))
            layer.bias = _array(m.bias, self.dtype, np.zeros(m.num_features))
            layer.running_mean = _array(m.running_mean, self.dtype)
            layer.running_var = _array(m.running_var, self.dtype)
            return layer
        activations = {nn.ReLU: ReLU, nn.ReLU6: ReLU6, nn.Hardswish: Hardswish,
                       nn.Hardsigmoid: Hardsigmoid, nn.SiLU: SiLU, nn.Sigmoid: Sigmoid}
        if kind in activations:
            return activations[kind]()
        if kind is nn.Hardtanh:
            return Hardtanh(m.min_val, m.max_val)
        if kind is nn.Dropout:
            return Dropout(m.p)  # the identity in eval
        if kind is nn.Flatten:
            if (m.start_dim, m.end_dim) != (1, -1):
                self.refuse(node, f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) "
                                  f"(only 1, -1)")
            return Flatten()
        if kind is nn.Linear:
            layer = Linear(m.in_features, m.out_features, bias=m.bias is not None,
                           dtype=self.dtype, init=False)
            layer.weight, layer.bias = _array(m.weight, self.dtype), _array(m.bias, self.dtype)
            return layer
        if kind is nn.MaxPool2d:
            if pair(m.dilation, "dilation") != (1, 1) or m.return_indices:
                self.refuse(node, f"MaxPool2d with dilation={m.dilation}, return_indices="
                                  f"{m.return_indices} (only 1, False)")
            return MaxPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
        if kind is nn.AvgPool2d:
            if m.divisor_override is not None:
                self.refuse(node, f"AvgPool2d with divisor_override={m.divisor_override} "
                                  f"(only None)")
            return AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                             m.count_include_pad)
        if kind is nn.AdaptiveAvgPool2d:
            sizes = m.output_size if isinstance(m.output_size, (tuple, list)) else [m.output_size]
            if None in sizes:
                self.refuse(node, f"AdaptiveAvgPool2d(output_size={m.output_size}) (None "
                                  f"entries; only ints)")
            return AdaptiveAvgPool2d(m.output_size)
        if kind is nn.ZeroPad2d or (kind is nn.ConstantPad2d and m.value == 0):
            if min(m.padding) < 0:
                self.refuse(node, f"{kind.__name__} with the negative padding {m.padding} "
                                  f"(a crop; only >= 0)")
            return ZeroPad2d(tuple(m.padding))
        if kind is nn.ChannelShuffle:
            return ChannelShuffle(m.groups)
        self.refuse(node, f"module {kind.__name__}")

    def conv(self, node, m):
        if m.padding_mode != "zeros":
            self.refuse(node, f"Conv2d with padding_mode={m.padding_mode!r} (only 'zeros')")
        padding = m.padding
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":  # stride is 1; symmetric when the kernel's span is odd
            span = tuple(d * (k - 1) for d, k in zip(m.dilation, m.kernel_size))
            if any(s % 2 for s in span):
                self.refuse(node, f"Conv2d with padding='same' and the even kernel "
                                  f"{m.kernel_size} (dilation {m.dilation}: asymmetric padding)")
            padding = tuple(s // 2 for s in span)
        layer = Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, padding,
                       bias=m.bias is not None, groups=m.groups, dilation=m.dilation,
                       dtype=self.dtype, init=False)
        layer.weight, layer.bias = _array(m.weight, self.dtype), _array(m.bias, self.dtype)
        return layer


def _arguments(args, kwargs, names, defaults=None) -> dict:
    """A call's arguments by parameter name: the positional ones in the order of `names`,
    then the keywords, then `defaults` for what neither gave."""
    values = dict(defaults or {})
    values.update(zip(names, args))
    values.update(kwargs)
    return values


def _is_stochastic_depth(module) -> bool:
    """torchvision.ops.StochasticDepth (matched by name: torchvision need not be installed)."""
    kind = type(module)
    return kind.__name__ == "StochasticDepth" and kind.__module__.startswith("torchvision.")


def _is_size(a, x, dim) -> bool:
    """``a`` is ``x.size(dim)``, ``x.size()[dim]`` or ``x.shape[dim]`` (x=None: of any tensor)."""
    if not hasattr(a, "op"):
        return False
    if a.op == "call_method" and a.target == "size" and a.args[1:] == (dim,):
        return x is None or a.args[0] is x
    if a.op == "call_function" and a.target is operator.getitem and a.args[1] == dim:
        g = a.args[0]
        whole = hasattr(g, "op") and (
            (g.op == "call_method" and g.target == "size" and len(g.args) == 1)
            or (g.op == "call_function" and g.target is getattr and g.args[1] == "shape"))
        return whole and (x is None or g.args[0] is x)
    return False


def _is_shape_value(node) -> bool:
    """``node`` computes sizes, not a tensor: x.size(), x.shape, an item of those, or
    arithmetic on them (ShuffleNet's ``num_channels // groups``)."""
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op != "call_function":
        return False
    if node.target is getattr:
        return node.args[1] in ("shape", "ndim")
    if node.target in (operator.getitem, operator.floordiv, operator.mul, operator.add,
                       operator.sub):
        inputs = [a for a in node.args if hasattr(a, "op")]
        return bool(inputs) and all(_is_shape_value(a) for a in inputs)
    return False


def _channel_affine_steps(t, torch):
    """``t`` is ``x[:, c]`` unsqueezed at 1, times a number, plus a number, each step read
    only by the next -> (x, c, scale, shift, [the steps]); else None."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def operand(node, ops):
        """node = op(tensor, number) or op(number, tensor) with op in ops -> (tensor, number)"""
        if not (hasattr(node, "op") and node.op == "call_function" and node.target in ops
                and len(node.args) == 2 and not node.kwargs and len(node.users) == 1):
            return None
        a, b = node.args
        return (a, b) if number(b) and hasattr(a, "op") else \
            (b, a) if number(a) and hasattr(b, "op") else None

    added = operand(t, (operator.add, torch.add))
    scaled = added and operand(added[0], (operator.mul, torch.mul))
    if not scaled:
        return None
    u = scaled[0]
    if not (u.op in ("call_function", "call_method") and u.target in (torch.unsqueeze, "unsqueeze")
            and u.args[1:] == (1,) and len(u.users) == 1):
        return None
    g = u.args[0]
    if not (hasattr(g, "op") and g.op == "call_function" and g.target is operator.getitem
            and len(g.users) == 1 and isinstance(g.args[1], tuple) and len(g.args[1]) == 2
            and g.args[1][0] == slice(None) and isinstance(g.args[1][1], int)):
        return None
    return g.args[0], g.args[1][1], scaled[1], added[1], [g, u, added[0], t]


def _channels_out(layer, inputs):
    """The channel count of a layer's output, given its inputs' (None where not known)."""
    if isinstance(layer, Conv2d):
        return layer.out_channels
    if isinstance(layer, BatchNorm2d):
        return layer.num_features
    if isinstance(layer, ChannelSlice):
        return layer.stop - layer.start
    if isinstance(layer, Concat):
        return None if None in inputs else sum(inputs)
    if isinstance(layer, (Flatten, Linear)):
        return None
    return inputs[0] if inputs else None  # elementwise, pools, padding, Mul's (N, C, ...)


# ----------------------------------------------------------------------------- the graph

def _prune(converted):
    """Keep the nodes the output depends on, in order; the output node comes last."""
    nodes, output = converted
    needed, reads = {output}, {name: r for name, _, r in nodes}
    for name, _, _ in reversed(nodes):
        if name in needed:
            needed.update(r for r in reads[name] if r != INPUT)
    kept = [n for n in nodes if n[0] in needed]
    if kept[-1][0] != output:  # the output was computed before nodes it does not need
        kept = [n for n in kept if n[0] != output] + [n for n in kept if n[0] == output]
    return kept


def _fold_batchnorms(nodes):
    """Fold every BatchNorm whose input is a Conv2d read by nothing else into that conv."""
    readers = {}
    for name, _, reads in nodes:
        for r in reads:
            readers.setdefault(r, []).append(name)
    layers = {name: layer for name, layer, _ in nodes}
    renamed, out = {}, []  # a folded BatchNorm's readers read its conv instead
    for name, layer, reads in nodes:
        reads = tuple(renamed.get(r, r) for r in reads)
        source = layers.get(reads[0]) if len(reads) == 1 else None
        if (isinstance(layer, BatchNorm2d) and isinstance(source, Conv2d)
                and readers[reads[0]] == [name]):
            w, b = fold_batchnorm(source.weight, source.bias, layer.weight, layer.bias,
                                  layer.running_mean, layer.running_var, layer.eps)
            folded = Conv2d(source.in_channels, source.out_channels, source.kernel_size,
                            source.stride, source.padding, bias=True, groups=source.groups,
                            dilation=source.dilation, dtype=w.dtype, init=False)
            folded.weight, folded.bias = np.ascontiguousarray(w), b
            out = [(n, folded if n == reads[0] else l, r) for n, l, r in out]
            layers[reads[0]] = folded
            renamed[name] = reads[0]
            continue
        out.append((name, layer, reads))
    return out


def _numpy_dtype(module):
    import torch

    dtypes = {p.dtype for p in module.parameters()} | {b.dtype for b in module.buffers()
                                                       if b.is_floating_point()}
    mapping = {torch.float32: np.float32, torch.float64: np.float64}
    if not dtypes:
        return np.float32
    if len(dtypes) > 1 or next(iter(dtypes)) not in mapping:
        raise TypeError(f"from_torch: parameters must all be float32 or all float64, got "
                        f"{sorted(str(d) for d in dtypes)}")
    return mapping[next(iter(dtypes))]


def _array(tensor, dtype, default=None):
    if tensor is None:
        return None if default is None else np.asarray(default, dtype)
    return tensor.detach().cpu().numpy().astype(dtype, copy=True)



