"""Layers of a CNN, each with its forward pass and the backward pass to its input side by side.

Every layer follows PyTorch's semantics, layouts and attribute names (NCHW, conv ``weight``
(F, C, KH, KW), linear ``weight`` (out, in), ``bias``, BatchNorm's ``running_mean``), so
weights load without transposes and PyTorch can serve as the test oracle. A layer has

- ``forward(x) -> out``: computes the output and keeps only what ``backward`` needs;
- ``backward(grad_out) -> grad_in``: the chain rule, d(loss)/d(input) from d(loss)/d(output).

``Add`` and ``Concat`` join branches of a graph (``minicnn.engine.model.Graph``): they take
several inputs, ``forward(a, b, ...)``, and their ``backward`` returns one gradient per input.

Only gradients with respect to the input are computed: minicnn explains trained networks
(saliency maps), it does not train them, so there are no parameter gradients and no training
mode (``Dropout`` is the identity).

Dtypes: a layer computes in the dtype of its input (float32 or float64). If its weights have
another dtype they are cast once and the cast is cached. Any other input dtype is a TypeError.

Weights are read-only (``minicnn.engine.frozen``): to change them, assign a new array
(``layer.weight = w``); the layer copies it and forgets what it derived from the old one.
An in-place edit (``layer.weight[:16] = 0``) raises a ValueError that says so, because the
engine keeps arrays computed from the weights (casts, Winograd's transformed filters) that
such an edit would silently leave stale.

Hot loops are not here but in ``minicnn.engine.kernels``, reached through ``kernels.active()``
so that the readable reference kernels (``kernels/reference.py``, where the maths is) can
replace the fast ones (``kernels/fast/``) everywhere.

Adding a layer, the checklist:
1. a class here with ``forward(x)`` and ``backward(grad_out)`` side by side, a docstring
   with the shapes and PyTorch's semantics (and the subgradient convention, if any),
   ``config()`` returning its constructor arguments, and ``_params`` naming its weights;
2. its entry in ``LAYER_TYPES`` (so weights files and ``from_config`` know it);
3. if it has a loop: the kernel in ``kernels/reference.py`` (readable) and the same
   signature in ``kernels/fast/`` (Numba: conv.py, pool.py, elementwise.py, ...), exported
   by ``kernels/fast/__init__.py``, tested equal both ways;
4. its import in ``minicnn.io.torch_import`` (from the torch module) and in the tests'
   torch twin, and tests in ``tests/engine/test_layers.py``: forward and input gradient
   against torch.nn.functional + autograd and against central finite differences in
   float64, odd sizes, strides, paddings, batch 1 and > 1, and its bad-input messages.

References: CS231n assignment 2 (layer/kernel split, shape docstrings); Simonyan, Vedaldi &
Zisserman 2013 (arXiv:1312.6034) for the vanilla gradient; Zeiler & Fergus 2014 (deconvnet) and
Springenberg et al. 2014 (arXiv:1412.6806, guided backpropagation) for the ReLU backward rules.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from minicnn._checks import FLOAT_DTYPES, check_array
from minicnn.engine import kernels
from minicnn.engine.frozen import freeze, placeholder
from minicnn.engine.kernels import RELU_RULES

__all__ = [
    "Layer", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "Flatten", "Linear", "Dropout", "BatchNorm2d", "Add", "Concat", "RELU_RULES",
    "LAYER_TYPES", "layer_from_config", "pair", "batchnorm_scale_shift", "fold_batchnorm",
]


def pair(value, what):
    """An int or a pair of ints -> (int, int), as PyTorch's ``_pair``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")


def _uniform(rng, shape, bound, dtype, init=True):
    """U(-bound, bound) drawn directly in ``dtype`` (no float64 temporary for big layers).

    init=False: a read-only placeholder of that shape holding no memory, for weights about to
    be loaded (VGG16's 138 M values would otherwise be drawn, ~4 s and 0.5 GB, only to be
    overwritten; and a file that declares a giant layer fails on its shapes, not on memory)."""
    if not init:
        return placeholder(shape, dtype)
    values = rng.random(shape, dtype=dtype)
    values *= 2 * bound
    values -= bound
    return values


