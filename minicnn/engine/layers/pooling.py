"""Pooling: max, average and adaptive average pools over windows of each channel."""
from __future__ import annotations

from minicnn.engine import kernels
from minicnn.engine.layers.base import Layer, pair

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
    """

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
    """Mean over KH x KW windows, as PyTorch's AvgPool2d (``kernels.pool_window``).

    - count_include_pad=True (PyTorch's default): padding counts as zeros, so a window
      divides by KH*KW (a last, partial window of ceil_mode by its part inside the padded
      input); False: a window divides by the number of real inputs it covers (GoogLeNet's
      and DenseNet's pools use the default, TensorFlow-made networks False)
    - forward: x (N, C, H, W) -> (N, C, OH, OW)
    - backward: each output gradient is shared equally by its window's inputs, divided by
      what the forward divided by
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
        self._remember(x, out)
        return out

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_grad(grad_out)
        return kernels.active().avgpool2d_backward(grad_out, self.kernel_size, self.stride,
                                                   self.padding, self._in_shape,
                                                   self.ceil_mode, self.count_include_pad)


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
