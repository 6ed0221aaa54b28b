"""Activations: elementwise functions with their backward passes, and, beside the chain
rule, the backward rules of the later saliency methods (deconvnet, guided backpropagation:
Zeiler & Fergus 2014; Springenberg et al. 2014, arXiv:1412.6806).

Every activation is an ``Activation``: it defines its function f (``function``) and the chain
rule through it, grad_out * f'(x) (``chain``), side by side, and the base class turns those
into ``forward``, ``infer`` and ``backward(grad_out, rule)``. PyTorch's definitions
(torch.nn.ReLU, ReLU6, Hardtanh, Hardswish, Hardsigmoid, SiLU, Sigmoid), including the value
of f' at the kinks, which each class states and the tests check.

The rules. For ReLU they are the definitions of the methods; every other activation is one of
two kinds, and the kind decides what the rules mean for it:

- a RECTIFIER passes a signal through where it is "on" and stops it where it is "off" (ReLU,
  ReLU6/Hardtanh, Hardswish, SiLU: the units of a network's body). "guided" is the chain rule
  with the negative part of the incoming signal stopped, f'(x) * max(grad_out, 0), and
  "deconvnet" is the rectifier applied to the signal alone, max(grad_out, 0), the forward input
  ignored. For ReLU, f'(x) = 1[x > 0], so these are exactly Springenberg et al.'s two rules;
  "guided" is also, for any function, zennit's guided-backprop hook (grad_input *
  (grad_output > 0)), which zennit and Captum attach to torch.nn.ReLU only.
- a GATE scales a signal by a factor in (0, 1) instead of rectifying it (Sigmoid and
  Hardsigmoid, as in squeeze-and-excitation: x * gate(...)). Its backward is the chain rule
  under every rule: the two methods are about where a rectifier lets a signal through, and a
  gate lets everything through, scaled (sigmoid' > 0, so it never flips a sign either).

How this differs from Captum: Captum's GuidedBackprop and Deconvolution hook torch.nn.ReLU
modules only, so on a network of ReLU6 or Hardswish units (MobileNet, EfficientNet) they
return the plain gradient. minicnn applies the rules to every rectifier instead, so that
guided backprop on MobileNetV2 is guided backprop; on a network whose only activations are
ReLUs and gates the two agree (tested).

Two more rules pass through every activation alike (``rules.py``):

- LRP's ``Pass``: the relevance of each output goes to the input at the same place,
  unchanged. An activation does not mix elements, so there is nothing to share out; what
  it switched off carries no relevance anyway, because the next layer's rule gives each of
  its inputs relevance in proportion to its value (zennit's Pass; Captum's LRP does the same
  at a ReLU). A gate (Sigmoid in squeeze-and-excitation) sits on the gate's branch, which
  the product (``joins.Mul``) gives no relevance.
- DeepLIFT's ``Rescale``: the multiplier (f(x) - f(x0)) / (x - x0) against the reference
  x0, the derivative where |x - x0| < eps (Captum's ``nonlinear``).
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from minicnn.engine import kernels
from minicnn.engine.kernels import RELU_RULES
from minicnn.engine.layers.base import Layer
from minicnn.engine.layers.rules import Pass, Rescale, rescale_quotient

__all__ = ["Activation", "ReLU", "Hardtanh", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU",
           "Sigmoid", "BACKWARD_RULES", "RELU_RULES", "sigmoid"]

# How an activation passes a signal back: the chain rule, or the rules of two later saliency
# methods. (The kernels call the tuple RELU_RULES: ReLU had the rules first.)
BACKWARD_RULES = RELU_RULES


def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, in x's dtype, any shape -> same shape.

    Never overflows: with e = exp(-|x|), which lies in (0, 1], sigmoid(x) = 1 / (1 + e) for
    x >= 0 and e / (1 + e) for x < 0 (the same value, multiplied by exp(x) / exp(x)). Each
    branch keeps full relative precision in its tail: sigmoid(-40) is 4.2e-18, not 0."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)                                  # exp(-|x|), in (0, 1]
    out = np.where(x < 0, e, x.dtype.type(1))
    e += 1
    out /= e
    return out


class Activation(Layer):
    """An elementwise function f, any shape -> the same shape, with the saliency rules.

    A subclass defines

    - ``function(x)``: f(x), a new array in x's dtype;
    - ``chain(grad_out, x)``: grad_out * f'(x), the chain rule (a new array);
    - ``rectifier``: True for a rectifier, False for a gate (see the module docstring).
      False unless a class says otherwise: an activation nobody has classified (a user's
      Tanh) passes the gradient under every rule, as every non-ReLU module does in Captum.

    ``backward(grad_out, rule)``, shared by all:

    - "gradient":  chain(grad_out, x), the derivative;
    - "guided":    chain(max(grad_out, 0), x) for a rectifier; the gradient for a gate;
    - "deconvnet": max(grad_out, 0) for a rectifier (x ignored); the gradient for a gate;
    - Pass():      grad_out itself (LRP: relevance passes through, element by element);
    - Rescale():   DeepLIFT's multiplier, (f(x) - f(x0)) / (x - x0) (see the module docstring).
    """

    rectifier: bool = False
    relevance_rules = {Pass: "relevance passes through unchanged, element by element"}
    rescale = "(f(x) - f(x0)) / (x - x0); the derivative where |x - x0| < eps"

    def function(self, x):
        """x: any shape -> f(x), a new array of that shape and dtype"""
        raise NotImplementedError

    def chain(self, grad_out, x):
        """grad_out, x: one shape -> grad_out * f'(x), a new array of that shape"""
        raise NotImplementedError

    def forward(self, x):
        """x: any shape -> f(x), same shape"""
        self._check_input(x)
        out = self.function(x)
        self._x = x  # every chain rule here reads the forward input
        self._out = out  # DeepLIFT's quotient reads the output too
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: shape of x -> grad_x: shape of x, by ``rule`` (see the class docstring)"""
        grad_out = self._check_rule_and_grad(grad_out, rule)
        if isinstance(rule, Pass):                    # LRP: relevance passes, element by element
            return grad_out
        if isinstance(rule, Rescale):                 # DeepLIFT: a difference quotient
            return rescale_quotient(grad_out, self._x, self._out, rule.eps,
                                    lambda: self.chain(grad_out, self._x))
        if rule == "gradient" or not self.rectifier:
            return self.chain(grad_out, self._x)
        positive = np.maximum(grad_out, 0)            # the signal, rectified
        return positive if rule == "deconvnet" else self.chain(positive, self._x)

    def default_relevance_rule(self, stabilizer):
        return Pass()

    def infer(self, x):
        """x: any shape -> f(x), nothing kept for backward."""
        self._check_input(x)
        self._x = self._out = self._out_shape = None  # a backward now needs a new forward
        return self.function(x)

    def _check_rule_and_grad(self, grad_out, rule):
        self.check_rule(rule)
        return self._check_grad(grad_out)


# ============================================================================ rectifiers

class ReLU(Activation):
    """out = max(x, 0), elementwise, any shape (torch.nn.ReLU). ReLU'(0) = 0.

    ``backward(grad_out, rule)`` offers three ways of passing a signal back through a ReLU;
    only "gradient" is the derivative, the other two define the later saliency methods:

    - "gradient":  grad_out where the forward INPUT was > 0 (the chain rule; ReLU'(0) = 0);
    - "deconvnet": ReLU applied to grad_out itself, the forward input ignored (Zeiler & Fergus
      2014, as phrased by Springenberg et al. 2014);
    - "guided":    both conditions (guided backpropagation, Springenberg et al. 2014).
    These are the ``Activation`` rules with f'(x) = 1[x > 0]; ReLU runs them as one kernel.
    """

    rectifier = True

    def function(self, x):
        return kernels.active().relu_forward(x)

    def chain(self, grad_out, x):
        return kernels.active().relu_backward(grad_out, x, "gradient")

    def backward(self, grad_out, rule="gradient"):
        """grad_out: shape of x -> grad_x: shape of x"""
        if not isinstance(rule, str):                 # Pass, Rescale: as every activation
            return super().backward(grad_out, rule)
        grad_out = self._check_rule_and_grad(grad_out, rule)
        # the three rules, one line each: minicnn/engine/kernels/reference.py, relu_backward
        return kernels.active().relu_backward(grad_out, self._x, rule)

    def infer(self, x, inplace=False):
        """x: any shape -> max(x, 0), nothing kept for backward. inplace=True overwrites x
        (when its values are needed nowhere else: ``Graph.predict`` decides) instead of
        writing a new array: one pass over memory instead of two, and no allocation."""
        self._check_input(x)
        inplace = inplace and x.flags.c_contiguous and x.flags.writeable
        out = kernels.active().relu_forward(x, out=x if inplace else None)
        self._x = self._out = self._out_shape = None  # a backward now needs a new forward
        return out


class Hardtanh(Activation):
    """out = min(max(x, min_val), max_val), elementwise, any shape (torch.nn.Hardtanh).

    f'(x) = 1 for min_val < x < max_val, else 0: at the kinks x = min_val and x = max_val it
    is 0, as in PyTorch's hardtanh_backward (tested). min_val < max_val, finite.
    """

    rectifier = True  # off below min_val and above max_val: guided stops negative signals

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        for what, value in (("min_val", min_val), ("max_val", max_val)):
            if not isinstance(value, Real) or isinstance(value, bool):
                raise TypeError(f"{type(self).__name__}: {what} must be a number, got "
                                f"{value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{type(self).__name__}: {what} must be finite, got {value!r}")
        if not min_val < max_val:
            raise ValueError(f"{type(self).__name__}: min_val must be less than max_val, got "
                             f"min_val={min_val!r}, max_val={max_val!r}")
        self.min_val, self.max_val = float(min_val), float(max_val)

    def function(self, x):
        return kernels.active().hardtanh_forward(x, self.min_val, self.max_val)   # reference.py

    def chain(self, grad_out, x):            # grad_out where min_val < x < max_val, else 0
        return kernels.active().hardtanh_backward(grad_out, x, self.min_val, self.max_val)

    def config(self) -> dict:
        return {"type": type(self).__name__, "min_val": self.min_val, "max_val": self.max_val}


class ReLU6(Hardtanh):
    """out = min(max(x, 0), 6), elementwise, any shape (torch.nn.ReLU6, MobileNetV2).

    PyTorch's ReLU6 is Hardtanh(0, 6), and so is this one: ReLU6'(x) = 1 for 0 < x < 6, else
    0, so ReLU6'(0) = 0 as ReLU'(0) = 0, and ReLU6'(6) = 0. A rectifier, like ReLU: where no
    unit reaches 6, every rule gives what it gives for ReLU (tested).
    """

    def __init__(self):
        super().__init__(0.0, 6.0)

    def config(self) -> dict:
        return {"type": "ReLU6"}


class Hardswish(Activation):
    """out = x * min(max(x + 3, 0), 6) / 6, elementwise, any shape (torch.nn.Hardswish,
    MobileNetV3; Howard et al. 2019, arXiv:1905.02244).

    f'(x) = 0 for x <= -3, x / 3 + 1/2 for -3 < x < 3, 1 for x >= 3: at x = -3 it is 0 and at
    x = 3 it is 1, as in PyTorch's hardswish_backward (tested). f' < 0 for -3 < x < -3/2.
    """

    rectifier = True  # off (0) below -3, the identity above 3, as a softened ReLU

    def function(self, x):
        return kernels.active().hardswish_forward(x)           # x min(max(x + 3, 0), 6) / 6

    def chain(self, grad_out, x):
        return kernels.active().hardswish_backward(grad_out, x)   # reference.py, as above


class SiLU(Activation):
    """out = x * sigmoid(x), elementwise, any shape (torch.nn.SiLU, "swish": EfficientNet;
    Elfwing et al. 2018, arXiv:1702.03118; Ramachandran et al. 2017, arXiv:1710.05941).

    f'(x) = s (1 + x (1 - s)) with s = sigmoid(x): smooth, no kinks; f' < 0 for x below
    about -1.28.
    """

    rectifier = True  # near 0 for x << 0, near the identity for x >> 0, as a smooth ReLU

    def function(self, x):
        out, self._s = kernels.active().silu_forward(x)     # x * s, s = sigmoid(x): reference.py
        return out

    def chain(self, grad_out, x):
        return kernels.active().silu_backward(grad_out, x, self._s)  # s (1 + x (1 - s)) grad

    def infer(self, x):
        out = super().infer(x)
        self._s = None                                 # kept only for a backward pass
        return out


# ============================================================================ gates

class Sigmoid(Activation):
    """out = 1 / (1 + exp(-x)), elementwise, any shape (torch.nn.Sigmoid); computed without
    overflow for any x (``sigmoid``).

    f'(x) = s (1 - s) with s = sigmoid(x), in (0, 1/4]. A gate: the chain rule under every
    rule. (The output would give s without a second exp; keeping the input, as every
    activation does, keeps one forward for all.)
    """

    rectifier = False  # scales a signal (SE's channel gate): every rule is the gradient

    def function(self, x):
        return sigmoid(x)

    def chain(self, grad_out, x):
        s = sigmoid(x)
        factor = 1 - s
        factor *= s                                   # f'(x) = s (1 - s)
        factor *= grad_out
        return factor


class Hardsigmoid(Activation):
    """out = min(max(x + 3, 0), 6) / 6, elementwise, any shape (torch.nn.Hardsigmoid, the
    gate of MobileNetV3's squeeze-and-excitation).

    f'(x) = 1/6 for -3 < x < 3, else 0: at both kinks x = -3 and x = 3 it is 0, as in
    PyTorch's hardsigmoid_backward (tested). (PyTorch's CPU kernel multiplies by 1/6 rounded
    to float32 even for float64 inputs; minicnn uses 1/6 in the input's dtype.)
    """

    rectifier = False  # scales a signal (SE's channel gate): every rule is the gradient

    def function(self, x):
        out = x + 3
        np.clip(out, 0, 6, out=out)
        out /= 6
        return out

    def chain(self, grad_out, x):
        grad = grad_out / 6
        grad[(x <= -3) | (x >= 3)] = 0                # the kinks included: f' = 0
        return grad
