"""Layers that move values without computing new ones: ``ZeroPad2d`` (a frame of zeros),
``ChannelShuffle`` (channels reordered) and ``ChannelSlice`` (some of the channels). Each
backward sends every gradient element back to the input element it came from, and zeros to
nothing: padding is cropped off, the shuffle is undone, the unsliced channels get 0.

They let minicnn run two families of torchvision-style networks:

- ShuffleNet V2 (Ma et al. 2018, arXiv:1807.11164): a unit splits its input's channels in two
  (``x.chunk(2, dim=1)``: two ``ChannelSlice`` nodes reading the same value), transforms one
  half, concatenates (``Concat``) and shuffles the channels (``ChannelShuffle``) so that the
  halves mix in the next unit. The two slices' gradients meet at the value they read and add
  up there (``Graph.backward``), which fills in each half's channels.
- TensorFlow's "same" padding (EfficientNet-Lite and other ports): a ``ZeroPad2d`` with the
  (possibly uneven) padding TensorFlow would add, then a Conv2d with padding 0.

Every other backward rule (``rules.py``) passes through them the same way: relevance and
DeepLIFT's multipliers move with the values, as the gradient does (LRP's ``Pass``). What an
LRP rule sends to the padding's zeros (the flat and w^2 rules give every position a share)
is cropped off with them, and shows in the relevance ledger's residual.
"""
from __future__ import annotations

import numpy as np

from minicnn.engine.layers.base import Layer
from minicnn.engine.layers.rules import Pass


class _MovesValues:
    """The rules of a layer that only moves values: every rule routes the signal back as the
    gradient does."""

    relevance_rules = {Pass: "relevance moves back with the values"}
    rescale = "the chain rule (values only move)"

    def default_relevance_rule(self, stabilizer):
        return Pass()

__all__ = ["ZeroPad2d", "ChannelShuffle", "ChannelSlice"]


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class ZeroPad2d(_MovesValues, Layer):
    """Zeros around the image, as torch.nn.ZeroPad2d without its negative padding.

    padding: an int (every side) or (left, right, top, bottom), torch's order (the last axis
    first, as in torch.nn.functional.pad); every side >= 0. (PyTorch crops a side whose
    padding is negative; minicnn refuses it, so that the layer only ever adds zeros.)

    - forward: x (N, C, H, W) -> (N, C, top + H + bottom, left + W + right), x in the middle
    - backward: grad_out of that shape -> grad_out[:, :, top:top + H, left:left + W], (N, C, H,
      W): the padding's zeros depend on no input, so their gradient goes nowhere
    """

    def __init__(self, padding):
        if _is_int(padding):
            padding = (padding,) * 4
        if not (isinstance(padding, (tuple, list)) and len(padding) == 4
                and all(_is_int(p) for p in padding)):
            raise TypeError(f"ZeroPad2d: padding must be an int or four ints (left, right, "
                            f"top, bottom), got {padding!r}")
        if min(padding) < 0:
            raise ValueError(f"ZeroPad2d: padding must be >= 0 on every side (left, right, "
                             f"top, bottom), got {tuple(padding)}")
        self.padding = tuple(int(p) for p in padding)

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, top + H + bottom, left + W + right)"""
        self._check_input(x, 4, "(N, C, H, W)")
        left, right, top, bottom = self.padding
        N, C, H, W = x.shape
        out = np.zeros((N, C, top + H + bottom, left + W + right), x.dtype)
        out[:, :, top:top + H, left:left + W] = x
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, C, top + H + bottom, left + W + right) -> (N, C, H, W)"""
        grad_out = self._check_backward(grad_out, rule)
        left, _, top, _ = self.padding
        H, W = self._in_shape[2:]
        return grad_out[:, :, top:top + H, left:left + W]                    # (N, C, H, W)

    def config(self) -> dict:
        return {"type": "ZeroPad2d", "padding": list(self.padding)}


