"""Reference kernels: the definition of every operation, as plain loops over NumPy arrays.

Read these to learn what a layer computes; ``fast.py`` has the same functions with identical
signatures, and the tests check that the two agree. Conventions shared by both files:

- arrays are NCHW: x is (N, C, H, W), conv weights are (F, C // groups, KH, KW), as in
  PyTorch;
- ``kernel``, ``stride``, ``padding`` and ``dilation`` are (int, int) pairs (height, width);
- convolution is cross-correlation, as ``torch.nn.functional.conv2d``;
- the inputs have already been checked by the layer that calls the kernel (float32 or
  float64, right rank, kernel fits the padded input).

References: CS231n assignment 2 (``conv_forward_naive``, ``max_pool_forward_naive``) for the
loop structure; PyTorch's CPU max-pool kernel (aten/src/ATen/native/cpu/MaxPoolKernel.cpp) for
the tie rule.
"""
from __future__ import annotations

import contextlib

import numpy as np

from minicnn.engine.kernels import adaptive_bins, dilated, output_size, pool_window

__all__ = [
    "pass_context",
    "conv2d_forward", "conv2d_backward_input",
    "maxpool2d_forward", "maxpool2d_values", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward",
    "relu_forward", "relu_backward", "hardtanh_forward", "hardtanh_backward",
    "hardswish_forward", "hardswish_backward", "silu_forward", "silu_backward",
    "linear_forward", "linear_backward_input",
]


def pass_context():
    """What a whole pass needs around it: nothing, for these kernels (the fast ones keep BLAS
    to one thread while their own threads run)."""
    return contextlib.nullcontext()


def _pad(x, padding, value=0.0):
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)  # (N, C, H+2ph, W+2pw)


# ----------------------------------------------------------------------------- convolution

def conv2d_forward(x, w, b, stride, padding, dilation=(1, 1), groups=1):
    """Convolution (cross-correlation) of x with F filters, as torch.nn.functional.conv2d.

    Input:
    - x: (N, C, H, W)
    - w: (F, C // groups, KH, KW)
    - b: (F,) or None
    - stride, padding, dilation: (int, int)
    - groups: C and F split into this many groups; filter f sees only the C // groups
      channels of its group, g = f // (F // groups) (groups = C: a depthwise convolution)
    Returns:
    - out: (N, F, OH, OW) where OH = 1 + (H + 2*ph - dh*(KH-1) - 1) // sh, OW likewise, and
      out[n, f, i, j] = sum(x_pad[n, group g, i*sh : i*sh + dh*(KH-1)+1 : dh,
                                              j*sw : j*sw + dw*(KW-1)+1 : dw] * w[f]) + b[f]
      (the window's taps are dilation apart: dilation 1 is the plain, dense window)
    """
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape  # Cg = C // groups channels per group
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = output_size(H, KH, sh, ph, dilation=dh), output_size(W, KW, sw, pw, dilation=dw)
    EH, EW = dilated(KH, dh), dilated(KW, dw)  # the span of a window in the padded input
    x_pad = _pad(x, padding)  # (N, C, H+2ph, W+2pw)
    out = np.zeros((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            g = f // (F // groups)
            channels = x_pad[n, g * Cg:(g + 1) * Cg]  # (Cg, H+2ph, W+2pw): the group's inputs
            for i in range(OH):
                for j in range(OW):
                    rows, cols = slice(i * sh, i * sh + EH, dh), slice(j * sw, j * sw + EW, dw)
                    window = channels[:, rows, cols]  # (Cg, KH, KW)
                    out[n, f, i, j] = np.sum(window * w[f])
            if b is not None:
                out[n, f] += b[f]
    return out


def conv2d_backward_input(grad_out, w, stride, padding, in_shape, dilation=(1, 1), groups=1):
    """Gradient of a convolution with respect to its input.

    Each output element out[n, f, i, j] was a dot product of w[f] with one window of x_pad
    (in the channels of f's group, taps dilation apart), so its gradient flows back as
    w[f] * grad_out[n, f, i, j] added onto that window. Padded positions are then cut off;
    inputs no window reached (rows past the last window, or between dilated taps that no
    other window covers) keep a zero gradient.

    Input:
    - grad_out: (N, F, OH, OW)
    - w: (F, C // groups, KH, KW)
    - stride, padding, dilation: (int, int)
    - in_shape: (N, C, H, W), the shape of the forward input
    - groups: as in conv2d_forward
    Returns:
    - grad_x: (N, C, H, W)
    """
    N, C, H, W = in_shape
    F, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    _, _, OH, OW = grad_out.shape
    EH, EW = dilated(KH, dh), dilated(KW, dw)
    grad_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=grad_out.dtype)
    for n in range(N):
        for f in range(F):
            g = f // (F // groups)
            channels = grad_pad[n, g * Cg:(g + 1) * Cg]  # (Cg, H+2ph, W+2pw), a view
            for i in range(OH):
                for j in range(OW):
                    rows, cols = slice(i * sh, i * sh + EH, dh), slice(j * sw, j * sw + EW, dw)
                    channels[:, rows, cols] += w[f] * grad_out[n, f, i, j]  # (Cg, KH, KW)
    return np.ascontiguousarray(grad_pad[:, :, ph:ph + H, pw:pw + W])  # (N, C, H, W)


# ----------------------------------------------------------------------------- pooling

def maxpool2d_forward(x, kernel, stride, padding, ceil_mode=False):
    """Max over each window; padding counts as -inf (it can never be the maximum), and so does
    any part of a last, partial window past the edge (ceil_mode=True, see ``output_size``).

    Tie rule (a choice, the same as PyTorch's CPU kernel): the FIRST maximum in row-major
    order within the window wins, because the scan replaces the running maximum only on a
    strict ``>``. A NaN always replaces it (so the last NaN wins), also as in PyTorch.

    Input:
    - x: (N, C, H, W)
    - kernel, stride, padding: (int, int)
    - ceil_mode: round the output size up (PyTorch's ceil_mode)
    Returns:
    - out: (N, C, OH, OW)
    - argmax: (N, C, OH, OW) int64, the flat index ih * W + iw of the winning input element
      in its (H, W) plane (PyTorch's ``return_indices``)
    """
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph, ceil_mode), output_size(W, KW, sw, pw, ceil_mode)
    out = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
    argmax = np.full((N, C, OH, OW), -1, dtype=np.int64)
    for i in range(OH):
        for j in range(OW):
            best, best_index = out[:, :, i, j], argmax[:, :, i, j]  # (N, C) views
            for kh in range(KH):
                for kw in range(KW):
                    ih, iw = i * sh - ph + kh, j * sw - pw + kw
                    if not (0 <= ih < H and 0 <= iw < W):
                        continue  # a padded position: -inf, never the maximum
                    v = x[:, :, ih, iw]  # (N, C)
                    take = (best_index < 0) | (v > best) | np.isnan(v)
                    best[take] = v[take]
                    best_index[take] = ih * W + iw
    return out, argmax


