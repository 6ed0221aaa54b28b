"""The builder every family of the zoo writes its layout with: a list of (name, layer, inputs)
triples in torchvision's order, and the BatchNorms folded into the convolutions on the way."""
from __future__ import annotations

from minicnn.engine.layers import BatchNorm2d, Conv2d, Linear

__all__ = ["Nodes"]


class Nodes:
    """Collects (name, layer, inputs) triples; each method returns the new node's name.

    ``conv(..., bn=NAME)`` records that torchvision's BatchNorm ``NAME`` follows this
    convolution and is folded into it (``pairs``): the BatchNorm gets no node, and the
    convolution a bias. ``batchnorm`` adds one that stays a layer (DenseNet's pre-activation
    BatchNorms read a concatenation, not a convolution). Both use the family's ``eps``.
    """

    def __init__(self, init: bool, dtype, eps: float = 1e-5):
        self.nodes, self.pairs = [], []
        self.init, self.dtype, self.eps = init, dtype, eps

    def add(self, name, layer, *inputs):
        self.nodes.append((name, layer, inputs))
        return name

    def conv(self, name, x, c_in, c_out, k, stride=1, padding=0, *, groups=1, bn=None,
             bias=True):
        """bias: torchvision's conv has one; a conv with a BatchNorm folded in always has."""
        layer = Conv2d(c_in, c_out, k, stride, padding, bias=bias or bn is not None,
                       groups=groups, init=self.init, dtype=self.dtype)
        if bn is not None:
            self.pairs.append((name, bn))
        return self.add(name, layer, x)

    def batchnorm(self, name, x, channels):
        return self.add(name, BatchNorm2d(channels, self.eps, init=self.init, dtype=self.dtype), x)

    def linear(self, name, x, c_in, c_out):
        return self.add(name, Linear(c_in, c_out, init=self.init, dtype=self.dtype), x)