class _ArrayName:
    """How a layer's weight is called in messages, e.g. "Conv2d 'features.4'.weight": the
    layer's name as it is when the message is made (a model names its layers after they are
    built). A weak reference, so that the array does not keep its layer alive."""

    def __init__(self, layer, attr):
        self.layer, self.attr = weakref.ref(layer), attr

    def __str__(self):
        layer = self.layer()
        return f"{layer.describe() if layer is not None else 'a layer'}.{self.attr}"


class Layer:
    """Base class. Subclasses define forward/backward and, if they have weights, ``_params``.

    ``name`` is set by the model (e.g. "features.0") so that error messages say which layer
    of a model failed.
    """

    name: str | None = None
    _params: tuple = ()  # names of the array attributes that hold weights
    _buffers: tuple = ()  # arrays that are not weights but load with them (running statistics)

    def __setattr__(self, attr, value):
        """A weight or buffer is stored as a read-only copy, and what the layer derived from
        the old one (casts to another dtype) is forgotten; other attributes as usual."""
        if attr in self._params or attr in self._buffers:
            self.set_array(attr, value)
        else:
            object.__setattr__(self, attr, value)

    def set_array(self, attr, value, copy=True, dtype=None):
        """Store ``value`` (in ``dtype``, default its own) as the weight or buffer ``attr``,
        read-only (``frozen.freeze``). copy=False takes the array itself when it can
        (C-contiguous, owning its memory: an array just read from a file, which the caller
        then no longer writes to)."""
        if value is not None:
            value = freeze(value, _ArrayName(self, attr), dtype, copy)
        self.__dict__.pop("_cast_cache", None)
        object.__setattr__(self, attr, value)

    def __setstate__(self, state):
        """copy.deepcopy and pickle: the copy's weights are read-only again."""
        arrays = {k: state.pop(k) for k in list(state) if k in self._params + self._buffers}
        self.__dict__.update(state)
        for attr, value in arrays.items():
            setattr(self, attr, value)

    def __call__(self, *xs):
        return self.forward(*xs)

    def infer(self, *xs):
        """The forward output when no backward pass will follow (``Graph.predict``): the same
        values as ``forward``. Layers that keep something only for backward override it to
        skip that work (ReLU, MaxPool2d)."""
        return self.forward(*xs)

    # --- description -------------------------------------------------------------------------

    def describe(self) -> str:
        """'Conv2d' or, inside a model, "Conv2d 'features.0'" (used in error messages)."""
        kind = type(self).__name__
        return kind if self.name is None else f"{kind} {self.name!r}"

    def config(self) -> dict:
        """The constructor arguments as a JSON-serialisable dict with a "type" key."""
        return {"type": type(self).__name__}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"

    # --- weights -----------------------------------------------------------------------------

    def parameters(self) -> dict:
        """{"weight": array, "bias": array, ...}: the arrays this layer loads and saves, its
        weights and buffers (only those it has)."""
        return {p: getattr(self, p) for p in self._params + self._buffers
                if getattr(self, p) is not None}

    def astype(self, dtype):
        """Cast the weights to float32 or float64 (in place on the layer); returns self."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self.describe()}: weights can be float32 or float64, got {dtype}")
        for p, value in self.parameters().items():
            if value.dtype != dtype:
                setattr(self, p, value.astype(dtype))
        return self

    def _weight_as(self, attr, dtype):
        """The parameter ``attr`` in ``dtype``; a cast is made once and kept until the
        attribute is assigned again (the weights are read-only, so it cannot go stale)."""
        value = getattr(self, attr)
        if value is None or value.dtype == dtype:
            return value
        cache = self.__dict__.setdefault("_cast_cache", {})
        if (attr, dtype) not in cache:
            cache[(attr, dtype)] = freeze(value, _ArrayName(self, attr), dtype)
        return cache[(attr, dtype)]

    # --- checks at the public boundary ------------------------------------------------------

    def _check_input(self, x, ndim=None, shape_hint=""):
        """TypeError unless x is a float32/float64 ndarray; ValueError on the wrong rank."""
        return check_array(x, f"{self.describe()}: input", ndim, shape_hint)

    def _remember(self, x, out):
        """Record the forward shapes and dtype, for backward's checks."""
        self._in_shape, self._out_shape, self._dtype = x.shape, out.shape, x.dtype

    def _check_grad(self, grad_out):
        """grad_out must match the last forward output's shape; it is cast to its dtype."""
        if getattr(self, "_out_shape", None) is None:
            raise ValueError(f"{self.describe()}: backward called before forward")
        check_array(grad_out, f"{self.describe()}: grad_out")
        if grad_out.shape != self._out_shape:
            raise ValueError(f"{self.describe()}: grad_out must have the forward output's shape "
                             f"{self._out_shape}, got {grad_out.shape}")
        return grad_out.astype(self._dtype, copy=False)

    def _check_window(self, x, kernel, padding):
        """ValueError unless the kernel fits inside the padded input."""
        H, W = x.shape[2:]
        if H + 2 * padding[0] < kernel[0] or W + 2 * padding[1] < kernel[1]:
            raise ValueError(
                f"{self.describe()}: kernel {kernel} is larger than the padded input "
                f"{(H + 2 * padding[0], W + 2 * padding[1])} (input H, W = {(H, W)}, "
                f"padding {padding})")


