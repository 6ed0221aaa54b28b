"""What each ONNX operator becomes in minicnn, one function per operator (ONNX's operator
specifications, onnx/docs/Operators.md, for every attribute and its default).

``ACTIVATION_OPS[op](b)`` converts the node ``b.node`` whose inputs include a value computed
from the image; ``CONSTANT_OPS[op](b)`` computes a node whose inputs are all constants, with
numpy, and returns its outputs. ``b`` is the ``graph.Builder``.

How the operators map (pads are ONNX's [top, left, bottom, right]):

- Conv -> Conv2d (group, dilations, strides); pads from ``pads`` or ``auto_pad`` (SAME_UPPER
  puts the odd pixel after, SAME_LOWER before, VALID none). Equal pads on both sides of an
  axis are the Conv2d's padding; the excess of unequal ones a ZeroPad2d before it.
- MaxPool -> MaxPool2d; AveragePool -> AvgPool2d (count_include_pad, ceil_mode); a pool with
  unequal pads is the same windows as a pool padded by the top/left pads alone whose number
  of windows the end pads decide, so it is written with the ceil_mode that gives that number
  (max: padding is never the maximum; average without the padding counted: the divisor is the
  real inputs alone); an average that counts the padding gets a ZeroPad2d of the pads, and so
  does a max-pool of values >= 0 (after a ReLU) that no ceil_mode fits (TensorFlow's 2x2,
  stride 1 "same" pool); one window over a whole axis is a pool of the axis, and an average
  of each whole map an AdaptiveAvgPool2d(1).
- GlobalAveragePool, ReduceMean over H and W -> AdaptiveAvgPool2d(1) (+ Flatten without
  keepdims); Flatten and a Reshape to (N, D) -> Flatten; Reshape (N, g, C/g, H, W), Transpose
  [0, 2, 1, 3, 4], Reshape (N, C, H, W) -> ChannelShuffle(g); Split, Slice of channels ->
  ChannelSlice; Concat of channels -> Concat; Pad with zeros -> ZeroPad2d.
- Relu, Sigmoid, HardSwish -> ReLU, Sigmoid, Hardswish; Clip -> ReLU6 (0, 6), ReLU (0, none)
  or Hardtanh; HardSigmoid -> Hardsigmoid (its alpha, beta other than 1/6, 1/2: a per-channel
  map before it); LRN -> LRN.
- Gemm -> Linear (alpha, beta, transB); MatMul by a constant -> Linear without bias (the Add
  after it becomes the bias); BatchNormalization, and Mul, Add, Sub, Div by a constant per
  channel -> folded into the Conv or Linear before, else BatchNorm2d or a 1x1 depthwise
  Conv2d; Add and Sum of two or more values -> Add; Mul of two values -> Mul.
- Dropout, Identity -> nothing (the identity at inference).
"""
from __future__ import annotations

import math

import numpy as np

from minicnn.engine.layers import (LRN, AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d,
                                   ChannelShuffle, ChannelSlice, Concat, Conv2d, Flatten,
                                   Hardsigmoid, Hardswish, Hardtanh, Linear, MaxPool2d, Mul, ReLU,
                                   ReLU6, Sigmoid, ZeroPad2d, batchnorm_scale_shift)
from minicnn.engine.model import INPUT
from minicnn.io.onnx.graph import Act, size_checked
from minicnn.io.onnx.reader import DTYPES, _cut

__all__ = ["ACTIVATION_OPS", "CONSTANT_OPS", "SUPPORTED"]

FLOAT_MAX = 3.4028234663852886e38     # Clip's default bounds before opset 11


# ----------------------------------------------------------------------------- geometry

def _pads(b, attrs, sizes, kernel, strides, dilations):
    """([top, left], [bottom, right]) from ``pads`` or ``auto_pad``."""
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = b.ints(attrs.get("pads", [0, 0, 0, 0]), "pads")
        if len(pads) != 4 or min(pads) < 0:
            raise b.refuse(f"pads {pads}: minicnn needs four pads >= 0 (two spatial axes)")
        return pads[:2], pads[2:]
    if auto == "VALID":
        return [0, 0], [0, 0]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise b.refuse(f"auto_pad {auto!r}")
    begin, end = [], []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin, end


