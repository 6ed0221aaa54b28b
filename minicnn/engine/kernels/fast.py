"""Fast kernels: the functions of ``reference.py`` with identical signatures, compiled loops.

Strategy (measured on a 2-core machine, see BENCHMARKS.md and examples/bench.py):

- A convolution is im2col + matrix products through NumPy's BLAS, the classic lowering of
  Chellapilla, Puri & Simard (2006). The backward pass to the input does not need the
  forward's columns: dcols = W(F, C*KH*KW)^T @ dY(F, OH*OW), then col2im adds each column
  back onto its window. So forward stores no column matrix.
- Work is cut into independent chunks run by minicnn's own thread pool (``threads.py``): the
  forward pass by (image, band of output rows), the backward pass by image, or also by groups
  of input channels when the images alone would share out unevenly (``_pieces_per_image``;
  col2im of two row bands would write the same input rows, two channel groups never do). Each thread builds its own columns
  and calls a single-threaded GEMM on them, so the loops use every core too, and only one
  thread pool is ever busy (Numba's parallel loops next to OpenBLAS's threads fought for the
  cores: ~8 ms lost per call here).
- Large 3x3 stride-1 layers (most of VGG) go through Winograd's F(4x4, 3x3) or F(2x2, 3x3)
  instead, with 4x or 2.25x fewer multiplications (``winograd.py``, which also decides where:
  ``winograd_for``, and ``MINICNN_WINOGRAD=2|4|off``).
- Columns are built a band at a time (at most ``BAND_BYTES``, 16 MB) into a scratch buffer
  that each thread reuses, so memory stays flat. For strides other than 1 the GEMM writes
  straight into the NCHW output; the stride-1 lowering writes a wider scratch row and crops.
- Jitted functions take plain ints (never tuples) and C-contiguous arrays, so each compiles
  once per dtype (float32, float64); ``cache=True`` keeps the machine code on disk in
  ``__pycache__`` for the next process; ``nogil=True`` lets the pool's threads run them at
  the same time.
- Small layers run serially: handing work to a thread costs tens of microseconds.

Every Python wrapper below makes its arrays C-contiguous and computes the output shape; the
jitted bodies are only loops. Numba does no bounds checking, so the wrappers are the last line
of defence before memory is touched.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
from numba import njit

from minicnn.engine.kernels import (adaptive_bins, allocator, numba_startup, output_size, winograd,
                                    winograd4)
from minicnn.engine.kernels.threads import NUM_THREADS, blas_single_threaded, parallel_ok, run_chunks, split

__all__ = [
    "conv2d_forward", "conv2d_backward_input", "im2col", "col2im",
    "maxpool2d_forward", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward",
    "relu_forward", "relu_backward", "linear_forward", "linear_backward_input",
    "release_scratch",
]

allocator.tune()  # reuse freed memory instead of page-faulting every pass in (allocator.py)
numba_startup.hide_scipy_from_numba()  # ~0.5 s less start-up when SciPy is installed
_scratch, release_scratch = allocator.scratch, allocator.release_scratch  # per-thread buffers

# Below this many multiply-adds (conv) or touched elements (pooling) a kernel runs in the
# calling thread: handing work to the pool costs ~30 us, more than such a layer takes.
PARALLEL_MIN_MACS = 1 << 22
PARALLEL_MIN_ELEMENTS = 1 << 18


def winograd_for(N, C, F, OH, OW, kernel, stride, padding):
    """The module (``winograd``: F(2x2, 3x3), or ``winograd4``: F(4x4, 3x3)) whose
    ``conv3x3`` and ``conv3x3_backward_input`` should compute this layer, or None for
    im2col; ``MINICNN_WINOGRAD`` and the thresholds are in winograd.py."""
    if (winograd.ALGORITHM == "off" or not winograd.supported(kernel, stride, padding)
            or min(C, F) < winograd.MIN_CHANNELS):
        return None
    TH, TW = -(-OH // 4), -(-OW // 4)  # F(4x4)'s tiles
    if (winograd.ALGORITHM == "4" and N * TH * TW >= winograd.F4_MIN_TILES
            and 16 * TH * TW <= winograd.F4_MAX_PADDING * OH * OW):
        return winograd4
    return winograd


def _n_threads(work: int, minimum: int) -> int:
    """How many threads a kernel with ``work`` units should use."""
    return NUM_THREADS if work >= minimum and parallel_ok() else 1


# ----------------------------------------------------------------------------- convolution

@njit(cache=True, nogil=True)
def _im2col_loops(x, cols, col0, KH, KW, sh, sw, ph, pw, i0, i1, OW):
    """Columns of ONE image x (C, H, W) for output rows i0 <= i < i1, written to
    cols[:, col0 : col0 + (i1-i0)*OW]."""
    C, H, W = x.shape
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                # output columns j whose input column j*sw - pw + kw is inside the image
                j_lo = min(OW, max(0, -((kw - pw) // sw)))
                j_hi = max(j_lo, min(OW, (W - 1 + pw - kw) // sw + 1))
                for i in range(i0, i1):
                    ih = i * sh - ph + kh
                    start = col0 + (i - i0) * OW
                    if ih < 0 or ih >= H:  # the whole row of windows lies in the padding
                        for j in range(OW):
                            cols[row, start + j] = 0.0
                        continue
                    for j in range(j_lo):
                        cols[row, start + j] = 0.0
                    if sw == 1:  # the common case, a contiguous copy the compiler vectorises
                        shift = kw - pw
                        for j in range(j_lo, j_hi):
                            cols[row, start + j] = x[c, ih, j + shift]
                    else:
                        for j in range(j_lo, j_hi):
                            cols[row, start + j] = x[c, ih, j * sw - pw + kw]
                    for j in range(j_hi, OW):
                        cols[row, start + j] = 0.0


@njit(cache=True, nogil=True)
def _col2im_loops(cols, col0, x, KH, KW, sh, sw, ph, pw, i0, i1, OW):
    """The adjoint of _im2col_loops: ADD the columns back into one image x (C, H, W)."""
    C, H, W = x.shape
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                j_lo = min(OW, max(0, -((kw - pw) // sw)))
                j_hi = max(j_lo, min(OW, (W - 1 + pw - kw) // sw + 1))
                for i in range(i0, i1):
                    ih = i * sh - ph + kh
                    if ih < 0 or ih >= H:
                        continue  # padding: nothing to add to
                    start = col0 + (i - i0) * OW
                    if sw == 1:
                        shift = kw - pw
                        for j in range(j_lo, j_hi):
                            x[c, ih, j + shift] += cols[row, start + j]
                    else:
                        for j in range(j_lo, j_hi):
                            x[c, ih, j * sw - pw + kw] += cols[row, start + j]


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


def _ints(kernel, stride, padding):
    return tuple(int(v) for v in (*kernel, *stride, *padding))  # KH, KW, sh, sw, ph, pw


def im2col(x, kernel, stride, padding, out=None):
    """See reference.im2col. x: (N, C, H, W) -> cols: (C*KH*KW, N*OH*OW)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph), output_size(W, KW, sw, pw)
    shape = (C * KH * KW, N * OH * OW)
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    assert out.shape == shape and out.dtype == x.dtype and out.flags.c_contiguous
    for n in range(N):
        _im2col_loops(x[n], out, n * OH * OW, *_ints(kernel, stride, padding), 0, OH, OW)
    return out