# ============================================================================ Conv2d

class Conv2d(Layer):
    """2-D convolution (cross-correlation, as PyTorch).

    - weight: (F, C, KH, KW); bias: (F,) or None
    - forward: x (N, C, H, W) -> out (N, F, OH, OW), OH = 1 + (H + 2*ph - KH) // sh
    - backward: grad_out (N, F, OH, OW) -> grad_x (N, C, H, W); needs only w and x's shape

    Initial weights: PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in =
    C*KH*KW for weight and bias, drawn from ``numpy.random.default_rng(rng)``; loaders
    overwrite them.
    """

    _params = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 *, dtype=np.float32, rng=None, init=True):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "Conv2d kernel_size")
        self.stride = pair(stride, "Conv2d stride")
        self.padding = pair(padding, "Conv2d padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, "
                             f"got {self.kernel_size}, {self.stride}, {self.padding}")
        rng = np.random.default_rng(rng)
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        shape = (self.out_channels, self.in_channels) + self.kernel_size  # (F, C, KH, KW)
        self.weight = _uniform(rng, shape, bound, dtype, init)
        self.bias = _uniform(rng, (self.out_channels,), bound, dtype, init) if bias else None

    def config(self):
        return {"type": "Conv2d", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding),
                "bias": self.bias is not None}

    def forward(self, x):
        """x: (N, C, H, W) -> (N, F, OH, OW)"""
        self._check_input(x, 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self.describe()}: expected {self.in_channels} input channels, "
                             f"got input of shape {x.shape}")
        self._check_window(x, self.kernel_size, self.padding)
        w, b = self._weight_as("weight", x.dtype), self._weight_as("bias", x.dtype)
        out = kernels.active().conv2d_forward(x, w, b, self.stride, self.padding)
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, F, OH, OW) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_grad(grad_out)
        w = self._weight_as("weight", grad_out.dtype)
        return kernels.active().conv2d_backward_input(grad_out, w, self.stride, self.padding,
                                                      self._in_shape)


# ============================================================================ ReLU

