"""The classifier's layers: ``Flatten``, ``Linear`` and ``Dropout`` (the identity at
inference)."""
from __future__ import annotations

import math

import numpy as np

from minicnn.engine import kernels
from minicnn.engine.layers.base import Layer, uniform

__all__ = ["Flatten", "Linear", "Dropout"]


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
        self.weight = uniform(rng, (self.out_features, self.in_features), bound, dtype, init)
        self.bias = uniform(rng, (self.out_features,), bound, dtype, init) if bias else None

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