def col2im(cols, in_shape, kernel, stride, padding):
    """See reference.col2im. cols: (C*KH*KW, N*OH*OW) -> x: (N, C, H, W)."""
    N, C, H, W = in_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph), output_size(W, KW, sw, pw)
    cols = np.ascontiguousarray(cols)
    assert cols.shape == (C * KH * KW, N * OH * OW)
    x = np.zeros((N, C, H, W), dtype=cols.dtype)
    for n in range(N):
        _col2im_loops(cols, n * OH * OW, x[n], *_ints(kernel, stride, padding), 0, OH, OW)
    return x


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


def _parallel(threads):
    """The context a kernel runs its chunks in: BLAS single-threaded if we use several."""
    return blas_single_threaded() if threads > 1 else contextlib.nullcontext()


def _run_tasks(tasks, work, threads):
    """work(*task) for every task, the list cut into one contiguous chunk per thread."""
    def chunk(bounds):
        for task in tasks[bounds[0]:bounds[1]]:
            work(*task)
    with _parallel(threads):
        run_chunks(chunk, split(len(tasks), threads))


def conv2d_forward(x, w, b, stride, padding):
    """See reference.conv2d_forward. x: (N, C, H, W), w: (F, C, KH, KW) -> (N, F, OH, OW).

    Per image and band of output rows: cols = im2col(band), out[n, :, band] = W @ cols.
    Large 3x3 stride-1 layers go to a Winograd conv3x3 instead (``winograd_for``).
    """
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    (sh, sw), (ph, pw) = stride, padding
    OH, OW = output_size(H, KH, sh, ph), output_size(W, KW, sw, pw)
    Hp, Wp = H + 2 * ph, W + 2 * pw
    K = C * KH * KW
    bias = np.zeros(F, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    shifted = (sh, sw) == (1, 1)  # the stride-1 lowering: rows of Wp columns, junk cropped
    row_width = Wp if shifted else OW
    threads = _n_threads(N * F * K * OH * OW, PARALLEL_MIN_MACS)
    algorithm = winograd_for(N, C, F, OH, OW, (KH, KW), stride, padding)
    if algorithm is not None:  # winograd or winograd4
        return algorithm.conv3x3(x, w, b, padding)
    if (KH, KW) == (1, 1) and tuple(padding) == (0, 0):
        return _pointwise_forward(x, w, bias, stride, threads)
    w2 = np.ascontiguousarray(w).reshape(F, K)  # (F, K)
    out = np.empty((N, F, OH, OW), dtype=x.dtype)
    ints = _ints((KH, KW), stride, padding)
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
                _im2col_loops(x[n], cols, 0, *ints, i0, i1, OW)
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

    with _parallel(threads):
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
    pieces = split(OH * OW, _pieces_per_image(N, threads))             # column bands per image

    def work(n, j0, j1):
        np.matmul(w2, xs[n, :, j0:j1], out=out[n, :, j0:j1])         # the BLAS call
        out[n, :, j0:j1] += bias[:, None]

    _run_tasks([(n, j0, j1) for n in range(N) for j0, j1 in pieces], work, threads)
    return out.reshape(N, F, OH, OW)                                  # (N, F, OH, OW)


def _pointwise_backward(grad_out, w, stride, in_shape, threads):
    """grad_out: (N, F, OH, OW), w: (F, C, 1, 1) -> (N, C, H, W): W^T @ grad_out, placed at
    the pixels the forward read (the others get no gradient)."""
    N, C, H, W = in_shape
    _, F, OH, OW = grad_out.shape
    w2t = np.asarray(w).reshape(F, C).T                               # (C, F), a transposed view
    g = grad_out.reshape(N, F, OH * OW)                               # (N, F, OH*OW)
    dense = np.empty((N, C, OH * OW), dtype=grad_out.dtype)
    pieces = split(OH * OW, _pieces_per_image(N, threads))

    def work(n, j0, j1):
        np.matmul(w2t, g[n, :, j0:j1], out=dense[n, :, j0:j1])       # the BLAS call

    _run_tasks([(n, j0, j1) for n in range(N) for j0, j1 in pieces], work, threads)
    dense = dense.reshape(N, C, OH, OW)                               # (N, C, OH, OW)
    if tuple(stride) == (1, 1):
        return dense
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    grad_x[:, :, ::stride[0], ::stride[1]] = dense
    return grad_x


def conv2d_backward_input(grad_out, w, stride, padding, in_shape):
    """See reference.conv2d_backward_input. grad_out: (N, F, OH, OW) -> (N, C, H, W).

    Per image, group of input channels and band of rows:
    dcols = W[:, group]^T @ grad_out[n, :, band], then col2im adds them back into those
    channels of the image. Large 3x3 stride-1 layers: a Winograd convolution with the flipped
    kernels (see winograd.py).
    """
    N, C, H, W = in_shape
    F, _, KH, KW = w.shape
    grad_out = np.ascontiguousarray(grad_out)
    _, _, OH, OW = grad_out.shape
    KK = KH * KW  # rows of W^T per input channel
    threads = _n_threads(N * F * C * KK * OH * OW, PARALLEL_MIN_MACS)
    algorithm = winograd_for(N, C, F, OH, OW, (KH, KW), stride, padding)
    if algorithm is not None:  # the input gradient of a stride-1 convolution is a convolution
        return algorithm.conv3x3_backward_input(grad_out, w, padding)
    if (KH, KW) == (1, 1) and tuple(padding) == (0, 0):
        return _pointwise_backward(grad_out, w, stride, in_shape, threads)
    w2t = np.asarray(w).reshape(F, C * KK).T  # (C*KH*KW, F), a transposed view: BLAS reads it as is
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    ints = _ints((KH, KW), stride, padding)
    bands = _row_bands(OH, C * KK * OW * grad_out.itemsize)
    tasks = [(n, c0, c1) for n in range(N) for c0, c1 in split(C, _pieces_per_image(N, threads))]

    def work(n, c0, c1):
        g_n = grad_out[n].reshape(F, OH * OW)  # (F, OH*OW), a view
        w_group = w2t[c0 * KK:c1 * KK]  # (group*KH*KW, F), still a view
        for i0, i1 in bands:
            dcols = _scratch("cols", ((c1 - c0) * KK, (i1 - i0) * OW), grad_out.dtype)
            np.matmul(w_group, g_n[:, i0 * OW:i1 * OW], out=dcols)  # the BLAS call
            _col2im_loops(dcols, 0, grad_x[n, c0:c1], *ints, i0, i1, OW)

    _run_tasks(tasks, work, threads)
    return grad_x


# ----------------------------------------------------------------------------- pooling
# The pooling loops see the input as P = N*C independent planes (P, H, W), a free reshape of
# NCHW, and the wrappers hand out contiguous groups of planes to the threads.

def _over_planes(P, work_per_plane, loop):
    """Run ``loop(p0, p1)`` over groups of the P planes, in parallel if the work is large."""
    threads = _n_threads(P * work_per_plane, PARALLEL_MIN_ELEMENTS)
    run_chunks(lambda chunk: loop(*chunk), split(P, threads))


@njit(cache=True, nogil=True)
def _maxpool_forward_loops(x, out, argmax, KH, KW, sh, sw, ph, pw):
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in range(P):
        for i in range(OH):
            h0 = max(i * sh - ph, 0)
            h1 = min(i * sh - ph + KH, H)
            for j in range(OW):
                w0 = max(j * sw - pw, 0)
                w1 = min(j * sw - pw + KW, W)
                best = x[p, h0, w0]  # the first valid element (padding is -inf)
                best_index = h0 * W + w0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        v = x[p, ih, iw]
                        # strict '>': ties keep the FIRST maximum in row-major order;
                        # a NaN (v != v) always wins, as in PyTorch's CPU kernel
                        if v > best or v != v:
                            best = v
                            best_index = ih * W + iw
                out[p, i, j] = best
                argmax[p, i, j] = best_index


@njit(cache=True, nogil=True)
def _maxpool2x2_forward_loops(x, out, argmax):
    """_maxpool_forward_loops for the commonest case, 2x2 windows with stride 2 and no
    padding, written out: 12x faster than the general loops (measured), whose window bounds
    change at every step."""
    P, W = x.shape[0], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    for p in range(P):
        for i in range(OH):
            h = 2 * i
            for j in range(OW):
                w = 2 * j
                best, best_index = x[p, h, w], h * W + w  # then the other three, row-major
                v = x[p, h, w + 1]
                if v > best or v != v:
                    best, best_index = v, h * W + w + 1
                v = x[p, h + 1, w]
                if v > best or v != v:
                    best, best_index = v, (h + 1) * W + w
                v = x[p, h + 1, w + 1]
                if v > best or v != v:
                    best, best_index = v, (h + 1) * W + w + 1
                out[p, i, j] = best
                argmax[p, i, j] = best_index


@njit(cache=True, nogil=True)
def _maxpool_backward_loops(grad_out, argmax, grad_x):
    P, OH, OW = grad_out.shape
    for p in range(P):
        for i in range(OH):
            for j in range(OW):
                grad_x[p, argmax[p, i, j]] += grad_out[p, i, j]


def maxpool2d_forward(x, kernel, stride, padding, ceil_mode=False):
    """See reference.maxpool2d_forward. x: (N, C, H, W) -> (out, argmax), both (N, C, OH, OW).

    The loops clip every window to the image, so a partial last window (ceil_mode) needs no
    padding; the 2x2 loop assumes whole windows and serves only when every window is whole."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph, ceil_mode), output_size(W, KW, sw, pw, ceil_mode)
    # every window must hold at least one real element (PyTorch: padding <= kernel / 2)
    assert 2 * ph <= KH and 2 * pw <= KW and OH >= 1 and OW >= 1
    planes = x.reshape(N * C, H, W)
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N * C, OH, OW), dtype=np.int64)
    if ((tuple(kernel), tuple(stride), tuple(padding)) == ((2, 2), (2, 2), (0, 0))
            and 2 * OH <= H and 2 * OW <= W):
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool2x2_forward_loops(
            planes[p0:p1], out[p0:p1], argmax[p0:p1]))
    else:
        ints = _ints(kernel, stride, padding)
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool_forward_loops(
            planes[p0:p1], out[p0:p1], argmax[p0:p1], *ints))
    return out.reshape(N, C, OH, OW), argmax.reshape(N, C, OH, OW)


def maxpool2d_backward(grad_out, argmax, in_shape):
    """See reference.maxpool2d_backward. grad_out, argmax: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    grad_out = np.ascontiguousarray(grad_out)
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    assert argmax.shape == grad_out.shape and grad_out.shape[:2] == (N, C)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W):  # would write out of bounds
        raise ValueError(f"maxpool2d_backward: argmax values must lie in [0, {H * W}), "
                         f"got [{argmax.min()}, {argmax.max()}]")
    OH, OW = grad_out.shape[2:]
    g, a = grad_out.reshape(N * C, OH, OW), argmax.reshape(N * C, OH, OW)
    grad_x = np.zeros((N * C, H * W), dtype=grad_out.dtype)
    _over_planes(N * C, H * W, lambda p0, p1: _maxpool_backward_loops(
        g[p0:p1], a[p0:p1], grad_x[p0:p1]))
    return grad_x.reshape(N, C, H, W)  # (N, C, H, W)


