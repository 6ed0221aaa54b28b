"""Convolution: ``Conv2d``, forward and backward to its input side by side; the loops are
the kernels' ``conv2d_forward`` and ``conv2d_backward_input`` (``kernels/reference.py``).

Its LRP rules are those of every layer z = W x + b, written once in ``rules.py``
(``linear_relevance``) in terms of this layer's own two kernels: ``_apply`` (the convolution
with other weights, e.g. w+ for z-plus) and ``_apply_transposed`` (the chain rule's kernel,
W^T c). A grouped or depthwise convolution needs nothing more."""
from __future__ import annotations

import math

import numpy as np

from minicnn.engine import kernels
from minicnn.engine.layers.base import Layer, pair, uniform
from minicnn.engine.layers.rules import WEIGHT_RULES, RelevanceRule, linear_relevance

__all__ = ["Conv2d"]


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as PyTorch), grouped and dilated as PyTorch's.

    - weight: (F, C // groups, KH, KW); bias: (F,) or None
    - forward: x (N, C, H, W) -> out (N, F, OH, OW), OH = 1 + (H + 2*ph - dh*(KH-1) - 1) // sh
    - backward: grad_out (N, F, OH, OW) -> grad_x (N, C, H, W); needs only w and x's shape
      (an LRP rule reads x and out too: ``rules.linear_relevance``)

    groups: the C input channels and F filters are cut into ``groups`` equal groups, and the
    filters of group g see only the channels of group g (ResNeXt's grouped convolutions);
    groups = C is a depthwise convolution, F // C filters per channel (MobileNet, EfficientNet).
    dilation: the kernel's taps are spaced ``dilation`` apart (DeepLab's atrous convolution),
    so a window spans dh*(KH-1)+1 rows of the padded input.

    Initial weights: PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in =
    (C // groups)*KH*KW for weight and bias, drawn from ``numpy.random.default_rng(rng)``;
    loaders overwrite them.
    """

    _params = ("weight", "bias")
    _kept = ("_x", "_z")
    relevance_rules = WEIGHT_RULES
    rescale = "the chain rule: a linear map's multipliers are its gradient"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 *, groups=1, dilation=1, dtype=np.float32, rng=None, init=True):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "Conv2d kernel_size")
        self.stride = pair(stride, "Conv2d stride")
        self.padding = pair(padding, "Conv2d padding")
        self.dilation = pair(dilation, "Conv2d dilation")
        if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
            raise TypeError(f"Conv2d groups must be an int, got {groups!r}")
        self.groups = int(groups)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, "
                             f"got {self.kernel_size}, {self.stride}, {self.padding}")
        if min(self.dilation) < 1:
            raise ValueError(f"Conv2d: dilation must be >= 1, got {self.dilation}")
        if (self.groups < 1 or self.in_channels % self.groups
                or self.out_channels % self.groups):
            raise ValueError(f"Conv2d: in_channels and out_channels must both be divisible by "
                             f"groups >= 1, got in_channels={self.in_channels}, "
                             f"out_channels={self.out_channels}, groups={self.groups}")
        rng = np.random.default_rng(rng)
        group_channels = self.in_channels // self.groups  # the channels one filter sees
        bound = 1.0 / math.sqrt(group_channels * self.kernel_size[0] * self.kernel_size[1])
        shape = (self.out_channels, group_channels) + self.kernel_size  # (F, C // groups, KH, KW)
        self.weight = uniform(rng, shape, bound, dtype, init)
        self.bias = uniform(rng, (self.out_channels,), bound, dtype, init) if bias else None

    def config(self):
        return {"type": "Conv2d", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding),
                "bias": self.bias is not None, "groups": self.groups,
                "dilation": list(self.dilation)}

    def forward(self, x):
        """x: (N, C, H, W) -> (N, F, OH, OW)"""
        self._check_input(x, 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self.describe()}: expected {self.in_channels} input channels, "
                             f"got input of shape {x.shape}")
        self._check_dilated_window(x)
        w, b = self.weight_as("weight", x.dtype), self.weight_as("bias", x.dtype)
        out = self._apply(x, w, b)
        self._x, self._z = x, out  # read by the LRP rules only (references, no copies)
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, F, OH, OW) -> grad_x: (N, C, H, W).

        The gradient (and the saliency rules, which change activations only, and DeepLIFT,
        whose multipliers through a linear map are its gradient): W^T grad_out. An LRP rule
        (``rules.WEIGHT_RULES``): relevance R = grad_out shared among the inputs by the rule,
        R_in = x' * W'^T (R / z'), the same few lines for Conv2d and Linear
        (``rules.linear_relevance``)."""
        grad_out = self._check_backward(grad_out, rule)
        if isinstance(rule, RelevanceRule):
            R_in, self._absorbed = linear_relevance(self, rule, grad_out)
            return R_in
        return self._apply_transposed(grad_out, self.weight_as("weight", grad_out.dtype))

    def _apply(self, x, w, b):
        """This convolution with weights w (F, C // groups, KH, KW) and bias b: (N, C, H, W) ->
        (N, F, OH, OW)."""
        return kernels.active().conv2d_forward(x, w, b, self.stride, self.padding,
                                               self.dilation, self.groups)

    def _apply_transposed(self, c, w):
        """W^T c for weights w: (N, F, OH, OW) -> (N, C, H, W), the chain rule's kernel."""
        return kernels.active().conv2d_backward_input(c, w, self.stride, self.padding,
                                                      self._in_shape, self.dilation,
                                                      self.groups)

    def _check_dilated_window(self, x):
        """ValueError unless the kernel, its taps spaced by the dilation, fits inside the
        padded input."""
        if self.dilation == (1, 1):
            self._check_window(x, self.kernel_size, self.padding)
            return
        span = tuple(kernels.dilated(k, d) for k, d in zip(self.kernel_size, self.dilation))
        (H, W), (ph, pw) = x.shape[2:], self.padding
        if H + 2 * ph < span[0] or W + 2 * pw < span[1]:
            raise ValueError(
                f"{self.describe()}: kernel {self.kernel_size} with dilation {self.dilation} "
                f"spans {span}, more than the padded input {(H + 2 * ph, W + 2 * pw)} "
                f"(input H, W = {(H, W)}, padding {self.padding})")