class ReLU(Layer):
    """out = max(x, 0), elementwise, any shape.

    ``backward(grad_out, rule)`` offers three ways of passing a signal back through a ReLU;
    only "gradient" is the derivative, the other two define the later saliency methods:

    - "gradient":  grad_out where the forward INPUT was > 0 (the chain rule; ReLU'(0) = 0);
    - "deconvnet": ReLU applied to grad_out itself, the forward input ignored (Zeiler & Fergus
      2014, as phrased by Springenberg et al. 2014);
    - "guided":    both conditions (guided backpropagation, Springenberg et al. 2014).
    """

    def forward(self, x):
        """x: any shape -> same shape"""
        self._check_input(x)
        out = kernels.active().relu_forward(x)
        self._x = x  # the backward rules "gradient" and "guided" look at the input
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: shape of x -> grad_x: shape of x"""
        if rule not in RELU_RULES:
            raise ValueError(f"{self.describe()}: unknown backward rule {rule!r}; "
                             f"valid rules are {RELU_RULES}")
        grad_out = self._check_grad(grad_out)
        # the three rules, one line each: minicnn/engine/kernels/reference.py, relu_backward
        return kernels.active().relu_backward(grad_out, self._x, rule)

    def infer(self, x, inplace=False):
        """x: any shape -> max(x, 0), nothing kept for backward. inplace=True overwrites x
        (when its values are needed nowhere else: ``Graph.predict`` decides) instead of
        writing a new array: one pass over memory instead of two, and no allocation."""
        self._check_input(x)
        inplace = inplace and x.flags.c_contiguous and x.flags.writeable
        out = kernels.active().relu_forward(x, out=x if inplace else None)
        self._x = self._out_shape = None  # a backward now needs a new forward
        return out


# ============================================================================ pooling

class _Pool2d(Layer):
    """Shared constructor and checks of MaxPool2d and AvgPool2d."""

    def __init__(self, kernel_size, stride=None, padding=0):
        kind = type(self).__name__
        self.kernel_size = pair(kernel_size, f"{kind} kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, f"{kind} stride")
        self.padding = pair(padding, f"{kind} padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{kind}: kernel_size and stride must be >= 1 and padding >= 0, "
                             f"got {self.kernel_size}, {self.stride}, {self.padding}")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            # PyTorch's rule: a window must always contain at least one real element
            raise ValueError(f"{kind}: padding must be at most half the kernel size, got "
                             f"padding {self.padding} for kernel_size {self.kernel_size}")

    def config(self):
        return {"type": type(self).__name__, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding)}

    def _check_pool_input(self, x):
        self._check_input(x, 4, "(N, C, H, W)")
        self._check_window(x, self.kernel_size, self.padding)


class MaxPool2d(_Pool2d):
    """Max over KH x KW windows; padding is -inf (never chosen).

    - forward: x (N, C, H, W) -> (N, C, OH, OW); keeps argmax (N, C, OH, OW), the index of the
      winning element in its (H, W) plane
    - backward: each output gradient goes to its window's winner. Ties (a choice, the same as
      PyTorch's CPU kernel): the FIRST maximum in row-major order within the window wins.
    - ceil_mode: PyTorch's; True rounds OH up, keeping a last, partial window as long as it
      starts inside the input or its left padding (``kernels.output_size``). SqueezeNet uses
      it: 3x3 windows with stride 2 over 109 rows give 54, not 53.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode = bool(ceil_mode)

    def config(self):
        return {**super().config(), "ceil_mode": self.ceil_mode}

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)"""
        self._check_pool_input(x)
        out, self._argmax = kernels.active().maxpool2d_forward(x, self.kernel_size, self.stride,
                                                               self.padding, self.ceil_mode)
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_grad(grad_out)
        return kernels.active().maxpool2d_backward(grad_out, self._argmax, self._in_shape)

    def infer(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW), the maxima alone: no argmax (which only backward
        needs, and which is twice the output's bytes)."""
        self._check_pool_input(x)
        out = kernels.active().maxpool2d_values(x, self.kernel_size, self.stride, self.padding,
                                                self.ceil_mode)
        self._argmax = self._out_shape = None  # a backward now needs a new forward
        return out