@njit(cache=True, nogil=True)
def _avgpool_forward_loops(x, out, KH, KW, sh, sw, ph, pw):
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    count = KH * KW  # count_include_pad=True: padding zeros count too
    for p in range(P):
        for i in range(OH):
            h0 = max(i * sh - ph, 0)
            h1 = min(i * sh - ph + KH, H)
            for j in range(OW):
                w0 = max(j * sw - pw, 0)
                w1 = min(j * sw - pw + KW, W)
                total = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        total += x[p, ih, iw]
                out[p, i, j] = total / count


@njit(cache=True, nogil=True)
def _avgpool_backward_loops(grad_out, grad_x, KH, KW, sh, sw, ph, pw):
    P, H, W = grad_x.shape
    OH, OW = grad_out.shape[1], grad_out.shape[2]
    count = KH * KW
    for p in range(P):
        for i in range(OH):
            h0 = max(i * sh - ph, 0)
            h1 = min(i * sh - ph + KH, H)
            for j in range(OW):
                w0 = max(j * sw - pw, 0)
                w1 = min(j * sw - pw + KW, W)
                share = grad_out[p, i, j] / count
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        grad_x[p, ih, iw] += share


def avgpool2d_forward(x, kernel, stride, padding):
    """See reference.avgpool2d_forward. x: (N, C, H, W) -> (N, C, OH, OW)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph), output_size(W, KW, sw, pw)
    assert OH >= 1 and OW >= 1
    planes = x.reshape(N * C, H, W)
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    ints = _ints(kernel, stride, padding)
    _over_planes(N * C, H * W, lambda p0, p1: _avgpool_forward_loops(
        planes[p0:p1], out[p0:p1], *ints))
    return out.reshape(N, C, OH, OW)


def avgpool2d_backward(grad_out, kernel, stride, padding, in_shape):
    """See reference.avgpool2d_backward. grad_out: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    grad_out = np.ascontiguousarray(grad_out)
    OH, OW = output_size(H, KH, sh, ph), output_size(W, KW, sw, pw)
    assert grad_out.shape == (N, C, OH, OW)
    g = grad_out.reshape(N * C, OH, OW)
    grad_x = np.zeros((N * C, H, W), dtype=grad_out.dtype)
    ints = _ints(kernel, stride, padding)
    _over_planes(N * C, H * W, lambda p0, p1: _avgpool_backward_loops(
        g[p0:p1], grad_x[p0:p1], *ints))
    return grad_x.reshape(N, C, H, W)