class ChannelShuffle(_MovesValues, Layer):
    """Channels regrouped, as torch.nn.ChannelShuffle and ShuffleNet's ``channel_shuffle``:
    the C = groups * k channels are read as ``groups`` groups of k, and the output takes the
    first channel of every group, then the second of every group, and so on.

    - forward: x (N, C, H, W) viewed as (N, groups, k, H, W), the two group axes swapped to
      (N, k, groups, H, W), flattened back to (N, C, H, W): out channel j * groups + i is in
      channel i * k + j. With groups = 2 and C = 6: channels 0, 3, 1, 4, 2, 5.
    - backward: the inverse permutation, the same steps with groups and k exchanged:
      grad_out (N, C, H, W) -> (N, k, groups, H, W) -> (N, groups, k, H, W) -> (N, C, H, W).
    """

    def __init__(self, groups: int):
        if not _is_int(groups):
            raise TypeError(f"ChannelShuffle: groups must be an int, got {groups!r}")
        if groups < 1:
            raise ValueError(f"ChannelShuffle: groups must be >= 1, got {groups}")
        self.groups = int(groups)

    def forward(self, x):
        """x: (N, C, H, W), C a multiple of groups -> (N, C, H, W), channels shuffled"""
        self._check_input(x, 4, "(N, C, H, W)")
        N, C, H, W = x.shape
        if C % self.groups:
            raise ValueError(f"{self.describe()}: the input's {C} channels do not split into "
                             f"{self.groups} groups, got input of shape {x.shape}")
        out = x.reshape(N, self.groups, C // self.groups, H, W)    # (N, groups, k, H, W)
        out = out.transpose(0, 2, 1, 3, 4)                         # (N, k, groups, H, W)
        out = out.reshape(N, C, H, W)                              # (N, C, H, W)
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, C, H, W) -> (N, C, H, W), channels put back"""
        grad_out = self._check_backward(grad_out, rule)
        N, C, H, W = grad_out.shape
        grad = grad_out.reshape(N, C // self.groups, self.groups, H, W)  # (N, k, groups, H, W)
        grad = grad.transpose(0, 2, 1, 3, 4)                             # (N, groups, k, H, W)
        return grad.reshape(N, C, H, W)                                  # (N, C, H, W)

    def config(self) -> dict:
        return {"type": "ChannelShuffle", "groups": self.groups}


class ChannelSlice(_MovesValues, Layer):
    """Channels start, ..., stop - 1 of the input: ``x[:, start:stop]``, as one of the halves
    of ShuffleNet V2's ``x.chunk(2, dim=1)`` (one ChannelSlice node per half, both reading x).

    0 <= start < stop; the input needs at least ``stop`` channels.

    - forward: x (N, C, H, W) -> x[:, start:stop], (N, stop - start, H, W), a view of x
    - backward: grad_out (N, stop - start, H, W) -> (N, C, H, W): grad_out in channels
      start:stop, zeros in the others (they did not reach this output). The other slices of
      the same x bring their own channels' gradients, and ``Graph.backward`` adds them up.
    """

    def __init__(self, start: int, stop: int):
        if not (_is_int(start) and _is_int(stop)):
            raise TypeError(f"ChannelSlice: start and stop must be ints, got start={start!r}, "
                            f"stop={stop!r}")
        if not 0 <= start < stop:
            raise ValueError(f"ChannelSlice: need 0 <= start < stop, got start={start}, "
                             f"stop={stop}")
        self.start, self.stop = int(start), int(stop)

    def forward(self, x):
        """x: (N, C, H, W), C >= stop -> (N, stop - start, H, W)"""
        self._check_input(x, 4, "(N, C, H, W)")
        if x.shape[1] < self.stop:
            raise ValueError(f"{self.describe()}: channels {self.start}:{self.stop} need at "
                             f"least {self.stop} input channels, got input of shape {x.shape}")
        out = x[:, self.start:self.stop]                         # (N, stop - start, H, W)
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, stop - start, H, W) -> (N, C, H, W), zero outside start:stop"""
        grad_out = self._check_backward(grad_out, rule)
        grad = np.zeros(self._in_shape, grad_out.dtype)          # (N, C, H, W)
        grad[:, self.start:self.stop] = grad_out
        return grad

    def config(self) -> dict:
        return {"type": "ChannelSlice", "start": self.start, "stop": self.stop}
