"""Where branches of a graph meet: ``Add`` (a residual connection), ``Concat`` (stacked
channels) and ``Mul`` (a gate times the features it scales). Each takes several inputs and its
backward returns one gradient per input.

Under the other rules (``rules.py``), each join says how it shares what comes back:

- Add, LRP: in proportion to each input's contribution, R_i = x_i R / stabilised(sum)
  (``Epsilon``; zennit's Norm rule on its Sum module, Captum's epsilon rule on its
  Addition_Module). The gradient gives every input the whole R, which would count a
  residual block's relevance twice.
- Concat, LRP: each input its own channels' relevance, as the gradient (``Pass``).
- Mul, LRP: the SIGNAL TAKES ALL (``Pass``). In squeeze-and-excitation, out = gate * x with
  a gate in (0, 1) per channel: the gate says how much of x to let through, it is not
  evidence itself, so it is treated as a weight: x gets all of out's relevance and the
  gate none, and the gate's branch (its convolutions, the pooled features) carries none
  (Arras et al. 2017, "Explaining recurrent neural network predictions in sentiment
  analysis", for the gates of an LSTM). The gate is the input that was broadcast (SE's
  (N, C, 1, 1)); a product of two inputs of the output's shape has no such input and is a
  ValueError under LRP.
- DeepLIFT: Add and Concat are linear, their multipliers the gradient; Mul takes the
  average multipliers, (b + b0) / 2 for a and (a + a0) / 2 for b, with which the
  contributions add up to a b - a0 b0 exactly (the gradient's do not, and Captum, which
  sees a product only as autograd does, gives the gradient).
"""
from __future__ import annotations

import numpy as np

from minicnn.engine.layers.base import Layer
from minicnn.engine.layers.rules import Epsilon, Pass, Rescale, absorbed, divide, halves

__all__ = ["Add", "Concat", "Mul", "sum_to_shape"]