@njit(cache=True, nogil=True)
def _adaptive_forward_loops(x, out, h_bins, w_bins):
    P = x.shape[0]
    OH, OW = out.shape[1], out.shape[2]
    for p in range(P):
        for i in range(OH):
            for j in range(OW):
                total = 0.0
                for ih in range(h_bins[i, 0], h_bins[i, 1]):
                    for iw in range(w_bins[j, 0], w_bins[j, 1]):
                        total += x[p, ih, iw]
                count = (h_bins[i, 1] - h_bins[i, 0]) * (w_bins[j, 1] - w_bins[j, 0])
                out[p, i, j] = total / count


@njit(cache=True, nogil=True)
def _adaptive_backward_loops(grad_out, grad_x, h_bins, w_bins):
    P = grad_x.shape[0]
    OH, OW = grad_out.shape[1], grad_out.shape[2]
    for p in range(P):
        for i in range(OH):
            for j in range(OW):
                count = (h_bins[i, 1] - h_bins[i, 0]) * (w_bins[j, 1] - w_bins[j, 0])
                share = grad_out[p, i, j] / count
                for ih in range(h_bins[i, 0], h_bins[i, 1]):
                    for iw in range(w_bins[j, 0], w_bins[j, 1]):
                        grad_x[p, ih, iw] += share


