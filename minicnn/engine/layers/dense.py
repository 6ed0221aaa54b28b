"""The classifier's layers: ``Flatten``, ``Linear`` and ``Dropout`` (the identity at
inference). Linear's LRP rules are Conv2d's, written once in ``rules.linear_relevance``;
Flatten and Dropout only move values, so every rule passes through them as the gradient
does."""
from __future__ import annotations

import math

import numpy as np

from minicnn.engine import kernels
from minicnn.engine.layers.base import Layer, uniform
from minicnn.engine.layers.rules import WEIGHT_RULES, Pass, RelevanceRule, linear_relevance

__all__ = ["Flatten", "Linear", "Dropout"]


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), PyTorch's Flatten(start_dim=1); backward reshapes
    back, whatever the rule."""

    relevance_rules = {Pass: "relevance is reshaped back with the values"}
    rescale = "the chain rule (values only move)"

    def default_relevance_rule(self, stabilizer):
        return Pass()

    def forward(self, x):
        """x: (N, ...) -> (N, D)"""
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"{self.describe()}: expected an input with a batch axis and at "
                             f"least one more, got shape {x.shape}")
        out = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, D), also for N = 0
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, D) -> grad_x: (N, ...)"""
        return self._check_backward(grad_out, rule).reshape(self._in_shape)  # (N, ...)


class Linear(Layer):
    """Fully connected layer: out = x @ weight.T + bias.

    - weight: (out_features, in_features); bias: (out_features,) or None
    - forward: x (N, in_features) -> (N, out_features)
    - backward: grad_out (N, out_features) -> grad_out @ weight, (N, in_features)

    Initial weights: PyTorch's default, U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    _params = ("weight", "bias")
    _kept = ("_x", "_z")
    relevance_rules = WEIGHT_RULES
    rescale = "the chain rule: a linear map's multipliers are its gradient"

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
        w, b = self.weight_as("weight", x.dtype), self.weight_as("bias", x.dtype)
        out = self._apply(x, w, b)                      # x @ w.T + b: (N, out_features)
        self._x, self._z = x, out  # read by the LRP rules only (references, no copies)
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, out_features) -> grad_x: (N, in_features).

        The gradient (and the saliency rules, and DeepLIFT's multipliers): grad_out @ w. An
        LRP rule: R_in = x' * (R / z') @ w', as for Conv2d (``rules.linear_relevance``)."""
        grad_out = self._check_backward(grad_out, rule)
        if isinstance(rule, RelevanceRule):
            R_in, self._absorbed = linear_relevance(self, rule, grad_out)
            return R_in
        return self._apply_transposed(grad_out, self.weight_as("weight", grad_out.dtype))

    def _apply(self, x, w, b):
        """x @ w.T + b for weights w (out, in): (N, in_features) -> (N, out_features)."""
        return kernels.active().linear_forward(x, w, b)

    def _apply_transposed(self, c, w):
        """c @ w: (N, out_features) -> (N, in_features), the chain rule's kernel."""
        return kernels.active().linear_backward_input(c, w)


class Dropout(Layer):
    """Dropout at inference: the identity (minicnn has no training mode). ``p`` is kept so the
    layer mirrors PyTorch's and round-trips through config(). Every rule passes through."""

    relevance_rules = {Pass: "relevance passes through (the identity)"}
    rescale = "the chain rule (the identity)"

    def default_relevance_rule(self, stabilizer):
        return Pass()

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

    def backward(self, grad_out, rule="gradient"):
        """grad_out -> grad_out"""
        return self._check_backward(grad_out, rule)