def maxpool2d_values(x, kernel, stride, padding, ceil_mode=False):
    """The maxima of ``maxpool2d_forward`` without the argmax (a forward that no backward
    follows). x: (N, C, H, W) -> out: (N, C, OH, OW)."""
    return maxpool2d_forward(x, kernel, stride, padding, ceil_mode)[0]


def maxpool2d_backward(grad_out, argmax, in_shape):
    """Route each output gradient to the input element that won the max.

    Input:
    - grad_out: (N, C, OH, OW)
    - argmax: (N, C, OH, OW), from maxpool2d_forward
    - in_shape: (N, C, H, W)
    Returns:
    - grad_x: (N, C, H, W); an element that won several overlapping windows gets the sum.
    """
    N, C, H, W = in_shape
    grad_x = np.zeros((N, C, H * W), dtype=grad_out.dtype)
    g = grad_out.reshape(N, C, -1)  # (N, C, OH*OW)
    index = argmax.reshape(N, C, -1)  # (N, C, OH*OW)
    for n in range(N):
        for c in range(C):
            np.add.at(grad_x[n, c], index[n, c], g[n, c])  # add.at: repeated indices accumulate
    return grad_x.reshape(N, C, H, W)  # (N, C, H, W)


def avgpool2d_forward(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    """Mean over each window, as PyTorch's avg_pool2d (``kernels.pool_window``): window
    (i, j) sums the inputs it covers and divides by its size within the padded input
    (count_include_pad=True: padding counts as zeros; KH*KW but for ceil_mode's last,
    partial windows) or by the number of real inputs in it (count_include_pad=False).

    Input:
    - x: (N, C, H, W)
    - kernel, stride, padding: (int, int)
    - ceil_mode: round the output size up (``output_size``)
    Returns:
    - out: (N, C, OH, OW)
    """
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph, ceil_mode), output_size(W, KW, sw, pw, ceil_mode)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    for i in range(OH):
        h0, h1, rows = pool_window(i, H, KH, sh, ph, count_include_pad)
        for j in range(OW):
            w0, w1, cols = pool_window(j, W, KW, sw, pw, count_include_pad)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / (rows * cols)
    return out


def avgpool2d_backward(grad_out, kernel, stride, padding, in_shape, ceil_mode=False,
                       count_include_pad=True):
    """Each output gradient is shared equally by the inputs of its window, divided by what
    the forward pass divided by (see avgpool2d_forward); padding receives nothing.

    Input:
    - grad_out: (N, C, OH, OW)
    - kernel, stride, padding: (int, int)
    - in_shape: (N, C, H, W)
    - ceil_mode, count_include_pad: as the forward pass
    Returns:
    - grad_x: (N, C, H, W)
    """
    N, C, H, W = in_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    _, _, OH, OW = grad_out.shape
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    for i in range(OH):
        h0, h1, rows = pool_window(i, H, KH, sh, ph, count_include_pad)
        for j in range(OW):
            w0, w1, cols = pool_window(j, W, KW, sw, pw, count_include_pad)
            share = grad_out[:, :, i, j] / (rows * cols)  # (N, C)
            grad_x[:, :, h0:h1, w0:w1] += share[:, :, None, None]
    return grad_x


