"""Batch normalisation at inference: an affine map per channel, and how it folds into the
convolution before it (written once, in float64, for every loader)."""
from __future__ import annotations

import numpy as np

from minicnn.engine.layers.base import Layer, uniform

__all__ = ["BatchNorm2d", "batchnorm_scale_shift", "fold_batchnorm"]


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
                uniform(None, C, 0.0, dtype, init=False) for _ in range(4))

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