def adaptive_avgpool2d_forward(x, output_size):
    """See reference.adaptive_avgpool2d_forward. x: (N, C, H, W) -> (N, C, OH, OW).

    output_size (1, 1), the global average pool of ResNet and SqueezeNet, is one mean over
    each plane."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    if (OH, OW) == (1, 1):
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(x.dtype)  # (N, C, 1, 1)
    h_bins = np.array(adaptive_bins(H, OH), dtype=np.int64).reshape(OH, 2)  # (OH, 2): [start, end)
    w_bins = np.array(adaptive_bins(W, OW), dtype=np.int64).reshape(OW, 2)  # (OW, 2)
    planes = x.reshape(N * C, H, W)
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    _over_planes(N * C, H * W, lambda p0, p1: _adaptive_forward_loops(
        planes[p0:p1], out[p0:p1], h_bins, w_bins))
    return out.reshape(N, C, OH, OW)


def adaptive_avgpool2d_backward(grad_out, in_shape):
    """See reference.adaptive_avgpool2d_backward. grad_out: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    grad_out = np.ascontiguousarray(grad_out)
    _, _, OH, OW = grad_out.shape
    assert grad_out.shape[:2] == (N, C)
    if (OH, OW) == (1, 1):  # the global average pool: each pixel gets 1 / (H * W) of it
        share = grad_out / grad_out.dtype.type(H * W)                  # (N, C, 1, 1)
        return np.ascontiguousarray(np.broadcast_to(share, (N, C, H, W)))
    h_bins = np.array(adaptive_bins(H, OH), dtype=np.int64).reshape(OH, 2)  # (OH, 2)
    w_bins = np.array(adaptive_bins(W, OW), dtype=np.int64).reshape(OW, 2)  # (OW, 2)
    g = grad_out.reshape(N * C, OH, OW)
    grad_x = np.zeros((N * C, H, W), dtype=grad_out.dtype)
    _over_planes(N * C, H * W, lambda p0, p1: _adaptive_backward_loops(
        g[p0:p1], grad_x[p0:p1], h_bins, w_bins))
    return grad_x.reshape(N, C, H, W)


