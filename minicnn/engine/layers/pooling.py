"""Pooling: max, average and adaptive average pools over windows of each channel.

Under the other backward rules (``rules.py``):

- max-pool, LRP: WINNER TAKES ALL (``Pass``): each window's relevance goes to the input the
  max came from, as its gradient does. The alternative, in proportion to the window's
  inputs, would hand relevance to inputs the output never saw; winner-takes-all is also
  what zennit does (it leaves max-pools to the gradient) and, up to x / (x + 1e-9), what
  Captum's epsilon rule at a max-pool does.
- average pools, LRP: ``Epsilon``, the rule of a linear layer whose weights are 1/count:
  each input gets relevance in proportion to its share of the mean (zennit's Norm rule).
- max-pool, DeepLIFT: Captum's multipliers (``MaxPool2d._rescale``); average pools are
  linear, their multipliers are their gradient.
"""
from __future__ import annotations

import numpy as np

from minicnn.engine import kernels
from minicnn.engine.layers.base import Layer, pair
from minicnn.engine.layers.rules import (Epsilon, Pass, Rescale, absorbed, divide, halves,
                                         times)

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class _Pool2d(Layer):
    """Shared constructor and checks of MaxPool2d and AvgPool2d.

    ceil_mode: PyTorch's; True rounds OH up, keeping a last, partial window as long as it
    starts inside the input or its left padding (``kernels.output_size``). SqueezeNet's
    max-pools use it: 3x3 windows with stride 2 over 109 rows give 54, not 53."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        kind = type(self).__name__
        self.ceil_mode = bool(ceil_mode)
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
                "stride": list(self.stride), "padding": list(self.padding),
                "ceil_mode": self.ceil_mode}

    def _check_pool_input(self, x):
        self._check_input(x, 4, "(N, C, H, W)")
        self._check_window(x, self.kernel_size, self.padding)


class MaxPool2d(_Pool2d):
    """Max over KH x KW windows; padding is -inf (never chosen).

    - forward: x (N, C, H, W) -> (N, C, OH, OW); keeps argmax (N, C, OH, OW), the index of the
      winning element in its (H, W) plane
    - backward: each output gradient goes to its window's winner. Ties (a choice, the same as
      PyTorch's CPU kernel): the FIRST maximum in row-major order within the window wins.
      LRP's Pass routes relevance the same way (winner takes all); DeepLIFT: ``_rescale``.
    """

    relevance_rules = {Pass: "winner takes all: each window's relevance goes to the input "
                             "the max came from"}
    rescale = ("Captum's max-pool multipliers: the change of each window's max routed to the "
               "winners of the image and of the reference, over x - x0")

    def default_relevance_rule(self, stabilizer):
        return Pass()

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)"""
        self._check_pool_input(x)
        out, self._argmax = kernels.active().maxpool2d_forward(x, self.kernel_size, self.stride,
                                                               self.padding, self.ceil_mode)
        self._x, self._out = x, out  # DeepLIFT's multipliers read them
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, C, OH, OW) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_backward(grad_out, rule)
        if isinstance(rule, Rescale):
            return self._rescale(grad_out, rule.eps)
        # the gradient, the saliency rules and LRP's Pass alike: to each window's winner
        return kernels.active().maxpool2d_backward(grad_out, self._argmax, self._in_shape)

    def _rescale(self, grad_out, eps):
        """DeepLIFT's multipliers through a max-pool, as Captum defines them (its ``maxpool``).

        With y = max over a window of x and y0 the same for the reference x0, the change
        y - y0 of a window is split at max(y, y0): the part max(y, y0) - y0 goes to the
        image's winner, the part y - max(y, y0) (<= 0) to the reference's; each input's
        multiplier is what reached it over its own change x - x0, or the gradient where
        |x - x0| < eps. The multipliers times x - x0 add up to the windows' changes
        (summation to delta). Where two windows overlap, what reaches an input from both is
        ADDED (the chain rule's kernel); Captum's max_unpool2d keeps one of them, so it is
        wrong for overlapping windows (kernel > stride); and its fallback takes the first
        image's gradient for every image of a batch (Captum #1276).

        grad_out: (2N, C, OH, OW), images then references -> (2N, C, H, W)"""
        (x, x0), (y, y0) = halves(self._x), halves(self._out)
        top = np.maximum(y, y0)
        delta = np.concatenate([top - y0, y - top])               # (2N, C, OH, OW)
        routed = kernels.active().maxpool2d_backward(grad_out * delta, self._argmax,
                                                     self._in_shape)
        via_image, via_reference = halves(routed)
        dx = x - x0
        near = np.abs(dx) < eps
        m = (via_image + via_reference) / np.where(near, 1, dx)   # (N, C, H, W)
        m = np.concatenate([m, m])                                # both halves, as Captum
        if near.any():
            gradient = kernels.active().maxpool2d_backward(grad_out, self._argmax,
                                                           self._in_shape)
            m = np.where(np.concatenate([near, near]), gradient, m)
        return m

    def infer(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW), the maxima alone: no argmax (which only backward
        needs, and which is twice the output's bytes)."""
        self._check_pool_input(x)
        out = kernels.active().maxpool2d_values(x, self.kernel_size, self.stride, self.padding,
                                                self.ceil_mode)
        self._argmax = self._x = self._out = self._out_shape = None  # backward: a new forward
        return out


class _AveragePool:
    """What AvgPool2d and AdaptiveAvgPool2d share: ``backward``, around each one's own chain
    rule (``_chain``), and the other rules. An average is a linear layer with fixed weights
    1/count and no bias, so

    - LRP's Epsilon: R_in = x * (chain rule of R / stabilised z): each input's relevance in
      proportion to its share of each mean it entered (zennit's Norm rule, Captum's epsilon
      rule); only the stabiliser takes any;
    - DeepLIFT: the gradient (a linear map's multipliers)."""

    _kept = ("_x", "_z")
    relevance_rules = {Epsilon: "each input's share in proportion to its part of the mean"}
    rescale = "the chain rule: a linear map's multipliers are its gradient"

    def default_relevance_rule(self, stabilizer):
        return Epsilon(stabilizer)

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, C, OH, OW) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_backward(grad_out, rule)
        if isinstance(rule, Epsilon):
            return self._epsilon(grad_out, rule)
        return self._chain(grad_out)

    def _epsilon(self, R, rule):
        c, shift = divide(R, self._z, rule.epsilon)
        self._absorbed = {"stabiliser": absorbed(c, shift)[1]}
        return times(self._chain(c), self._x)