def _windows(n, k, s, begin, end, ceil):
    """How many windows ONNX (and PyTorch) fit along an axis: with ceil_mode a last, partial
    window counts if it starts inside the input or its begin padding."""
    span = n + begin + end - k
    if span < 0:
        return 0
    count = (-(-span // s) if ceil else span // s) + 1
    if ceil and (count - 1) * s >= n + begin:
        count -= 1
    return count


def _geometry(b, attrs, act, kernel=None):
    """(kernel, strides, dilations, begin pads, end pads) of a Conv or pool on ``act``."""
    if len(act.shape) != 3 or act.view:
        raise b.refuse(f"an input of shape (N, {', '.join(map(str, act.shape))}): minicnn "
                       f"convolves and pools images (N, C, H, W)")
    kernel = b.ints(attrs.get("kernel_shape", kernel), "kernel_shape")
    strides = b.ints(attrs.get("strides", [1, 1]), "strides")
    dilations = b.ints(attrs.get("dilations", [1, 1]), "dilations")
    if len(kernel) != 2 or len(strides) != 2 or len(dilations) != 2:
        raise b.refuse(f"kernel_shape {kernel}, strides {strides}, dilations {dilations}: "
                       f"minicnn needs two spatial axes")
    if min(kernel) < 1 or min(strides) < 1 or min(dilations) < 1:
        raise b.refuse(f"kernel_shape {kernel}, strides {strides} and dilations {dilations} "
                       f"must be >= 1")
    begin, end = _pads(b, attrs, act.shape[1:], kernel, strides, dilations)
    return kernel, strides, dilations, begin, end


def _zero_pad(b, act, begin, end, name):
    """A ZeroPad2d node adding begin/end ([top, left], [bottom, right]) zeros, or ``act``."""
    if max(begin + end) == 0:
        return act
    C, H, W = act.shape
    pad = ZeroPad2d((begin[1], end[1], begin[0], end[0]))
    return b.add(pad, [act], (C, H + begin[0] + end[0], W + begin[1] + end[1]), name=name,
                 out=f"{b.node.output[0]} (padded)")


# ----------------------------------------------------------------------------- convolution

def conv(b):
    names = b.inputs()
    act = b.act(names[0])
    w = np.ascontiguousarray(b.const(names[1], "Conv's weight"), dtype=np.float32)
    bias = b.optional_const(2, None, "Conv's bias")
    if w.ndim != 4:
        raise b.refuse(f"a weight of shape {w.shape}: minicnn convolves over two axes")
    attrs = b.attrs()
    kernel, strides, dilations, begin, end = _geometry(b, attrs, act, list(w.shape[2:]))
    if kernel != list(w.shape[2:]):
        raise b.refuse(f"kernel_shape {kernel} differs from the weight's {list(w.shape[2:])}")
    groups, C, F = int(attrs.get("group", 1)), act.shape[0], w.shape[0]
    if groups < 1 or w.shape[1] * groups != C or F % groups:
        raise b.refuse(f"a weight of shape {w.shape} with group {groups} does not fit "
                       f"{C} input channels")
    if bias is not None and np.asarray(bias).shape != (F,):
        raise b.refuse(f"a bias of shape {np.asarray(bias).shape}, expected ({F},)")
    same = [min(p, q) for p, q in zip(begin, end)]           # the Conv2d's own padding
    act = _zero_pad(b, act, [p - m for p, m in zip(begin, same)],
                    [q - m for q, m in zip(end, same)], f"{b.name()}.pad")
    sizes = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, k, s, d in
             zip(act.shape[1:], same, kernel, strides, dilations)]
    if min(sizes) < 1:
        raise b.refuse(f"its kernel does not fit the padded input of {list(act.shape[1:])}")
    layer = Conv2d(C, F, kernel, strides, same, bias=bias is not None, groups=groups,
                   dilation=dilations, init=False)
    layer.set_array("weight", w, copy=False)
    if bias is not None:
        layer.set_array("bias", np.asarray(bias, np.float32))
    return b.add(layer, [act], (F, *sizes))


# ----------------------------------------------------------------------------- pools

def _pool(b, average):
    act = b.act(b.inputs()[0])
    attrs = b.attrs()
    if len(b.node.output) > 1 and b.uses[b.node.output[1]]:
        raise b.refuse("its second output (the indices of the maxima) is used")
    kernel, strides, dilations, begin, end = _geometry(b, attrs, act)
    if dilations != [1, 1]:
        raise b.refuse(f"dilations {dilations}: minicnn pools without dilation")
    ceil = bool(attrs.get("ceil_mode", 0))
    C, H, W = act.shape
    want = [_windows(n, k, s, p, q, ceil) for n, k, s, p, q in
            zip((H, W), kernel, strides, begin, end)]
    if min(want) < 1:
        raise b.refuse(f"its window {kernel} does not fit the padded input of {[H, W]}")
    include = bool(attrs.get("count_include_pad", 0))
    if average and include and begin != end:           # the pads are values: zeros
        act = _zero_pad(b, act, begin, end, f"{b.name()}.pad")
        begin = end = [0, 0]
    elif not (average and include):
        # one window that holds the whole axis (Caffe's 7x7 "global" pool padded past a 6x6
        # map): pads that are not counted change nothing, so it is a window of the axis
        for i, n in enumerate((H, W)):
            if want[i] == 1 and kernel[i] - begin[i] >= n:
                kernel[i], strides[i], begin[i], end[i] = n, 1, 0, 0
    if average and kernel == [H, W] and begin == end == [0, 0]:
        # the mean of each whole map (ResNet's 7x7 pool of a 7x7 map): a global pool, as
        # torchvision writes it and where Grad-CAM looks for the last maps
        return b.add(AdaptiveAvgPool2d(1), [act], (C, 1, 1))
    for flag in ((ceil, not ceil) if begin != end else (ceil,)):
        got = [_windows(n, k, s, p, p, flag) for n, k, s, p in
               zip(act.shape[1:], kernel, strides, begin)]
        if got == want and all(2 * p <= k for p, k in zip(begin, kernel)):
            layer = (AvgPool2d(kernel, strides, begin, flag, include) if average
                     else MaxPool2d(kernel, strides, begin, flag))
            return b.add(layer, [act], (C, *want))
    if not average and _nonnegative(b, act):
        # ONNX pads a max-pool with -inf; over values >= 0 (after a ReLU) zeros are the same
        # maximum, and where a real 0 ties with the padding the ReLU's gradient there is 0
        padded = _zero_pad(b, act, begin, end, f"{b.name()}.pad")
        got = [_windows(n, k, s, 0, 0, ceil) for n, k, s in
               zip(padded.shape[1:], kernel, strides)]
        if got == want:
            return b.add(MaxPool2d(kernel, strides, 0, ceil), [padded], (C, *want))
    raise b.refuse(f"pads {begin + end} with kernel {kernel}, strides {strides}: no PyTorch "
                   f"pool gives the same windows")


def _nonnegative(b, act) -> bool:
    """Is every value of ``act`` >= 0: the output of a ReLU, ReLU6, sigmoid, or of a layer
    that only moves or picks such values?"""
    layer = b.layer_of(act)
    if isinstance(layer, (ReLU, ReLU6, Sigmoid, Hardsigmoid)) or (
            isinstance(layer, Hardtanh) and layer.min_val >= 0):
        return True
    if isinstance(layer, (MaxPool2d, ZeroPad2d, Concat, ChannelShuffle, ChannelSlice)):
        reads = b.nodes[b.index[act.node]][2]
        return all(r != INPUT and _nonnegative(b, Act(r, ())) for r in reads)
    return False


def maxpool(b):
    return _pool(b, average=False)


def averagepool(b):
    return _pool(b, average=True)


def global_average_pool(b):
    act = b.act(b.inputs()[0])
    if len(act.shape) != 3 or act.view:
        raise b.refuse(f"an input of shape (N, {_cut(act.shape)}) is not an image")
    return b.add(AdaptiveAvgPool2d(1), [act], (act.shape[0], 1, 1))


def reduce_mean(b):
    act = b.act(b.inputs()[0])
    attrs = b.attrs()
    axes = attrs.get("axes") if b.opset < 18 else b.optional_const(1, None, "axes")
    rank = len(act.shape) + 1
    axes = sorted(a % rank for a in b.ints(axes, "axes")) if axes is not None else None
    if axes != [2, 3] or rank != 4 or act.view:
        raise b.refuse(f"mean over axes {axes} of a {rank}-D value: minicnn averages over H "
                       f"and W of an image")
    pooled = b.add(AdaptiveAvgPool2d(1), [act], (act.shape[0], 1, 1),
                   out=b.node.output[0] if attrs.get("keepdims", 1) else
                   f"{b.node.output[0]} (kept dims)")
    if attrs.get("keepdims", 1):
        return pooled
    return b.add(Flatten(), [pooled], (act.shape[0],), name=f"{b.name()}.flatten")


# ----------------------------------------------------------------------------- activations

def _unary(layer):
    def convert(b):
        act = b.act(b.inputs()[0])
        if act.view:
            raise b.refuse("its input is half of a channel shuffle")
        return b.add(layer(), [act], act.shape)
    return convert


def clip(b):
    act = b.act(b.inputs()[0])
    if b.opset < 11:
        attrs = b.attrs()
        low, high = attrs.get("min", -FLOAT_MAX), attrs.get("max", FLOAT_MAX)
    else:
        low = b.optional_const(1, -np.inf, "min")
        high = b.optional_const(2, np.inf, "max")
    low, high = float(np.asarray(low).reshape(-1)[0]), float(np.asarray(high).reshape(-1)[0])
    low = None if low <= -FLOAT_MAX else low
    high = None if high >= FLOAT_MAX else high
    if (low, high) == (0.0, 6.0):
        layer = ReLU6()
    elif low == 0.0 and high is None:
        layer = ReLU()
    elif low is not None and high is not None and low < high:
        layer = Hardtanh(low, high)
    else:
        raise b.refuse(f"min {low}, max {high}: minicnn clips to two finite bounds or to "
                       f"[0, inf)")
    return b.add(layer, [act], act.shape)


def hard_sigmoid(b):
    act = b.act(b.inputs()[0])
    attrs = b.attrs()
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    # Hardsigmoid is clip(x / 6 + 1/2, 0, 1); clip(alpha x + beta, 0, 1) is it of
    # 6 alpha x + 6 beta - 3. PyTorch exports alpha = 1/6 rounded to float32.
    if abs(alpha - 1 / 6) > 1e-7 or abs(beta - 0.5) > 1e-7:
        C = act.shape[0]
        act = b.affine(act, np.full(C, 6 * alpha), np.full(C, 6 * beta - 3),
                       out=f"{b.node.output[0]} (scaled)", name=f"{b.name()}.scale")
    return b.add(Hardsigmoid(), [act], act.shape)


def lrn(b):
    act = b.act(b.inputs()[0])
    attrs = b.attrs()
    size = int(attrs["size"])
    if size % 2 == 0:
        raise b.refuse(f"size {size}: for an even size ONNX's window differs from PyTorch's, "
                       f"and minicnn's LRN is PyTorch's")
    if len(act.shape) != 3:
        raise b.refuse("its input is not an image (N, C, H, W)")
    layer = LRN(size, float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
                float(attrs.get("bias", 1.0)))
    return b.add(layer, [act], act.shape)


# ----------------------------------------------------------------------------- arithmetic

def _arithmetic(op):
    def convert(b):
        names = b.inputs()
        if len(names) != 2:
            raise b.refuse(f"{len(names)} inputs")
        x_const, y_const = b.is_const(names[0]), b.is_const(names[1])
        if not x_const and not y_const:
            return _of_two_values(b, op, b.act(names[0]), b.act(names[1]))
        act = b.act(names[1] if x_const else names[0])
        c = b.const(names[0] if x_const else names[1])
        per = b.per_channel(act, c, op)
        if per is None or act.view:
            raise b.refuse(f"{op} by a constant of shape {np.shape(c)} that is not one number "
                           f"per channel of the input (N, {', '.join(map(str, act.shape))})")
        C, ones, zeros = len(per), np.ones(len(per)), np.zeros(len(per))
        if op == "Mul":
            return b.affine(act, per, zeros)
        if op == "Add":
            return b.affine(act, ones, per)
        if op == "Sub":
            return b.affine(act, -ones, per) if x_const else b.affine(act, ones, -per)
        if x_const:
            raise b.refuse("a constant divided by a value computed from the image")
        return b.affine(act, 1 / per, np.zeros(C))
    return convert


def _of_two_values(b, op, x, y):
    if x.view or y.view:
        raise b.refuse("an input is half of a channel shuffle")
    if op == "Mul":
        try:
            shape = np.broadcast_shapes((1,) + x.shape, (1,) + y.shape)[1:]
        except ValueError:
            raise b.refuse(f"shapes {x.shape} and {y.shape} do not broadcast") from None
        return b.add(Mul(), [x, y], shape)
    if op == "Add" and x.shape == y.shape:
        return b.add(Add(), [x, y], x.shape)
    raise b.refuse(f"{op} of two values computed from the image, of shapes {x.shape} and "
                   f"{y.shape} (minicnn adds values of one shape and multiplies)")


def sum_(b):
    acts = [b.act(n) for n in b.inputs()]
    if len(acts) == 1:
        return b.alias(b.node.output[0], acts[0])
    if len({a.shape for a in acts}) != 1 or any(a.view for a in acts):
        raise b.refuse(f"inputs of shapes {[a.shape for a in acts]}: minicnn adds values of "
                       f"one shape")
    return b.add(Add(), acts, acts[0].shape)


def batch_normalization(b):
    names = b.inputs()
    act = b.act(names[0])
    attrs = b.attrs()
    if attrs.get("training_mode", 0) or any(b.uses[o] for o in b.node.output[1:] if o):
        raise b.refuse("training mode (its running statistics are updated); minicnn runs "
                       "the evaluation mode")
    if attrs.get("spatial", 1) != 1:
        raise b.refuse("spatial = 0 (statistics per pixel)")
    gamma, beta, mean, var = (np.asarray(b.const(n, "BatchNormalization's " + what), np.float64)
                              for n, what in zip(names[1:5], ("scale", "bias", "mean",
                                                              "variance")))
    C = act.shape[0]
    if any(a.shape != (C,) for a in (gamma, beta, mean, var)):
        raise b.refuse(f"statistics of shapes {[a.shape for a in (gamma, beta, mean, var)]} "
                       f"for {C} channels")
    eps = float(attrs.get("epsilon", 1e-5))
    if not eps >= 0 or np.any(var + eps <= 0):
        raise b.refuse("a variance + epsilon that is not > 0")
    if b.sole_reader(act) and isinstance(b.layer_of(act), (Conv2d, Linear, BatchNorm2d)):
        return b.affine(act, *batchnorm_scale_shift(gamma, beta, mean, var, eps))
    if len(act.shape) != 3 or act.view:
        raise b.refuse(f"an input of shape (N, {_cut(act.shape)}) that no Gemm before it "
                       f"can absorb")
    layer = BatchNorm2d(C, eps if eps > 0 else 1e-12, init=False)
    for attr, value in zip(("weight", "bias", "running_mean", "running_var"),
                           (gamma, beta, mean, var)):
        layer.set_array(attr, value.astype(np.float32))
    return b.add(layer, [act], act.shape)


def gemm(b):
    names = b.inputs()
    act = b.act(names[0])
    attrs = b.attrs()
    if len(act.shape) != 1 or attrs.get("transA", 0):
        raise b.refuse(f"an input of shape (N, {_cut(act.shape)}) (transA "
                       f"{attrs.get('transA', 0)}): minicnn's Linear reads (N, D)")
    w = b.const(names[1], "Gemm's B")
    w = w if attrs.get("transB", 0) else w.T                               # (out, in)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    return _linear(b, act, w, alpha, b.optional_const(2, None, "Gemm's C"), beta)


def matmul(b):
    names = b.inputs()
    act = b.act(names[0])
    w = b.const(names[1], "MatMul's second input")
    if len(act.shape) != 1 or w.ndim != 2:
        raise b.refuse(f"(N, {_cut(act.shape)}) @ {w.shape}: minicnn's Linear multiplies "
                       f"(N, D) by a (D, M) constant")
    return _linear(b, act, w.T, 1.0, None, 1.0)


def _linear(b, act, w, alpha, c, beta):
    """A Linear of weight alpha * w (out, in) and bias beta * c."""
    if w.ndim != 2 or w.shape[1] != act.shape[0]:
        raise b.refuse(f"a weight of shape {w.shape} for inputs of {act.shape[0]} features")
    M = w.shape[0]
    w = np.ascontiguousarray(w * np.float32(alpha) if alpha != 1 else w, dtype=np.float32)
    bias = None
    if c is not None:
        c = np.asarray(c, np.float64)
        if c.size not in (1, M) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
            raise b.refuse(f"C of shape {c.shape} for {M} outputs")
        bias = (np.broadcast_to(c.reshape(-1), (M,)) * beta).astype(np.float32)
    layer = Linear(act.shape[0], M, bias=bias is not None, init=False)
    layer.set_array("weight", w, copy=False)
    if bias is not None:
        layer.set_array("bias", bias)
    return b.add(layer, [act], (M,))


# ----------------------------------------------------------------------------- shapes

def concat(b):
    acts = [b.act(n) for n in b.inputs()]
    axis = int(b.attrs().get("axis", 1 if b.opset < 4 else 0))
    rank = len(acts[0].shape) + 1
    if axis % rank != 1 or rank != 4 or any(a.view for a in acts) or \
            len({a.shape[1:] for a in acts}) != 1 or any(len(a.shape) != 3 for a in acts):
        raise b.refuse(f"axis {axis} of inputs of shapes {[a.shape for a in acts]}: minicnn "
                       f"concatenates images (N, C, H, W) along C")
    return b.add(Concat(), acts, (sum(a.shape[0] for a in acts),) + acts[0].shape[1:])


def flatten(b):
    act = b.act(b.inputs()[0])
    axis = int(b.attrs().get("axis", 1))
    if axis % (len(act.shape) + 1) != 1 or act.view:
        raise b.refuse(f"axis {axis}: minicnn flattens everything after the batch axis")
    if len(act.shape) == 1:
        return b.alias(b.node.output[0], act)
    return b.add(Flatten(), [act], (math.prod(act.shape),))


def reshape(b):
    names = b.inputs()
    act = b.act(names[0])
    target = b.ints(b.const(names[1], "Reshape's shape"), "shape")
    full = (b.batch,) + act.shape
    allow_zero = bool(b.attrs().get("allowzero", 0))
    shape = [full[i] if d == 0 and not allow_zero and i < len(full) else d
             for i, d in enumerate(target)]
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise b.refuse(f"shape {target}")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = math.prod(full) // known if known else 0
    if math.prod(shape) != math.prod(full):
        raise b.refuse(f"shape {target} for a value of shape {list(full)}")
    shape = tuple(shape)
    out = b.node.output[0]
    if act.view and act.view[0] == "shuffled" and shape == (b.batch,) + act.view[2]:
        return b.add(ChannelShuffle(act.view[1]), [Act(act.node, act.view[2])], act.view[2])
    if act.view or shape[0] != b.batch:
        raise b.refuse(f"shape {list(shape)} of a value of shape {list(full)}: minicnn "
                       f"reshapes only to flatten (N, D) or to shuffle channels")
    if shape[1:] == act.shape:
        return b.alias(out, act)
    if len(shape) == 2:
        return b.add(Flatten(), [act], shape[1:])
    if len(act.shape) == 3 and len(shape) == 5 and shape[3:] == act.shape[1:]:
        b.alias(out, Act(act.node, shape[1:], ("grouped", shape[1], act.shape)))
        return b.acts[out]
    raise b.refuse(f"shape {list(shape)} of a value of shape {list(full)}: minicnn reshapes "
                   f"only to flatten (N, D) or to shuffle channels")


def transpose(b):
    act = b.act(b.inputs()[0])
    rank = len(act.shape) + 1
    perm = b.ints(b.attrs().get("perm", list(range(rank))[::-1]), "perm")
    out = b.node.output[0]
    if perm == list(range(rank)):
        return b.alias(out, act)
    if act.view and act.view[0] == "grouped" and perm == [0, 2, 1, 3, 4]:
        g, original = act.view[1], act.view[2]
        shape = (act.shape[1], act.shape[0]) + act.shape[2:]
        b.alias(out, Act(act.node, shape, ("shuffled", g, original)))
        return b.acts[out]
    raise b.refuse(f"perm {perm}: minicnn transposes only the two group axes of a channel "
                   f"shuffle, (N, g, C/g, H, W) -> (N, C/g, g, H, W)")


def split(b):
    names = b.inputs()
    act = b.act(names[0])
    attrs = b.attrs()
    axis = int(attrs.get("axis", 0))
    if len(act.shape) != 3 or axis % 4 != 1 or act.view:
        raise b.refuse(f"axis {axis} of shape (N, {_cut(act.shape)}): minicnn splits the "
                       f"channels of an image")
    C, outputs = act.shape[0], list(b.node.output)
    sizes = attrs.get("split") if b.opset < 13 else b.optional_const(1, None, "split")
    if sizes is None:
        k = -(-C // len(outputs))
        sizes = [min(k, C - i * k) for i in range(len(outputs))]
    sizes = b.ints(sizes, "split")
    if len(sizes) != len(outputs) or sum(sizes) != C or min(sizes) < 1:
        raise b.refuse(f"sizes {sizes} for {C} channels and {len(outputs)} outputs")
    start, last = 0, None
    for i, (size, out) in enumerate(zip(sizes, outputs)):
        if b.uses[out]:
            last = b.add(ChannelSlice(start, start + size), [act], (size,) + act.shape[1:],
                         name=b.name() if i == 0 else f"{b.name()}.{i}", out=out)
        start += size
    return last


def slice_(b):
    act = b.act(b.inputs()[0])
    if b.opset < 10:
        attrs = b.attrs()
        starts, ends, axes, steps = (attrs.get("starts"), attrs.get("ends"), attrs.get("axes"),
                                     None)
    else:
        starts, ends = b.optional_const(1, None, "starts"), b.optional_const(2, None, "ends")
        axes, steps = b.optional_const(3, None, "axes"), b.optional_const(4, None, "steps")
    starts, ends = b.ints(starts, "starts"), b.ints(ends, "ends")
    rank = len(act.shape) + 1
    axes = b.ints(axes, "axes") if axes is not None else list(range(len(starts)))
    steps = b.ints(steps, "steps") if steps is not None else [1] * len(starts)
    full, channels = (b.batch,) + act.shape, None
    for axis, start, end, step in zip(axes, starts, ends, steps):
        axis, n = axis % rank, full[axis % rank]
        lo, hi = (max(0, min(n, v + n if v < 0 else v)) for v in (start, end))
        if (lo, hi, step) == (0, n, 1):
            continue
        if axis != 1 or step != 1 or rank != 4 or act.view or not lo < hi:
            raise b.refuse(f"starts {starts}, ends {ends}, axes {axes}, steps {steps}: minicnn "
                           f"slices channels only")
        channels = (lo, hi)
    if channels is None:
        return b.alias(b.node.output[0], act)
    lo, hi = channels
    return b.add(ChannelSlice(lo, hi), [act], (hi - lo,) + act.shape[1:])


def pad(b):
    act = b.act(b.inputs()[0])
    attrs = b.attrs()
    mode = attrs.get("mode", "constant")
    if b.opset < 11:
        pads, value, axes = attrs.get("pads", attrs.get("paddings")), attrs.get("value", 0.0), \
            None
    else:
        pads = b.const(b.inputs()[1], "pads")
        value = b.optional_const(2, 0.0, "constant_value")
        axes = b.optional_const(3, None, "axes")
    rank = len(act.shape) + 1
    pads = b.ints(pads, "pads")
    axes = [a % rank for a in b.ints(axes, "axes")] if axes is not None else list(range(rank))
    if len(pads) != 2 * len(axes):
        raise b.refuse(f"pads {pads} for axes {axes}")
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[i + len(axes)]
    value = float(np.asarray(value).reshape(-1)[0]) if np.size(value) else 0.0
    if mode != "constant" or value != 0 or rank != 4 or act.view or min(begin + end) < 0 \
            or max(begin[:2] + end[:2]) > 0:
        raise b.refuse(f"mode {mode!r}, value {value}, pads {pads}: minicnn pads the height "
                       f"and width of an image with zeros")
    C, H, W = act.shape
    layer = ZeroPad2d((begin[3], end[3], begin[2], end[2]))
    return b.add(layer, [act], (C, H + begin[2] + end[2], W + begin[3] + end[3]))


def identity(b):
    node = b.node
    if node.op_type == "Dropout" and len(node.output) > 1 and b.uses[node.output[1]]:
        raise b.refuse("its mask output is used")
    return b.alias(node.output[0], b.act(b.inputs()[0]))


def shape_of_value(b):
    """Shape of an activation: known here, so a constant (the batch size is the file's)."""
    act = b.act(b.inputs()[0])
    attrs = b.attrs()
    full = np.array((b.batch,) + act.shape, np.int64)
    return [full[attrs.get("start", 0):attrs.get("end", len(full))]]


ACTIVATION_OPS = {
    "Conv": conv, "MaxPool": maxpool, "AveragePool": averagepool,
    "GlobalAveragePool": global_average_pool, "ReduceMean": reduce_mean,
    "Relu": _unary(ReLU), "Sigmoid": _unary(Sigmoid), "HardSwish": _unary(Hardswish),
    "Clip": clip, "HardSigmoid": hard_sigmoid, "LRN": lrn,
    "Mul": _arithmetic("Mul"), "Add": _arithmetic("Add"), "Sub": _arithmetic("Sub"),
    "Div": _arithmetic("Div"), "Sum": sum_, "BatchNormalization": batch_normalization,
    "Gemm": gemm, "MatMul": matmul, "Concat": concat, "Flatten": flatten, "Reshape": reshape,
    "Transpose": transpose, "Split": split, "Slice": slice_, "Pad": pad,
    "Dropout": identity, "Identity": identity,
}


# ----------------------------------------------------------------------------- constants

def _const_inputs(b):
    return [b.const(n) if n else None for n in b.inputs()]


def _checked(b, shape, dtype, what):
    return size_checked(b.path, shape, dtype, f"{b.node.op_type} node "
                                              f"{_cut(repr(b.name()))}: {what}")


def _constant(b):
    attrs = b.attrs()
    for key, kind in (("value", None), ("value_float", np.float32),
                      ("value_floats", np.float32), ("value_int", np.int64),
                      ("value_ints", np.int64)):
        if key in attrs:
            return [np.asarray(attrs[key], kind)]
    raise b.refuse(f"a constant given as {sorted(attrs)} (minicnn reads tensors and numbers)")


def _constant_of_shape(b):
    shape = tuple(b.ints(_const_inputs(b)[0], "shape"))
    value = b.attrs().get("value", np.zeros(1, np.float32))
    _checked(b, shape, value.dtype, "its output")
    return [np.full(shape, value.reshape(-1)[0], value.dtype)]


def _axes(b, index):
    axes = b.attrs().get("axes") if b.opset < 13 else b.optional_const(index, None, "axes")
    return None if axes is None else b.ints(axes, "axes")


def _unsqueeze(b):
    x = _const_inputs(b)[0]
    out = x
    for axis in sorted(a % (x.ndim + len(_axes(b, 1))) for a in _axes(b, 1)):
        out = np.expand_dims(out, axis)
    return [out]


def _squeeze(b):
    x, axes = _const_inputs(b)[0], _axes(b, 1)
    return [np.squeeze(x, None if axes is None else tuple(a % x.ndim for a in axes))]


def _reshape(b):
    x, target = _const_inputs(b)[:2]
    target = b.ints(target, "shape")
    allow_zero = bool(b.attrs().get("allowzero", 0))
    shape = [x.shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(target)]
    try:
        return [x.reshape(shape)]
    except ValueError:
        raise b.refuse(f"shape {target} for a constant of shape {x.shape}") from None


def _binary(function):
    def compute(b):
        x, y = _const_inputs(b)[:2]
        try:
            shape = np.broadcast_shapes(x.shape, y.shape)
        except ValueError:
            raise b.refuse(f"constants of shapes {x.shape} and {y.shape}") from None
        _checked(b, shape, np.result_type(x, y), "its output")
        with np.errstate(all="ignore"):
            return [function(x, y).astype(np.result_type(x, y), copy=False)]
    return compute


def _unary_const(function):
    def compute(b):
        with np.errstate(all="ignore"):
            return [function(_const_inputs(b)[0])]
    return compute


def _concat(b):
    xs = [x for x in _const_inputs(b) if x is not None]
    axis = int(b.attrs().get("axis", 0))
    _checked(b, (sum(x.size for x in xs),), xs[0].dtype, "its output")
    try:
        return [np.concatenate(xs, axis=axis)]
    except ValueError as e:
        raise b.refuse(f"constants that do not concatenate ({e})") from None


def _gather(b):
    x, indices = _const_inputs(b)[:2]
    axis = int(b.attrs().get("axis", 0))
    try:
        return [np.take(x, indices.astype(np.int64), axis=axis)]
    except (IndexError, ValueError) as e:
        raise b.refuse(f"indices out of range ({e})") from None


def _cast(b):
    to = int(b.attrs().get("to", 1))
    if to not in DTYPES:
        raise b.refuse(f"a cast to type {to}")
    dtype = np.float32 if DTYPES[to] == np.float16 else DTYPES[to].newbyteorder("=")
    x = _const_inputs(b)[0]
    _checked(b, x.shape, dtype, "its output")         # int8 -> int64 is 8 times the bytes
    return [x.astype(dtype)]


def _transpose_const(b):
    x = _const_inputs(b)[0]
    perm = b.attrs().get("perm")
    return [np.transpose(x, None if perm is None else b.ints(perm, "perm"))]


def _slice_const(b):
    x = _const_inputs(b)[0]
    if b.opset < 10:
        attrs = b.attrs()
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = b.optional_const(1), b.optional_const(2)
        axes, steps = b.optional_const(3), b.optional_const(4)
    starts, ends = b.ints(starts, "starts"), b.ints(ends, "ends")
    axes = b.ints(axes, "axes") if axes is not None else list(range(len(starts)))
    steps = b.ints(steps, "steps") if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise b.refuse("a step of 0")
        index[axis % x.ndim] = slice(start, end, step)
    return [x[tuple(index)]]


def _flatten_const(b):
    x = _const_inputs(b)[0]
    axis = int(b.attrs().get("axis", 1)) % (x.ndim + 1)
    return [x.reshape(math.prod(x.shape[:axis]), -1)]


def _shape_const(b):
    x = _const_inputs(b)[0]
    attrs = b.attrs()
    return [np.array(x.shape, np.int64)[attrs.get("start", 0):attrs.get("end", x.ndim)]]


CONSTANT_OPS = {
    "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "Identity": _unary_const(lambda x: x), "Dropout": _unary_const(lambda x: x),
    "Cast": _cast, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Reshape": _reshape,
    "Flatten": _flatten_const, "Concat": _concat, "Gather": _gather, "Shape": _shape_const,
    "Slice": _slice_const, "Transpose": _transpose_const,
    "Mul": _binary(np.multiply), "Add": _binary(np.add), "Sub": _binary(np.subtract),
    "Div": _binary(lambda x, y: x / y if x.dtype.kind == "f" or y.dtype.kind == "f"
                   else np.floor_divide(x, y)),
    "Sqrt": _unary_const(np.sqrt), "Neg": _unary_const(np.negative),
    "Reciprocal": _unary_const(np.reciprocal),
}

SUPPORTED = tuple(sorted(set(ACTIVATION_OPS) | set(CONSTANT_OPS) | {"Softmax"}))
