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
- Supported: Conv2d (groups 1, dilation 1, zero padding), BatchNorm2d (eval statistics),
  ReLU, MaxPool2d (ceil_mode too), AvgPool2d, AdaptiveAvgPool2d, Flatten, Linear, Dropout,
  Identity; ``+`` / ``torch.add`` of two tensors, ``torch.cat(..., dim=1)``,
  ``torch.flatten(x, 1)``, ``F.relu`` / ``torch.relu`` and their tensor methods,
  ``F.adaptive_avg_pool2d``. Anything else is refused with an error that names the module or
  function, the node and the line of the forward that made it, rather than imported
  approximately.

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

from minicnn.engine.layers import (AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d, Concat, Conv2d,
                                   Dropout, Flatten, Linear, MaxPool2d, ReLU, fold_batchnorm, pair)
from minicnn.engine.model import INPUT, as_model

__all__ = ["from_torch", "fold_batchnorm", "SUPPORTED"]

SUPPORTED = ("modules Conv2d, BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, "
             "Flatten, Linear, Dropout, Identity; functions + (two tensors), torch.cat(dim=1), "
             "torch.flatten(x, 1), F.relu, F.adaptive_avg_pool2d")


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


class _Converter:
    """Walks an fx graph in order and turns each node into a (name, layer, inputs) triple."""

    def __init__(self, module, dtype, torch):
        self.torch, self.dtype = torch, dtype
        self.modules = dict(module.named_modules())
        self.paths = {}  # id(module) -> every name it is registered under, in order
        for path, m in module.named_modules(remove_duplicate=False):
            self.paths.setdefault(id(m), []).append(path)
        self.calls = {}  # base name -> how many nodes it has named so far
        self.name_of = {}  # fx node -> minicnn name ("input", or a node's name)

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
        nodes, placeholders = [], 0
        for node in graph.nodes:
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
            elif node.op == "call_module" and type(self.modules[node.target]) is \
                    self.torch.nn.Identity:  # no node: its readers read its input
                self.name_of[node] = self.input_name(node, node.args[0])
            else:
                converted = self.convert(node)
                if converted is None:       # part of a pattern (x.size(0) of a flatten)
                    continue
                base, layer, tensors, module = converted
                self.check_inplace(node, module)
                name = self.fresh(base, module)
                if name in {n for n, _, _ in nodes}:
                    self.refuse(node, f"name {name!r}, which another node already has")
                nodes.append((name, layer, tuple(self.input_name(node, t) for t in tensors)))
                self.name_of[node] = name
        raise ValueError("from_torch: the traced graph has no output")

    def input_name(self, node, tensor):
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

    # --- one fx node -> (base name, layer, tensor arguments, module or None) -------------------

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
        if function in (operator.add, operator.iadd, torch.add) or method in ("add", "add_"):
            if len(args) != 2 or not all(hasattr(a, "op") for a in args) or kwargs:
                self.refuse(node, "addition (only of two tensors, without alpha)")
            return scoped("add"), Add(), list(args), None
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
        if method in ("view", "reshape") and len(args) == 3 and args[2] == -1 \
                and _is_batch_size(args[1], None):  # any tensor's size(0) is the batch size
            return scoped("flatten"), Flatten(), [args[0]], None  # x.view(x.size(0), -1)
        if _is_batch_size(node, None) and all(
                u.op == "call_method" and u.target in ("view", "reshape") for u in node.users):
            return None  # the x.size(0) of the pattern above
        if (function is getattr and args[1] == "shape") and all(_is_batch_size(u, None)
                                                                for u in node.users):
            return None  # the x.shape of x.shape[0]
        if function in (F.relu, torch.relu) or method in ("relu", "relu_"):
            return scoped("relu"), ReLU(), [args[0]], None
        if function is F.adaptive_avg_pool2d:
            size = args[1] if len(args) > 1 else kwargs.get("output_size")
            return scoped("adaptive_avg_pool2d"), AdaptiveAvgPool2d(size), [args[0]], None
        what = (f"function {getattr(function, '__module__', '')}."
                f"{getattr(function, '__name__', function)}" if function is not None else
                f"tensor method .{method}()" if method is not None else
                f"use of the parameter or buffer {node.target!r} outside a module call"
                if node.op == "get_attr" else f"{node.op} {node.target!r}")
        self.refuse(node, what)

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
        if kind is nn.ReLU:
            return ReLU()
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
        self.refuse(node, f"module {kind.__name__}")

    def conv(self, node, m):
        if pair(m.dilation, "dilation") != (1, 1) or m.groups != 1 or m.padding_mode != "zeros":
            self.refuse(node, f"Conv2d with dilation={m.dilation}, groups={m.groups}, "
                              f"padding_mode={m.padding_mode!r} (only 1, 1, 'zeros')")
        padding = m.padding
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":  # symmetric only for odd kernels (stride is 1 for 'same')
            if any(k % 2 == 0 for k in m.kernel_size):
                self.refuse(node, f"Conv2d with padding='same' and the even kernel "
                                  f"{m.kernel_size} (asymmetric padding)")
            padding = tuple(k // 2 for k in m.kernel_size)
        layer = Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, padding,
                       bias=m.bias is not None, dtype=self.dtype, init=False)
        layer.weight, layer.bias = _array(m.weight, self.dtype), _array(m.bias, self.dtype)
        return layer


def _is_batch_size(a, x) -> bool:
    """``a`` is ``x.size(0)`` or ``x.shape[0]`` (x=None: of any tensor)."""
    if not hasattr(a, "op"):
        return False
    if a.op == "call_method" and a.target == "size" and a.args[1:] == (0,):
        return x is None or a.args[0] is x
    if a.op == "call_function" and a.target is operator.getitem and a.args[1] == 0:
        g = a.args[0]
        return (hasattr(g, "op") and g.op == "call_function" and g.target is getattr
                and g.args[1] == "shape" and (x is None or g.args[0] is x))
    return False


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
                            source.stride, source.padding, bias=True, dtype=w.dtype, init=False)
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



