"""Where branches of a graph meet: ``Add`` (a residual connection), ``Concat`` (stacked
channels) and ``Mul`` (a gate times the features it scales). Each takes several inputs and its
backward returns one gradient per input."""
from __future__ import annotations

import numpy as np

from minicnn.engine.layers.base import Layer

__all__ = ["Add", "Concat", "Mul", "sum_to_shape"]


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
    """

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

    def backward(self, grad_out):
        """grad_out: the broadcast shape -> (grad_a shaped like a, grad_b shaped like b)"""
        grad_out = self._check_grad(grad_out)
        return (sum_to_shape(grad_out * self._b, self._a.shape),
                sum_to_shape(grad_out * self._a, self._b.shape))


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
