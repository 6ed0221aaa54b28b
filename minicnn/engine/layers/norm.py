"""Normalisation layers at inference: ``BatchNorm2d``, an affine map per channel, and how it
folds into the convolution before it (written once, in float64, for every loader); and ``LRN``,
AlexNet's local response normalisation across neighbouring channels (Krizhevsky, Sutskever &
Hinton 2012, section 3.3)."""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from minicnn.engine.layers.base import Layer, uniform
from minicnn.engine.layers.rules import Epsilon, Pass, Rescale, absorbed, divide, rescale_quotient

__all__ = ["BatchNorm2d", "LRN", "batchnorm_scale_shift", "fold_batchnorm"]


class BatchNorm2d(Layer):
    """Batch normalisation at inference (PyTorch's eval mode): per channel c,

        y = (x - running_mean[c]) / sqrt(running_var[c] + eps) * weight[c] + bias[c]
          = x * scale[c] + shift[c]

    an affine map fixed by the trained statistics, so backward is grad_out * scale[c].

    - weight, bias: (C,) (gamma, beta); running_mean, running_var: (C,) buffers
    - forward: x (N, C, H, W) -> (N, C, H, W); backward: the same shapes

    A BatchNorm right after a convolution can be folded into it (``fold_batchnorm``, the
    default when importing a torch model): the same function with one layer fewer.

    LRP: FOLDED where it can be, a rule of its own where it cannot. minicnn's importers
    fold every BatchNorm that follows a convolution into it, once, at load time (zennit's
    canonizers do the same before explaining), so the convolution's rule sees the weights
    that really act on its input (a negative scale flips which contributions z-plus counts
    as positive). A BatchNorm that follows anything else (DenseNet's, after a
    concatenation and before a ReLU) cannot be folded into a linear layer before it; its
    own rule is Epsilon's on its affine map, R_in = x * scale * R / stabilised(y): the
    share of the shift goes nowhere, as a bias's does, and the ledger shows it in its own
    column (Captum's LRP gives BatchNorm2d the epsilon rule too). DeepLIFT: an affine map's
    multipliers are its gradient.
    """

    _params = ("weight", "bias")
    _buffers = ("running_mean", "running_var")
    _kept = ("_x", "_z")
    relevance_rules = {Epsilon: "its own rule: R_in = x scale R / stabilised(y); the shift "
                                "takes its share, as a bias does"}
    rescale = "the chain rule: an affine map's multipliers are its gradient"

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
        scale, shift = self.derived(("scale_shift", x.dtype, ""),
                                    lambda: np.stack(self.scale_shift(x.dtype)))  # (2, C)
        self._scale, self._shift = scale, shift
        out = x * scale[:, None, None]                                 # (N, C, H, W)
        out += shift[:, None, None]                                    # in place: one array
        self._x, self._z = x, out  # read by LRP's Epsilon only
        self._remember(x, out)
        return out

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, C, H, W) -> grad_x: (N, C, H, W), grad_out * scale per channel;
        LRP's Epsilon: x * scale * R / stabilised(y) (see the class docstring)"""
        grad_out = self._check_backward(grad_out, rule)
        if isinstance(rule, Epsilon):
            c, step = divide(grad_out, self._z, rule.epsilon)
            took, stabilised = absorbed(c, step, self._shift)       # the shift as a bias
            self._absorbed = {"batchnorm": took, "stabiliser": stabilised}
            return self._x * c * self._scale[:, None, None]
        return grad_out * self._scale[:, None, None]

    def default_relevance_rule(self, stabilizer):
        return Epsilon(stabilizer)