# ----------------------------------------------------------------------------- ReLU and Linear
# One pass over flat arrays, split into contiguous pieces for the threads; no temporaries.

RELU_RULE_CODES = {"gradient": 0, "deconvnet": 1, "guided": 2}


@njit(cache=True, nogil=True)
def _relu_forward_loops(x, out):
    for i in range(x.size):
        v = x[i]
        out[i] = v if (v > 0 or v != v) else 0.0  # NaN passes through, as np.maximum


@njit(cache=True, nogil=True)
def _relu_backward_loops(grad_out, x, grad_x, rule):
    for i in range(grad_out.size):
        g = grad_out[i]
        keep = x[i] > 0 if rule != 1 else True  # gradient and guided look at the input
        if rule != 0:
            keep = keep and g > 0  # deconvnet and guided look at the signal
        grad_x[i] = g if keep else 0.0


def _over_elements(size, loop):
    """Run ``loop(i0, i1)`` over pieces of [0, size), in parallel if there are many."""
    run_chunks(lambda chunk: loop(*chunk),
               split(size, _n_threads(size, 4 * PARALLEL_MIN_ELEMENTS)))


def relu_forward(x):
    """See reference.relu_forward. x: any shape -> same shape."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    _over_elements(x.size, lambda i0, i1: _relu_forward_loops(flat_x[i0:i1], flat_out[i0:i1]))
    return out


def relu_backward(grad_out, x, rule):
    """See reference.relu_backward. grad_out, x: same shape -> grad_x: that shape."""
    grad_out = np.ascontiguousarray(grad_out)
    x = np.ascontiguousarray(x)
    assert grad_out.shape == x.shape
    code = RELU_RULE_CODES[rule]
    grad_x = np.empty_like(grad_out)
    g, xf, gx = grad_out.reshape(-1), x.reshape(-1), grad_x.reshape(-1)
    _over_elements(g.size, lambda i0, i1: _relu_backward_loops(g[i0:i1], xf[i0:i1],
                                                               gx[i0:i1], code))
    return grad_x


def linear_forward(x, w, b):
    """See reference.linear_forward. x: (N, I), w: (O, I) -> (N, O).

    Each thread computes a block of output features, out[:, o0:o1] = x @ w[o0:o1].T: with
    batch 1 this is a matrix-vector product limited by reading w, which two threads do faster.
    """
    N, O = x.shape[0], w.shape[0]
    out = np.empty((N, O), dtype=x.dtype)
    threads = _n_threads(N * w.size, PARALLEL_MIN_MACS)

    def block(o0, o1):
        out[:, o0:o1] = x @ w[o0:o1].T  # the BLAS call
        if b is not None:
            out[:, o0:o1] += b[o0:o1]

    _run_tasks(split(O, threads), block, threads)
    return out


def linear_backward_input(grad_out, w):
    """See reference.linear_backward_input. grad_out: (N, O), w: (O, I) -> (N, I).

    Each thread computes a block of input features, grad_x[:, i0:i1] = grad_out @ w[:, i0:i1].
    """
    N, I = grad_out.shape[0], w.shape[1]
    grad_x = np.empty((N, I), dtype=grad_out.dtype)
    threads = _n_threads(N * w.size, PARALLEL_MIN_MACS)

    def block(i0, i1):
        grad_x[:, i0:i1] = grad_out @ w[:, i0:i1]  # the BLAS call

    _run_tasks(split(I, threads), block, threads)
    return grad_x
