"""Fast convolutions: ``conv2d_forward``, ``conv2d_backward_input``, ``im2col`` and
``col2im`` of ``reference.py`` with identical signatures, as compiled loops and BLAS calls.

Which algorithm a layer gets, decided per call from its shape (``conv2d_forward``):

- Winograd's F(4x4, 3x3) or F(2x2, 3x3) for 3x3 stride-1 layers with >= 16 channels in and
  out (``winograd_for``; the algorithms in ``winograd4.py`` and ``winograd.py``, switched by
  ``MINICNN_WINOGRAD=2|4|off``), with 4x or 2.25x fewer multiplications;
- a 1x1 convolution without padding is one matrix product per image, no im2col
  (``_pointwise_forward``): ResNet's bottlenecks and shortcuts, SqueezeNet's squeezes;
- a 3x3 stride-1 forward pass over at most DIRECT_MAX_CHANNELS channels (an RGB first
  layer) is a direct loop along output rows (``_direct3x3_forward``);
- everything else: im2col + a matrix product through NumPy's BLAS, the classic lowering of
  Chellapilla, Puri & Simard (2006), a band of output rows at a time. For stride 1 the
  columns are contiguous slices of the padded image (``_shift_cols_loops``). A dilated
  kernel is lowered the same way, its taps spaced in the columns (im2col and col2im take
  the dilation); the special algorithms above are for dilation 1 and groups 1 only.
The backward pass to the input needs no columns from the forward: dcols = W^T @ dY, then
col2im adds each column back onto its window.

Grouped layers (PyTorch's ``groups``): a depthwise layer (groups = C: MobileNet,
EfficientNet) is direct loops, ``depthwise.py``; any other grouped layer is im2col + a
matrix product per group, on slices of the image and the weights (``_grouped_forward``).

Work is cut into chunks for minicnn's thread pool (``threads.py``): the forward pass by
(image, band of rows), the backward pass by image or groups of input channels (col2im of two
row bands would write the same input rows, two channel groups never do).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from minicnn.engine import settings
from minicnn.engine.kernels import output_size, window_ints
from minicnn.engine.kernels.fast import allocator, depthwise, winograd, winograd4
from minicnn.engine.kernels.fast import threads as thread_pool  # thresholds read per call
from minicnn.engine.kernels.fast.threads import n_threads, parallel, run_chunks, run_tasks, split

__all__ = ["conv2d_forward", "conv2d_backward_input", "winograd_for"]

_scratch = allocator.scratch  # per-thread buffers, reused call after call


def winograd_for(N, C, F, OH, OW, kernel, stride, padding):
    """The module (``winograd``: F(2x2, 3x3), or ``winograd4``: F(4x4, 3x3)) whose
    ``conv3x3`` and ``conv3x3_backward_input`` should compute this layer, or None for
    im2col: ``MINICNN_WINOGRAD`` (``settings``) and the thresholds in winograd.py."""
    algorithm = settings.get("winograd")
    if (algorithm == "off" or not winograd.supported(kernel, stride, padding)
            or min(C, F) < winograd.MIN_CHANNELS):
        return None
    TH, TW = -(-OH // 4), -(-OW // 4)  # F(4x4)'s tiles
    if (algorithm == "4" and TH * TW >= winograd.F4_MIN_TILES
            and 16 * TH * TW <= winograd.F4_MAX_PADDING * OH * OW):
        return winograd4
    return winograd



# ----------------------------------------------------------------------------- convolution

@njit(cache=True, nogil=True)
def _im2col_loops(x, cols, col0, KH, KW, sh, sw, ph, pw, i0, i1, OW, dh, dw):
    """Columns of ONE image x (C, H, W) for output rows i0 <= i < i1, written to
    cols[:, col0 : col0 + (i1-i0)*OW]; the taps of a window are (dh, dw) apart."""
    C, H, W = x.shape
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                # output columns j whose input column j*sw - pw + kw*dw is inside the image
                j_lo = min(OW, max(0, -((kw * dw - pw) // sw)))
                j_hi = max(j_lo, min(OW, (W - 1 + pw - kw * dw) // sw + 1))
                for i in range(i0, i1):
                    ih = i * sh - ph + kh * dh
                    start = col0 + (i - i0) * OW
                    if ih < 0 or ih >= H:  # the whole row of windows lies in the padding
                        for j in range(OW):
                            cols[row, start + j] = 0.0
                        continue
                    for j in range(j_lo):
                        cols[row, start + j] = 0.0
                    if sw == 1:  # the common case, a contiguous copy the compiler vectorises
                        shift = kw * dw - pw
                        for j in range(j_lo, j_hi):
                            cols[row, start + j] = x[c, ih, j + shift]
                    else:
                        for j in range(j_lo, j_hi):
                            cols[row, start + j] = x[c, ih, j * sw - pw + kw * dw]
                    for j in range(j_hi, OW):
                        cols[row, start + j] = 0.0


@njit(cache=True, nogil=True)
def _col2im_loops(cols, col0, x, KH, KW, sh, sw, ph, pw, i0, i1, OW, dh, dw):
    """The adjoint of _im2col_loops: ADD the columns back into one image x (C, H, W)."""
    C, H, W = x.shape
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                j_lo = min(OW, max(0, -((kw * dw - pw) // sw)))
                j_hi = max(j_lo, min(OW, (W - 1 + pw - kw * dw) // sw + 1))
                for i in range(i0, i1):
                    ih = i * sh - ph + kh * dh
                    if ih < 0 or ih >= H:
                        continue  # padding: nothing to add to
                    start = col0 + (i - i0) * OW
                    if sw == 1:
                        shift = kw * dw - pw
                        for j in range(j_lo, j_hi):
                            x[c, ih, j + shift] += cols[row, start + j]
                    else:
                        for j in range(j_lo, j_hi):
                            x[c, ih, j * sw - pw + kw * dw] += cols[row, start + j]


# Stride 1 (every VGG layer) has a faster lowering. Pad the image once and flatten each channel
# to one row of Hp*Wp values. If the output is given Wp columns per row instead of OW (the last
# KW-1 of each row are junk, cropped afterwards), then the im2col row for kernel offset
# (kh, kw) is ONE contiguous slice of the flattened channel, starting at kh*Wp + kw: a plain
# copy, instead of a short copy per output row. The junk costs (Wp - OW) / OW more GEMM work.

@njit(cache=True, nogil=True)
def _pad_flat_loops(x, xp, ph, pw, Wp):
    """x (C, H, W) -> xp (C, L): channel c padded with zeros to (Hp, Wp) and flattened;
    the entries past Hp*Wp (slack for the last slices) are zero too."""
    C, H, W = x.shape
    for c in range(C):
        for t in range(xp.shape[1]):
            xp[c, t] = 0.0
        for h in range(H):
            base = (h + ph) * Wp + pw
            for w in range(W):
                xp[c, base + w] = x[c, h, w]


@njit(cache=True, nogil=True)
def _shift_cols_loops(xp, cols, KH, KW, Wp, t0):
    """cols[(c*KH + kh)*KW + kw, t] = xp[c, t0 + kh*Wp + kw + t]: the columns of a band."""
    C = xp.shape[0]
    length = cols.shape[1]
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                start = t0 + kh * Wp + kw
                for t in range(length):
                    cols[row, t] = xp[c, start + t]


@njit(cache=True, nogil=True)
def _crop_bias_loops(wide, out, bias, i0, Wp):
    """out[f, i0 + r, j] = wide[f, r*Wp + j] + bias[f] for j < OW: drop the junk columns and
    add the bias in one pass. wide: (F, rows*Wp), out: (F, OH, OW) of one image."""
    F, OW = out.shape[0], out.shape[2]
    rows = wide.shape[1] // Wp
    for f in range(F):
        for r in range(rows):
            for j in range(OW):
                out[f, i0 + r, j] = wide[f, r * Wp + j] + bias[f]


# A first layer sees 3 colour channels: im2col's matrix product then sums over only C*9 = 27
# rows, too few for BLAS to run at speed, and making the columns costs as much as the product.
# The direct loop below adds the nine taps of each channel along a whole output row at once
# (vectorised along the row), reading a padded copy of the image. Measured on one thread:
# the small net's 3->32 layer at batch 50, 16.3 -> 9.5 ms;
# VGG16's conv1_1, 4.7 -> 4.0 ms. Only the forward pass: its input gradient sums over the
# 32-64 filters, where im2col's product is efficient again.
DIRECT_MAX_CHANNELS = 4


@njit(cache=True, nogil=True)
def _direct3x3_loops(xp, w, bias, out, f0, f1):
    """out[f, i, j] = bias[f] + sum over c, kh, kw of w[f, c, kh, kw] xp[c, i + kh, j + kw]
    for filters f0 <= f < f1: xp (C, OH + 2, OW + 2) the padded image, out (F, OH, OW)."""
    C = xp.shape[0]
    OH, OW = out.shape[1], out.shape[2]
    for f in range(f0, f1):
        for i in range(OH):
            row = out[f, i]
            for j in range(OW):
                row[j] = bias[f]
            for c in range(C):
                top, mid, low = xp[c, i], xp[c, i + 1], xp[c, i + 2]  # the three input rows
                w00, w01, w02 = w[f, c, 0, 0], w[f, c, 0, 1], w[f, c, 0, 2]
                w10, w11, w12 = w[f, c, 1, 0], w[f, c, 1, 1], w[f, c, 1, 2]
                w20, w21, w22 = w[f, c, 2, 0], w[f, c, 2, 1], w[f, c, 2, 2]
                for j in range(OW):
                    row[j] += (w00 * top[j] + w01 * top[j + 1] + w02 * top[j + 2]
                               + w10 * mid[j] + w11 * mid[j + 1] + w12 * mid[j + 2]
                               + w20 * low[j] + w21 * low[j + 1] + w22 * low[j + 2])


def _direct3x3_forward(x, w, bias, padding, threads):
    """A 3x3 stride-1 convolution of few channels: per image (and group of filters when
    there are few images), pad, then ``_direct3x3_loops``."""
    N, C, H, W = x.shape
    F = w.shape[0]
    ph, pw = padding
    out = np.empty((N, F, H + 2 * ph - 2, W + 2 * pw - 2), dtype=x.dtype)
    w = allocator.read_only(w)

    def work(n, f0, f1):
        xp = _scratch("padded", (C, H + 2 * ph, W + 2 * pw), x.dtype)
        winograd.pad_loops(x[n], xp, ph, pw, 0, False)  # the same zero padding
        _direct3x3_loops(xp, w, bias, out[n], f0, f1)

    tasks = [(n, f0, f1) for n in range(N) for f0, f1 in split(F, _pieces_per_image(N, threads))]
    run_tasks(tasks, work, threads)
    return out


# Columns are made for one image and a band of output rows at a time, at most this many bytes:
# small enough to keep memory flat, large enough for an efficient GEMM (VGG16's first layers:
# 31 of 224 rows per band).
BAND_BYTES = 1 << 24
# The stride-1 lowering's GEMM writes F x (rows*Wp) of scratch that the crop reads back: a
# band keeps that in cache too (VGG16's conv1_1 in one 13 MB band took 1.6x as long as in
# bands of 18 rows, measured).
WIDE_BYTES = 1 << 20


def _row_bands(OH, bytes_per_row, min_bands=1):
    """[i0, i1) ranges of output rows: at least ``min_bands`` of them, each <= BAND_BYTES."""
    rows = max(1, min(OH, BAND_BYTES // bytes_per_row, -(-OH // min_bands)))
    return [(i0, min(OH, i0 + rows)) for i0 in range(0, OH, rows)]


def _pieces_per_image(N, threads):
    """Cut each image into this many pieces so that every thread gets the same share."""
    if threads == 1 or N >= 8 * threads:
        return 1  # enough images: at most one image of imbalance
    return threads // math.gcd(N, threads)


def conv2d_forward(x, w, b, stride, padding, dilation=(1, 1), groups=1):
    """See reference.conv2d_forward. x: (N, C, H, W), w: (F, C // groups, KH, KW)
    -> (N, F, OH, OW).

    Per image and band of output rows: cols = im2col(band), out[n, :, band] = W @ cols.
    Large 3x3 stride-1 layers go to a Winograd conv3x3 instead (``winograd_for``); the
    special algorithms are for groups 1 and dilation 1 only. Depthwise layers (groups = C)
    are direct loops (``depthwise.py``), other grouped layers im2col + GEMM per group.
    """
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    if groups > 1:
        if groups == C:
            return depthwise.conv2d_forward(x, w, b, stride, padding, dilation)
        return _grouped_forward(x, w, b, stride, padding, dilation, groups)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = output_size(H, KH, sh, ph, dilation=dh), output_size(W, KW, sw, pw, dilation=dw)
    Hp, Wp = H + 2 * ph, W + 2 * pw
    K = C * KH * KW
    bias = allocator.bias_vector(b, F, x.dtype)
    plain = (dh, dw) == (1, 1)  # no dilation: the special algorithms apply
    # the stride-1 lowering: rows of Wp columns, junk cropped
    shifted = (sh, sw) == (1, 1) and plain
    row_width = Wp if shifted else OW
    threads = n_threads(N * F * K * OH * OW, thread_pool.PARALLEL_MIN_MACS)
    if plain:
        algorithm = winograd_for(N, C, F, OH, OW, (KH, KW), stride, padding)
        if algorithm is not None:  # winograd or winograd4
            return algorithm.conv3x3(x, w, b, padding)
        if (KH, KW) == (1, 1) and tuple(padding) == (0, 0):
            return _pointwise_forward(x, w, bias, stride, threads)
        if (KH, KW) == (3, 3) and tuple(stride) == (1, 1) and C <= DIRECT_MAX_CHANNELS:
            return _direct3x3_forward(x, w, bias, padding, threads)
    w2 = np.ascontiguousarray(w).reshape(F, K)  # (F, K)
    out = np.empty((N, F, OH, OW), dtype=x.dtype)
    ints = window_ints((KH, KW), stride, padding)
    bands_wanted = _pieces_per_image(N, threads)
    if shifted:  # and a band's wide scratch, F x rows*Wp, within WIDE_BYTES
        bands_wanted = max(bands_wanted, -(-F * OH * row_width * x.itemsize // WIDE_BYTES))
    bands = _row_bands(OH, K * row_width * x.itemsize, bands_wanted)
    tasks = [(n, i0, i1) for n in range(N) for i0, i1 in bands]

    def work(chunk):  # a whole chunk, not one task (_run_tasks): bands reuse the padded image
        padded = -1  # the image whose padded copy is in this thread's "padded" buffer
        for n, i0, i1 in tasks[chunk[0]:chunk[1]]:
            cols = _scratch("cols", (K, (i1 - i0) * row_width), x.dtype)  # (K, rows*width)
            if not shifted:
                _im2col_loops(x[n], cols, 0, *ints, i0, i1, OW, dh, dw)
                out_band = out[n].reshape(F, OH * OW)[:, i0 * OW:i1 * OW]  # (F, rows*OW), a view
                np.matmul(w2, cols, out=out_band)  # the BLAS call
                out_band += bias[:, None]
                continue
            xp = _scratch("padded", (C, Hp * Wp + KW - 1), x.dtype)  # (C, L)
            if padded != n:
                _pad_flat_loops(x[n], xp, ph, pw, Wp)
                padded = n
            _shift_cols_loops(xp, cols, KH, KW, Wp, i0 * Wp)
            wide = _scratch("wide", (F, (i1 - i0) * Wp), x.dtype)  # (F, rows*Wp)
            np.matmul(w2, cols, out=wide)  # the BLAS call
            _crop_bias_loops(wide, out[n], bias, i0, Wp)

    with parallel(threads):
        run_chunks(work, split(len(tasks), threads))
    return out


# A 1x1 convolution (ResNet's bottlenecks and shortcuts, SqueezeNet's squeeze and expand
# layers) needs no im2col: its columns are the image itself, each pixel's C channels, so the
# convolution is one matrix product per image, W (F, C) @ x (C, H*W). With stride s it reads
# every s-th pixel: a strided copy first.

def _pointwise_forward(x, w, bias, stride, threads):
    """x: (N, C, H, W), w: (F, C, 1, 1), no padding -> (N, F, OH, OW)."""
    if tuple(stride) != (1, 1):
        x = np.ascontiguousarray(x[:, :, ::stride[0], ::stride[1]])   # (N, C, OH, OW)
    N, C, OH, OW = x.shape
    F = w.shape[0]
    w2 = np.ascontiguousarray(w).reshape(F, C)                        # (F, C)
    xs = x.reshape(N, C, OH * OW)                                     # (N, C, OH*OW), a view
    out = np.empty((N, F, OH * OW), dtype=x.dtype)

    def work(n, f0, f1, j0, j1):
        np.matmul(w2[f0:f1], xs[n, :, j0:j1], out=out[n, f0:f1, j0:j1])  # the BLAS call
        out[n, f0:f1, j0:j1] += bias[f0:f1, None]

    run_tasks(_pointwise_tasks(N, F, OH * OW, threads), work, threads)
    return out.reshape(N, F, OH, OW)                                  # (N, F, OH, OW)


# Below this many columns per piece, a 1x1 layer is cut by channels instead of columns: on 7x7
# maps (ResNet-50's last stage, batch 1) two pieces of 25 columns ran at 82 GFLOP/s a core,
# two halves of the channels with all 49 at 95 (measured, one thread per product).
POINTWISE_MIN_COLUMNS = 64


def _pointwise_tasks(N, rows, columns, threads):
    """[(n, r0, r1, j0, j1)]: pieces of the products rows x columns of each of N images, by
    column bands, or by rows when the bands would be narrower than POINTWISE_MIN_COLUMNS."""
    pieces = _pieces_per_image(N, threads)
    if pieces > 1 and columns < pieces * POINTWISE_MIN_COLUMNS:
        return [(n, r0, r1, 0, columns) for n in range(N) for r0, r1 in split(rows, pieces)]
    return [(n, 0, rows, j0, j1) for n in range(N) for j0, j1 in split(columns, pieces)]


def _pointwise_backward(grad_out, w, stride, in_shape, threads):
    """grad_out: (N, F, OH, OW), w: (F, C, 1, 1) -> (N, C, H, W): W^T @ grad_out, placed at
    the pixels the forward read (the others get no gradient)."""
    N, C, H, W = in_shape
    _, F, OH, OW = grad_out.shape
    w2t = np.asarray(w).reshape(F, C).T                               # (C, F), a transposed view
    g = grad_out.reshape(N, F, OH * OW)                               # (N, F, OH*OW)
    dense = np.empty((N, C, OH * OW), dtype=grad_out.dtype)

    def work(n, c0, c1, j0, j1):
        np.matmul(w2t[c0:c1], g[n, :, j0:j1], out=dense[n, c0:c1, j0:j1])  # the BLAS call

    run_tasks(_pointwise_tasks(N, C, OH * OW, threads), work, threads)
    dense = dense.reshape(N, C, OH, OW)                               # (N, C, OH, OW)
    if tuple(stride) == (1, 1):
        return dense
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    grad_x[:, :, ::stride[0], ::stride[1]] = dense
    return grad_x


def conv2d_backward_input(grad_out, w, stride, padding, in_shape, dilation=(1, 1), groups=1):
    """See reference.conv2d_backward_input. grad_out: (N, F, OH, OW) -> (N, C, H, W).

    Per image, group of input channels and band of rows:
    dcols = W[:, group]^T @ grad_out[n, :, band], then col2im adds them back into those
    channels of the image. Large 3x3 stride-1 layers: a Winograd convolution with the flipped
    kernels (see winograd.py). Grouped layers: as conv2d_forward.
    """
    N, C, H, W = in_shape
    F, _, KH, KW = w.shape
    grad_out = np.ascontiguousarray(grad_out)
    if groups > 1:
        if groups == C:
            return depthwise.conv2d_backward_input(grad_out, w, stride, padding, in_shape,
                                                   dilation)
        return _grouped_backward(grad_out, w, stride, padding, in_shape, dilation, groups)
    _, _, OH, OW = grad_out.shape
    KK = KH * KW  # rows of W^T per input channel
    threads = n_threads(N * F * C * KK * OH * OW, thread_pool.PARALLEL_MIN_MACS)
    if tuple(dilation) == (1, 1):  # the special algorithms
        algorithm = winograd_for(N, C, F, OH, OW, (KH, KW), stride, padding)
        if algorithm is not None:  # the input gradient of a stride-1 convolution is a convolution
            return algorithm.conv3x3_backward_input(grad_out, w, padding)
        if (KH, KW) == (1, 1) and tuple(padding) == (0, 0):
            return _pointwise_backward(grad_out, w, stride, in_shape, threads)
    w2t = np.asarray(w).reshape(F, C * KK).T  # (C*KH*KW, F), a transposed view: BLAS reads it as is
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    ints = window_ints((KH, KW), stride, padding)
    bands = _row_bands(OH, C * KK * OW * grad_out.itemsize)
    tasks = [(n, c0, c1) for n in range(N) for c0, c1 in split(C, _pieces_per_image(N, threads))]

    def work(n, c0, c1):
        g_n = grad_out[n].reshape(F, OH * OW)  # (F, OH*OW), a view
        w_group = w2t[c0 * KK:c1 * KK]  # (group*KH*KW, F), still a view
        for i0, i1 in bands:
            dcols = _scratch("cols", ((c1 - c0) * KK, (i1 - i0) * OW), grad_out.dtype)
            np.matmul(w_group, g_n[:, i0 * OW:i1 * OW], out=dcols)  # the BLAS call
            _col2im_loops(dcols, 0, grad_x[n, c0:c1], *ints, i0, i1, OW, *dilation)

    run_tasks(tasks, work, threads)
    return grad_x


# ----------------------------------------------------------------------------- groups

# A grouped convolution (groups between 1 and C: ResNeXt, RegNet, ShuffleNet v1's 1x1s) is
# `groups` independent convolutions, group g's filters over group g's channels. Each is the
# general lowering above on slices: x[n, group's channels] is a contiguous (C/groups, H, W)
# view, the group's filters a (F/groups, K) block of the weights, its output rows a contiguous
# block of out[n]. The tasks are (image, group, band of rows), spread over the threads.

def _group_tasks(N, groups, OH, bytes_per_row, threads):
    """[(n, g, i0, i1)]: every image and group, in bands of output rows, enough of them to
    give each thread work when there are fewer images x groups than threads."""
    bands = _row_bands(OH, bytes_per_row, -(-threads // max(1, N * groups)))  # N may be 0
    return [(n, g, i0, i1) for n in range(N) for g in range(groups) for i0, i1 in bands]


def _grouped_forward(x, w, b, stride, padding, dilation, groups):
    """x: (N, C, H, W) C-contiguous, w: (F, C // groups, KH, KW) -> (N, F, OH, OW)."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg, K = F // groups, Cg * KH * KW  # filters and im2col rows per group
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = output_size(H, KH, sh, ph, dilation=dh), output_size(W, KW, sw, pw, dilation=dw)
    bias = allocator.bias_vector(b, F, x.dtype)
    w3 = np.ascontiguousarray(w).reshape(groups, Fg, K)  # (groups, F/groups, K)
    out = np.empty((N, F, OH, OW), dtype=x.dtype)
    ints = window_ints((KH, KW), stride, padding)
    threads = n_threads(N * F * K * OH * OW, thread_pool.PARALLEL_MIN_MACS)

    def work(n, g, i0, i1):
        cols = _scratch("cols", (K, (i1 - i0) * OW), x.dtype)  # (K, rows*OW)
        _im2col_loops(x[n, g * Cg:(g + 1) * Cg], cols, 0, *ints, i0, i1, OW, dh, dw)
        out_band = out[n, g * Fg:(g + 1) * Fg].reshape(Fg, OH * OW)[:, i0 * OW:i1 * OW]  # a view
        np.matmul(w3[g], cols, out=out_band)  # the BLAS call: (Fg, K) @ (K, rows*OW)
        out_band += bias[g * Fg:(g + 1) * Fg, None]

    run_tasks(_group_tasks(N, groups, OH, K * OW * x.itemsize, threads), work, threads)
    return out


def _grouped_backward(grad_out, w, stride, padding, in_shape, dilation, groups):
    """grad_out: (N, F, OH, OW) C-contiguous, w: (F, C // groups, KH, KW) -> (N, C, H, W).

    Per task: dcols = W_g^T @ grad_out[n, group's filters, band], added back by col2im into
    the group's channels. Two bands of one group write the same input rows, so a group's
    bands run in one task (in order); tasks are (image, group)."""
    N, C, H, W = in_shape
    F, Cg, KH, KW = w.shape
    Fg, K = F // groups, Cg * KH * KW
    _, _, OH, OW = grad_out.shape
    w3t = np.asarray(w).reshape(groups, Fg, K).transpose(0, 2, 1)  # (groups, K, F/groups), views
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    ints = window_ints((KH, KW), stride, padding)
    bands = _row_bands(OH, K * OW * grad_out.itemsize)
    threads = n_threads(N * F * K * OH * OW, thread_pool.PARALLEL_MIN_MACS)

    def work(n, g):
        g_n = grad_out[n, g * Fg:(g + 1) * Fg].reshape(Fg, OH * OW)  # (Fg, OH*OW), a view
        for i0, i1 in bands:
            dcols = _scratch("cols", (K, (i1 - i0) * OW), grad_out.dtype)
            np.matmul(w3t[g], g_n[:, i0 * OW:i1 * OW], out=dcols)  # the BLAS call
            _col2im_loops(dcols, 0, grad_x[n, g * Cg:(g + 1) * Cg], *ints, i0, i1, OW, *dilation)

    run_tasks([(n, g) for n in range(N) for g in range(groups)], work, threads)
    return grad_x