class LRN(Layer):
    """Local response normalisation across channels, as torch.nn.LocalResponseNorm (and ONNX's
    LRN for an odd ``size``): each value is divided by a power of the energy of the ``size``
    channels around it, at the same pixel,

        d[n, c, h, w] = k + alpha / size * sum over j in window(c) of x[n, j, h, w]^2
        out = x / d^beta

    window(c) = channels c - size//2 .. c + (size-1)//2, cut to 0..C-1 (PyTorch pads the squares
    with zeros and averages ``size`` of them, so the divisor stays ``size`` at the edges). For
    an odd size the window is centred, as ONNX's; for an even one PyTorch's reaches one channel
    further down and ONNX's one further up.

    - forward: x (N, C, H, W) -> (N, C, H, W); keeps x and d
    - backward: grad_out (N, C, H, W) -> grad_x (N, C, H, W). x[j] reaches out[j] directly and
      every out[c] whose window holds j through d[c], d d[c]/d x[j] = 2 alpha / size * x[j]:

        grad_x[j] = grad_out[j] d[j]^-beta
                    - 2 alpha beta / size * x[j] * sum over c with j in window(c) of
                      grad_out[c] x[c] d[c]^(-beta-1)

      and "j in window(c)" is c in j - (size-1)//2 .. j + size//2: the window mirrored.
    Arguments and defaults are PyTorch's: size >= 1, alpha = 1e-4, beta = 0.75, k = 1 (k > 0
    keeps d positive).

    LRP: ``Pass``, the relevance of each output to the input at the same place. LRN divides
    each value by a positive factor of its neighbours' energy: it never changes a sign and
    never moves a value, so, as at an activation, there is nothing to share out (Binder et
    al. 2016, arXiv:1604.00825, derive a Taylor-based alternative). DeepLIFT: the quotient
    (out - out0) / (x - x0) element by element, so that the multipliers still add up to
    the change of the outputs (the derivative where |x - x0| < eps).
    """

    _kept = ("_x", "_d", "_out")
    relevance_rules = {Pass: "relevance passes through unchanged, element by element"}
    rescale = "(out - out0) / (x - x0) element by element; the gradient where |x - x0| < eps"

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise TypeError(f"LRN: size must be an int, got {size!r}")
        for what, value in (("alpha", alpha), ("beta", beta), ("k", k)):
            if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
                raise TypeError(f"LRN: {what} must be a finite number, got {value!r}")
        if size < 1 or not k > 0:
            raise ValueError(f"LRN: size must be >= 1 and k > 0, got size={size}, k={k}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def config(self):
        return {"type": "LRN", "size": self.size, "alpha": self.alpha, "beta": self.beta,
                "k": self.k}

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, H, W)"""
        self._check_input(x, 4, "(N, C, H, W)")
        squares = _channel_window_sum(x * x, self.size // 2, (self.size - 1) // 2)
        d = squares * (self.alpha / self.size) + self.k                    # (N, C, H, W)
        out = x / d ** self.beta
        self._x, self._d, self._out = x, d, out
        self._remember(x, out)
        return out

    def default_relevance_rule(self, stabilizer):
        return Pass()

    def backward(self, grad_out, rule="gradient"):
        """grad_out: (N, C, H, W) -> grad_x: (N, C, H, W)"""
        grad_out = self._check_backward(grad_out, rule)
        if isinstance(rule, Pass):
            return grad_out
        if isinstance(rule, Rescale):
            return rescale_quotient(grad_out, self._x, self._out, rule.eps,
                                    lambda: self._chain(grad_out))
        return self._chain(grad_out)

    def _chain(self, grad_out):
        x, d = self._x, self._d
        through_d = grad_out * x * d ** (-self.beta - 1)                  # (N, C, H, W)
        # each x[j] is in the windows of channels j - (size-1)//2 .. j + size//2
        through_d = _channel_window_sum(through_d, (self.size - 1) // 2, self.size // 2)
        through_d *= x * (-2 * self.alpha * self.beta / self.size)
        return grad_out * d ** -self.beta + through_d


def _channel_window_sum(a, before, after):
    """a (N, C, H, W) -> out (N, C, H, W), out[:, c] = a[:, c - before] + ... + a[:, c + after],
    the channels outside 0..C-1 left out: one shifted slice added per offset."""
    out = a.copy()
    C = a.shape[1]
    for offset in range(1, min(before, C - 1) + 1):    # channel c - offset, for c >= offset
        out[:, offset:] += a[:, :C - offset]
    for offset in range(1, min(after, C - 1) + 1):     # channel c + offset, for c < C - offset
        out[:, :C - offset] += a[:, offset:]
    return out


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