def adaptive_avgpool2d_forward(x, output_size):
    """Mean over PyTorch's adaptive bins (see ``kernels.adaptive_bins``): output cell (i, j)
    averages rows [floor(i*H/OH), ceil((i+1)*H/OH)) and the matching columns.

    Input:
    - x: (N, C, H, W)
    - output_size: (OH, OW)
    Returns:
    - out: (N, C, OH, OW)
    """
    N, C, H, W = x.shape
    OH, OW = output_size
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / ((h1 - h0) * (w1 - w0))
    return out


def adaptive_avgpool2d_backward(grad_out, in_shape):
    """Each output gradient is shared equally by the elements of its bin.

    Input:
    - grad_out: (N, C, OH, OW)
    - in_shape: (N, C, H, W)
    Returns:
    - grad_x: (N, C, H, W)
    """
    N, C, H, W = in_shape
    _, _, OH, OW = grad_out.shape
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            share = grad_out[:, :, i, j] / ((h1 - h0) * (w1 - w0))  # (N, C)
            grad_x[:, :, h0:h1, w0:w1] += share[:, :, None, None]
    return grad_x


# ----------------------------------------------------------------------------- ReLU and Linear

def relu_forward(x, out=None):
    """out = max(x, 0). x: any shape -> same shape; a given ``out`` (x's shape and dtype,
    possibly x itself) receives the result. NaN passes through."""
    return np.maximum(x, 0, out=out)


def relu_backward(grad_out, x, rule):
    """The three ways of sending grad_out back through a ReLU (see ``layers.ReLU``).

    - "gradient":  keep grad_out where the forward input x > 0 (the chain rule);
    - "deconvnet": keep grad_out where grad_out > 0 (x is ignored);
    - "guided":    keep grad_out where both hold.
    grad_out, x: same shape -> grad_x: that shape; elsewhere 0.
    """
    if rule == "gradient":
        keep = x > 0
    elif rule == "deconvnet":
        keep = grad_out > 0
    else:  # "guided"
        keep = (x > 0) & (grad_out > 0)
    return np.where(keep, grad_out, grad_out.dtype.type(0))


def hardtanh_forward(x, min_val, max_val):
    """out = min(max(x, min_val), max_val) (ReLU6: 0 and 6). x: any shape -> same shape, a
    new array. NaN passes through."""
    return np.clip(x, min_val, max_val)


def hardtanh_backward(grad_out, x, min_val, max_val):
    """grad_out where min_val < x < max_val, else 0: the chain rule through Hardtanh, whose
    derivative is 0 at both kinks (as PyTorch's). grad_out, x: same shape -> grad_x."""
    outside = (x <= min_val) | (x >= max_val)
    return np.where(outside, grad_out.dtype.type(0), grad_out)


def hardswish_forward(x):
    """out = x * min(max(x + 3, 0), 6) / 6. x: any shape -> same shape, a new array."""
    out = x + 3
    np.clip(out, 0, 6, out=out)
    out *= x
    out /= 6
    return out


def hardswish_backward(grad_out, x):
    """grad_out * f'(x), f'(x) = 0 for x <= -3, x / 3 + 1/2 for -3 < x < 3, 1 for x >= 3 (as
    PyTorch's hardswish_backward at the kinks). grad_out, x: same shape -> grad_x."""
    slope = x / 3
    slope += 0.5
    slope[x <= -3] = 0
    slope[x >= 3] = 1
    slope *= grad_out
    return slope


def _sigmoid(x):
    """1 / (1 + exp(-x)) in x's dtype, written so that exp never overflows: exp(-|x|) lies in
    (0, 1], and for x < 0 the same value is exp(x) / (1 + exp(x))."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def silu_forward(x):
    """SiLU (EfficientNet's "swish"): out = x * s, s = sigmoid(x). x: any shape -> (out, s),
    both that shape; s is kept for the backward pass, which then needs no exp."""
    s = _sigmoid(x)
    return x * s, s


def silu_backward(grad_out, x, s):
    """grad_out * f'(x) with f'(x) = s (1 + x (1 - s)), s = sigmoid(x) from the forward pass:
    the chain rule through SiLU. grad_out, x, s: one shape -> grad_x: that shape."""
    return s * (1 + x * (1 - s)) * grad_out                  # f'(x) first, then the chain


def linear_forward(x, w, b):
    """out = x @ w.T + b. x: (N, I), w: (O, I), b: (O,) or None -> (N, O)."""
    out = x @ w.T  # (N, I) @ (I, O) -> (N, O)
    if b is not None:
        out += b
    return out


def linear_backward_input(grad_out, w):
    """d(out)/d(x) applied to grad_out: grad_out @ w. grad_out: (N, O), w: (O, I) -> (N, I)."""
    return grad_out @ w