class AvgPool2d(_Pool2d):
    """Mean over KH x KW windows, zero padding counted (PyTorch's count_include_pad=True).

    - forward: x (N, C, H, W) -> (N, C, OH, OW)
    - backward: each output gradient is spread as 1/(KH*KW) over its window
    """

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)"""
        self._check_pool_input(x)
        out = kernels.active().avgpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_grad(grad_out)
        return kernels.active().avgpool2d_backward(grad_out, self.kernel_size, self.stride,
                                                   self.padding, self._in_shape)


class AdaptiveAvgPool2d(Layer):
    """Mean over PyTorch's adaptive bins, so any (H, W) gives output_size (OH, OW).

    Bin i covers rows [floor(i*H/OH), ceil((i+1)*H/OH)); bins can overlap, and when OH > H
    (upsampling) an input row belongs to several bins.

    - forward: x (N, C, H, W) -> (N, C, OH, OW)
    - backward: each output gradient is spread evenly over its bin
    """

    def __init__(self, output_size):
        self.output_size = pair(output_size, "AdaptiveAvgPool2d output_size")
        if min(self.output_size) < 1:
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be >= 1, "
                             f"got {self.output_size}")

    def config(self):
        return {"type": "AdaptiveAvgPool2d", "output_size": list(self.output_size)}

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)"""
        self._check_input(x, 4, "(N, C, H, W)")
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"{self.describe()}: input has an empty spatial size {x.shape}")
        out = kernels.active().adaptive_avgpool2d_forward(x, self.output_size)
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_grad(grad_out)
        return kernels.active().adaptive_avgpool2d_backward(grad_out, self._in_shape)


# ============================================================================ Flatten, Linear, Dropout

class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), PyTorch's Flatten(start_dim=1); backward reshapes back."""

    def forward(self, x):
        """x: (N, ...) -> (N, D)"""
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"{self.describe()}: expected an input with a batch axis and at "
                             f"least one more, got shape {x.shape}")
        out = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, D), also for N = 0
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, D) -> grad_x: (N, ...)"""
        return self._check_grad(grad_out).reshape(self._in_shape)  # (N, ...)


class Linear(Layer):
    """Fully connected layer: out = x @ weight.T + bias.

    - weight: (out_features, in_features); bias: (out_features,) or None
    - forward: x (N, in_features) -> (N, out_features)
    - backward: grad_out (N, out_features) -> grad_out @ weight, (N, in_features)

    Initial weights: PyTorch's default, U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    _params = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None,
                 init=True):
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = np.random.default_rng(rng)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = _uniform(rng, (self.out_features, self.in_features), bound, dtype, init)
        self.bias = _uniform(rng, (self.out_features,), bound, dtype, init) if bias else None

    def config(self):
        return {"type": "Linear", "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias is not None}

    def forward(self, x):
        """x: (N, in_features) -> (N, out_features)"""
        self._check_input(x, 2, f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self.describe()}: expected input of shape (N, {self.in_features}), "
                             f"got {x.shape}")
        w, b = self._weight_as("weight", x.dtype), self._weight_as("bias", x.dtype)
        out = kernels.active().linear_forward(x, w, b)  # x @ w.T + b: (N, out_features)
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, out_features) -> grad_x: (N, in_features)"""
        grad_out = self._check_grad(grad_out)
        w = self._weight_as("weight", grad_out.dtype)
        return kernels.active().linear_backward_input(grad_out, w)  # grad_out @ w, (N, in_features)


class Dropout(Layer):
    """Dropout at inference: the identity (minicnn has no training mode). ``p`` is kept so the
    layer mirrors PyTorch's and round-trips through config()."""

    def __init__(self, p=0.5):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def config(self):
        return {"type": "Dropout", "p": self.p}

    def forward(self, x):
        """x: any shape -> x"""
        self._check_input(x)
        self._remember(x, x)
        return x

    def backward(self, grad_out):
        """grad_out -> grad_out"""
        return self._check_grad(grad_out)


# ============================================================================ BatchNorm2d

