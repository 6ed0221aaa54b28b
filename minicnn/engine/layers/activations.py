"""Activations: elementwise functions with their backward passes, and, beside the chain
rule, the backward rules of the later saliency methods (deconvnet, guided backpropagation:
Zeiler & Fergus 2014; Springenberg et al. 2014, arXiv:1412.6806)."""
from __future__ import annotations

from minicnn.engine import kernels
from minicnn.engine.kernels import RELU_RULES
from minicnn.engine.layers.base import Layer

__all__ = ["ReLU", "RELU_RULES"]


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