class AvgPool2d(_AveragePool, _Pool2d):
    """Mean over KH x KW windows, as PyTorch's AvgPool2d (``kernels.pool_window``).

    - count_include_pad=True (PyTorch's default): padding counts as zeros, so a window
      divides by KH*KW (a last, partial window of ceil_mode by its part inside the padded
      input); False: a window divides by the number of real inputs it covers (GoogLeNet's
      and DenseNet's pools use the default, TensorFlow-made networks False)
    - forward: x (N, C, H, W) -> (N, C, OH, OW)
    - backward: each output gradient is shared equally by its window's inputs, divided by
      what the forward divided by; LRP's Epsilon: see ``_AveragePool``
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def config(self):
        return {**super().config(), "count_include_pad": self.count_include_pad}

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)"""
        self._check_pool_input(x)
        out = kernels.active().avgpool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                                 self.ceil_mode, self.count_include_pad)
        self._x, self._z = x, out  # read by LRP's Epsilon only
        self._remember(x, out)
        return out

    def _chain(self, grad_out):
        return kernels.active().avgpool2d_backward(grad_out, self.kernel_size, self.stride,
                                                   self.padding, self._in_shape,
                                                   self.ceil_mode, self.count_include_pad)


class AdaptiveAvgPool2d(_AveragePool, Layer):
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
        self._x, self._z = x, out  # read by LRP's Epsilon only
        self._remember(x, out)
        return out

    def _chain(self, grad_out):
        return kernels.active().adaptive_avgpool2d_backward(grad_out, self._in_shape)