class BatchNorm2d(Layer):
    """Batch normalisation at inference (PyTorch's eval mode): per channel c,

        y = (x - running_mean[c]) / sqrt(running_var[c] + eps) * weight[c] + bias[c]
          = x * scale[c] + shift[c]

    an affine map fixed by the trained statistics, so backward is grad_out * scale[c].

    - weight, bias: (C,) (gamma, beta); running_mean, running_var: (C,) buffers
    - forward: x (N, C, H, W) -> (N, C, H, W); backward: the same shapes

    A BatchNorm right after a convolution can be folded into it (``fold_batchnorm``, the
    default when importing a torch model): the same function with one layer fewer.
    """

    _params = ("weight", "bias")
    _buffers = ("running_mean", "running_var")

    def __init__(self, num_features, eps=1e-5, *, dtype=np.float32, init=True):
        self.num_features, self.eps = int(num_features), float(eps)
        if self.num_features < 1 or not self.eps > 0:
            raise ValueError(f"BatchNorm2d: num_features must be >= 1 and eps > 0, got "
                             f"{num_features}, {eps}")
        C = (self.num_features,)
        if init:                                                      # PyTorch's initial values
            self.weight, self.bias = np.ones(C, dtype), np.zeros(C, dtype)
            self.running_mean, self.running_var = np.zeros(C, dtype), np.ones(C, dtype)
        else:                                   # placeholders holding no memory (see _uniform)
            self.weight, self.bias, self.running_mean, self.running_var = (
                _uniform(None, C, 0.0, dtype, init=False) for _ in range(4))

    def config(self):
        return {"type": "BatchNorm2d", "num_features": self.num_features, "eps": self.eps}

    def scale_shift(self, dtype=np.float64):
        """(scale, shift), each (C,): y = x * scale + shift (``batchnorm_scale_shift``)."""
        return batchnorm_scale_shift(self.weight, self.bias, self.running_mean,
                                     self.running_var, self.eps, dtype)

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, H, W)"""
        self._check_input(x, 4, "(N, C, H, W)")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self.describe()}: expected {self.num_features} channels, got "
                             f"input of shape {x.shape}")
        scale, shift = self.scale_shift(x.dtype)
        self._scale = scale
        out = x * scale[:, None, None] + shift[:, None, None]          # (N, C, H, W)
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, C, H, W) -> grad_x: (N, C, H, W), grad_out * scale per channel"""
        grad_out = self._check_grad(grad_out)
        return grad_out * self._scale[:, None, None]


def batchnorm_scale_shift(weight, bias, running_mean, running_var, eps, dtype=np.float64):
    """An eval-mode BatchNorm as an affine map per channel, computed in float64:

        scale = weight / sqrt(running_var + eps),   shift = bias - running_mean * scale

    Input: weight (gamma), bias (beta): (C,) or None (an affine=False BatchNorm: 1 and 0);
    running_mean, running_var: (C,); eps: float. Returns (scale, shift), each (C,) in dtype.
    """
    var = np.asarray(running_var, np.float64)
    C = var.shape[0]
    gamma = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    beta = np.zeros(C) if bias is None else np.asarray(bias, np.float64)
    scale = gamma / np.sqrt(var + eps)                                          # (C,)
    shift = beta - np.asarray(running_mean, np.float64) * scale                 # (C,)
    return scale.astype(dtype), shift.astype(dtype)


def fold_batchnorm(conv_w, conv_b, bn_weight, bn_bias, running_mean, running_var, eps):
    """Fold an eval-mode BatchNorm2d into the convolution before it.

    BN(conv(x)) = gamma * (w*x + b - mean) / sqrt(var + eps) + beta
                = (w * s) * x + ((b - mean) * s + beta),   s = gamma / sqrt(var + eps)

    Input (numpy arrays):
    - conv_w: (F, C, KH, KW); conv_b: (F,) or None (treated as zeros)
    - bn_weight (gamma), bn_bias (beta): (F,) or None (an affine=False BatchNorm: 1 and 0)
    - running_mean, running_var: (F,); eps: float
    Returns:
    - (w', b'): (F, C, KH, KW) and (F,), computed in float64 and returned in conv_w's dtype
    """
    dtype = np.asarray(conv_w).dtype
    scale, shift = batchnorm_scale_shift(bn_weight, bn_bias, running_mean, running_var, eps)
    b = 0.0 if conv_b is None else np.asarray(conv_b, np.float64)
    w = np.asarray(conv_w, np.float64) * scale[:, None, None, None]            # (F, C, KH, KW)
    return w.astype(dtype), (b * scale + shift).astype(dtype)


# ============================================================================ Add, Concat