class Add(Layer):
    """The sum of two or more inputs of the same shape: a residual connection's ``out +
    identity`` (He et al. 2016).

    - forward: a, b, ... (any shape, all equal) -> a + b + ...
    - backward: grad_out -> (grad_out, grad_out, ...): d(a + b)/da = d(a + b)/db = 1, so every
      input receives the whole gradient. Where the model then merges the gradients coming back
      to one value along several paths, they add up (``Graph.backward``). LRP's Epsilon: each
      input x_i gets x_i * R / stabilised(a + b + ...), its share.
    """

    _kept = ("_xs", "_z")
    relevance_rules = {Epsilon: "in proportion to each input's contribution, "
                                "R_i = x_i R / stabilised(sum)"}
    rescale = "the chain rule: a sum's multipliers are its gradient"

    def default_relevance_rule(self, stabilizer):
        return Epsilon(stabilizer)

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
        self._xs, self._z = xs, out  # read by LRP's Epsilon only
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out -> a tuple of one gradient per input (the same array for each); LRP's
        Epsilon: one share of the relevance per input"""
        grad_out = self._check_backward(grad_out, rule)
        if isinstance(rule, Epsilon):
            c, shift = divide(grad_out, self._z, rule.epsilon)
            self._absorbed = {"stabiliser": absorbed(c, shift)[1]}
            return tuple(x * c for x in self._xs)
        return (grad_out,) * self._count


class Concat(Layer):
    """Inputs stacked along the channel axis, in order (``torch.cat(xs, dim=1)``), as
    SqueezeNet's Fire module joins its 1x1 and 3x3 expansions (Iandola et al. 2016).

    - forward: (N, C1, H, W), (N, C2, H, W), ... -> (N, C1 + C2 + ..., H, W)
    - backward: grad_out (N, C1 + C2 + ..., H, W) -> (grad_out[:, :C1], grad_out[:, C1:C1+C2],
      ...): each input gets the slice of the gradient that its channels produced, whatever
      the rule (LRP: each input its channels' relevance)
    """

    relevance_rules = {Pass: "each input gets its own channels' relevance"}
    rescale = "the chain rule (values only move)"

    def default_relevance_rule(self, stabilizer):
        return Pass()

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

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, sum Ci, H, W) -> a tuple of (N, Ci, H, W), one per input"""
        grad_out = self._check_backward(grad_out, rule)
        edges = np.cumsum([0] + self._channels)
        return tuple(grad_out[:, a:b] for a, b in zip(edges[:-1], edges[1:]))  # (N, Ci, H, W)


class Mul(Layer):
    """The elementwise product of two inputs with NumPy's (and torch.mul's) broadcasting:
    squeeze-and-excitation's ``scale * x``, a per-channel gate (N, C, 1, 1) times the features
    (N, C, H, W) it scales (Hu et al. 2018, arXiv:1709.01507), in either order.

    - forward: a, b (shapes that broadcast together, one dtype) -> a * b, of the broadcast
      shape, e.g. (N, C, 1, 1), (N, C, H, W) -> (N, C, H, W)
    - backward: grad_out (broadcast shape) -> (grad_out * b summed back to a's shape,
      grad_out * a summed back to b's shape). d(a * b)/da = b at every output; where a was
      broadcast, one element of a reached many outputs, so its gradient is the sum over them
      (the same sum as at a fan-out in the graph).
    - LRP (``Pass``): the signal takes all, the gate (the broadcast input) none; DeepLIFT:
      the average multipliers (the module docstring says why).
    """

    _kept = ("_a", "_b")
    relevance_rules = {Pass: "the signal takes all: the relevance goes to the input of the "
                             "output's shape, the gate (the broadcast input) gets none"}
    rescale = "the average multipliers (b + b0) / 2 for a and (a + a0) / 2 for b"

    def default_relevance_rule(self, stabilizer):
        return Pass()

    def check_rule(self, rule):
        super().check_rule(rule)
        if isinstance(rule, Pass) and getattr(self, "_a", None) is not None \
                and self._signal() is None:
            raise ValueError(f"{self.describe()}: LRP passes a product's relevance to its signal "
                             f"and none to its gate, the input that was broadcast; here both "
                             f"inputs have the output's shape {self._a.shape}, so neither is the "
                             f"gate. What applies: a model whose products scale features by a "
                             f"broadcast gate (squeeze-and-excitation), or the gradient or "
                             f"DeepLIFT's rescale rule")

    def _signal(self):
        """0 or 1, the input of the output's shape when the other was broadcast; else None."""
        shape = self._out_shape
        full = [x.shape == shape for x in (self._a, self._b)]
        return full.index(True) if full.count(True) == 1 else None

    def forward(self, *xs):
        """a, b: broadcastable shapes -> a * b: their broadcast shape"""
        if len(xs) != 2:
            raise ValueError(f"{self.describe()}: expected two inputs, got {len(xs)}")
        for x in xs:
            self._check_input(x)
        a, b = xs
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{self.describe()}: input shapes {a.shape} and {b.shape} do not "
                             f"broadcast together") from None
        if a.dtype != b.dtype:
            raise ValueError(f"{self.describe()}: inputs must have one dtype, got {a.dtype} "
                             f"and {b.dtype}")
        out = a * b                                                      # broadcast shape
        self._a, self._b = a, b  # each one's gradient is the other, times grad_out
        self._remember(a, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: the broadcast shape -> (grad_a shaped like a, grad_b shaped like b)"""
        grad_out = self._check_backward(grad_out, rule)
        a, b = self._a, self._b
        if isinstance(rule, Pass):                     # the signal takes all, the gate none
            shares = [np.zeros(a.shape, grad_out.dtype), np.zeros(b.shape, grad_out.dtype)]
            shares[self._signal()] = grad_out
            return tuple(shares)
        if isinstance(rule, Rescale):                  # average multipliers: exact for a product
            (a1, a0), (b1, b0) = halves(a), halves(b)
            a, b = np.concatenate([(a1 + a0) / 2] * 2), np.concatenate([(b1 + b0) / 2] * 2)
        return (sum_to_shape(grad_out * b, self._a.shape),
                sum_to_shape(grad_out * a, self._b.shape))


def sum_to_shape(grad, shape):
    """Undo broadcasting in a gradient: ``grad`` (the broadcast shape) summed over the axes
    along which an input of ``shape`` was repeated -> an array of ``shape``.

    Broadcasting prepends axes of length 1 and repeats axes of length 1; the sum runs over the
    prepended axes and over the axes where ``shape`` has 1 and ``grad`` has more."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and grad.shape[lead + i] != 1)
    if not axes:
        return grad
    return grad.sum(axis=axes).reshape(shape)        # (shape) after the summed axes go