class Add(Layer):
    """The sum of two or more inputs of the same shape: a residual connection's ``out +
    identity`` (He et al. 2016).

    - forward: a, b, ... (any shape, all equal) -> a + b + ...
    - backward: grad_out -> (grad_out, grad_out, ...): d(a + b)/da = d(a + b)/db = 1, so every
      input receives the whole gradient. Where the model then merges the gradients coming back
      to one value along several paths, they add up (``Graph.backward``).
    """

    def forward(self, *xs):
        """xs: two or more arrays of one shape -> their sum"""
        if len(xs) < 2:
            raise ValueError(f"{self.describe()}: expected two or more inputs, got {len(xs)}")
        for x in xs:
            self._check_input(x)
        if len({x.shape for x in xs}) != 1 or len({x.dtype for x in xs}) != 1:
            raise ValueError(f"{self.describe()}: inputs must have one shape and dtype, got "
                             f"{[(x.shape, str(x.dtype)) for x in xs]}")
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x
        self._remember(xs[0], out)
        self._count = len(xs)
        return out

    def backward(self, grad_out):
        """grad_out -> a tuple of one gradient per input (the same array for each)"""
        grad_out = self._check_grad(grad_out)
        return (grad_out,) * self._count


class Concat(Layer):
    """Inputs stacked along the channel axis, in order (``torch.cat(xs, dim=1)``), as
    SqueezeNet's Fire module joins its 1x1 and 3x3 expansions (Iandola et al. 2016).

    - forward: (N, C1, H, W), (N, C2, H, W), ... -> (N, C1 + C2 + ..., H, W)
    - backward: grad_out (N, C1 + C2 + ..., H, W) -> (grad_out[:, :C1], grad_out[:, C1:C1+C2],
      ...): each input gets the slice of the gradient that its channels produced
    """

    def forward(self, *xs):
        """xs: one or more (N, Ci, H, W) -> (N, sum Ci, H, W)"""
        if not xs:
            raise ValueError(f"{self.describe()}: expected one or more inputs, got none")
        for x in xs:
            self._check_input(x, 4, "(N, C, H, W)")
        if len({(x.shape[0],) + x.shape[2:] for x in xs}) != 1 or len({x.dtype for x in xs}) != 1:
            raise ValueError(f"{self.describe()}: inputs must agree in N, H, W and dtype, got "
                             f"{[(x.shape, str(x.dtype)) for x in xs]}")
        out = np.concatenate(xs, axis=1)                                 # (N, sum Ci, H, W)
        self._remember(xs[0], out)
        self._channels = [x.shape[1] for x in xs]
        return out

    def backward(self, grad_out):
        """grad_out: (N, sum Ci, H, W) -> a tuple of (N, Ci, H, W), one per input"""
        grad_out = self._check_grad(grad_out)
        edges = np.cumsum([0] + self._channels)
        return tuple(grad_out[:, a:b] for a, b in zip(edges[:-1], edges[1:]))  # (N, Ci, H, W)


# ============================================================================ config

LAYER_TYPES = {cls.__name__: cls for cls in
               (Conv2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Linear, Dropout,
                BatchNorm2d, Add, Concat)}


def layer_from_config(config: dict, init: bool = True, dtype=np.float32) -> Layer:
    """Inverse of ``layer.config()``: {"type": "Conv2d", "in_channels": 3, ...} -> Conv2d(3, ...).

    Weights (in ``dtype``) are freshly initialised, or left uninitialised with init=False;
    load them with ``Sequential.load_state_dict``.
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"layer config must be a dict with a 'type' key, got {config!r}")
    kind = config["type"]
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}; known types are {sorted(LAYER_TYPES)}")
    args = {k: (tuple(v) if isinstance(v, list) else v)
            for k, v in config.items() if k not in ("type", "name")}
    if LAYER_TYPES[kind]._params:
        args.update(init=init, dtype=dtype)
    try:
        return LAYER_TYPES[kind](**args)
    except TypeError as error:
        raise ValueError(f"bad config for {kind}: {config!r} ({error})") from None
