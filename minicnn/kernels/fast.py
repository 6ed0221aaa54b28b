"""Fast kernels: the functions of ``reference.py`` with identical signatures, compiled loops.

Strategy (measured on a 2-core machine, see examples/bench.py):

- A convolution is im2col + ONE matrix product through NumPy's threaded BLAS, the classic
  lowering of Chellapilla, Puri & Simard (2006). The backward pass to the input does not need
  the forward's columns: dcols = W(F, C*KH*KW)^T @ dY(F, N*OH*OW), then col2im adds each
  column back onto its window. So forward stores no column matrix.
- The loops (im2col, col2im, pooling) are SERIAL Numba functions: a parallel Numba kernel
  right before a BLAS call made the two thread pools fight (~8 ms lost per call here).
- Columns are built for one image and one band of output rows at a time (at most
  ``BAND_BYTES``, 16 MB), into one module-level scratch buffer that is reused, so they stay in
  cache for the GEMM and memory stays flat. The GEMM writes straight into the NCHW output.
  The kernels are therefore not thread-safe.
- Jitted functions take plain ints (never tuples) and C-contiguous arrays, so each compiles
  once per dtype (float32, float64); ``cache=True`` keeps the machine code on disk in
  ``__pycache__`` for the next process.

Every Python wrapper below makes its arrays C-contiguous and computes the output shape; the
jitted bodies are only loops. Numba does no bounds checking, so the wrappers are the last line
of defence before memory is touched.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels import adaptive_bins, output_size

__all__ = [
    "conv2d_forward", "conv2d_backward_input", "im2col", "col2im",
    "maxpool2d_forward", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward",
    "release_scratch",
]

# ----------------------------------------------------------------------------- scratch buffer

_scratch_bytes = np.empty(0, dtype=np.uint8)


def _scratch(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` living in the shared scratch buffer."""
    global _scratch_bytes
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if _scratch_bytes.nbytes < nbytes:
        _scratch_bytes = np.empty(0, dtype=np.uint8)  # drop the old buffer before allocating
        _scratch_bytes = np.empty(nbytes, dtype=np.uint8)
    return _scratch_bytes[:nbytes].view(dtype).reshape(shape)


def release_scratch():
    """Free the column buffer (at most a few MB, see BAND_BYTES)."""
    global _scratch_bytes
    _scratch_bytes = np.empty(0, dtype=np.uint8)


# ----------------------------------------------------------------------------- convolution

@njit(cache=True)
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
                    for j in range(j_lo, j_hi):
                        cols[row, start + j] = x[c, ih, j * sw - pw + kw]
                    for j in range(j_hi, OW):
                        cols[row, start + j] = 0.0


@njit(cache=True)
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
                    for j in range(j_lo, j_hi):
                        x[c, ih, j * sw - pw + kw] += cols[row, start + j]


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
# small enough to stay in cache between im2col and the GEMM that reads them, large enough
# for an efficient GEMM (VGG16's first layers: 8 of 224 rows per band).
BAND_BYTES = 1 << 24


def _row_bands(OH, bytes_per_row):
    rows = max(1, min(OH, BAND_BYTES // bytes_per_row))
    return [(i0, min(OH, i0 + rows)) for i0 in range(0, OH, rows)]


def conv2d_forward(x, w, b, stride, padding):
    """See reference.conv2d_forward. x: (N, C, H, W), w: (F, C, KH, KW) -> (N, F, OH, OW).

    Per image and band of output rows: cols = im2col(band), out[n, :, band] = W @ cols.
    """
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH, OW = output_size(H, KH, stride[0], padding[0]), output_size(W, KW, stride[1], padding[1])
    w2 = np.ascontiguousarray(w).reshape(F, C * KH * KW)  # (F, C*KH*KW)
    out = np.empty((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        out_n = out[n].reshape(F, OH * OW)  # (F, OH*OW), a view
        for i0, i1 in _row_bands(OH, C * KH * KW * OW * x.itemsize):
            cols = _scratch((C * KH * KW, (i1 - i0) * OW), x.dtype)  # (C*KH*KW, rows*OW)
            _im2col_loops(x[n], cols, 0, *_ints((KH, KW), stride, padding), i0, i1, OW)
            np.matmul(w2, cols, out=out_n[:, i0 * OW:i1 * OW])  # the BLAS call
    if b is not None:
        out += b.reshape(1, F, 1, 1)
    return out


def conv2d_backward_input(grad_out, w, stride, padding, in_shape):
    """See reference.conv2d_backward_input. grad_out: (N, F, OH, OW) -> (N, C, H, W).

    Per image and band: dcols = W^T @ grad_out[n, :, band], then col2im adds them back.
    """
    N, C, H, W = in_shape
    F, _, KH, KW = w.shape
    grad_out = np.ascontiguousarray(grad_out)
    _, _, OH, OW = grad_out.shape
    w2 = np.ascontiguousarray(w).reshape(F, C * KH * KW)  # (F, C*KH*KW)
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    for n in range(N):
        g_n = grad_out[n].reshape(F, OH * OW)  # (F, OH*OW), a view
        for i0, i1 in _row_bands(OH, C * KH * KW * OW * grad_out.itemsize):
            dcols = _scratch((C * KH * KW, (i1 - i0) * OW), grad_out.dtype)  # (C*KH*KW, rows*OW)
            np.matmul(w2.T, g_n[:, i0 * OW:i1 * OW], out=dcols)  # the BLAS call
            _col2im_loops(dcols, 0, grad_x[n], *_ints((KH, KW), stride, padding), i0, i1, OW)
    return grad_x


# ----------------------------------------------------------------------------- pooling

@njit(cache=True)
def _maxpool_forward_loops(x, out, argmax, KH, KW, sh, sw, ph, pw):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                h0 = max(i * sh - ph, 0)
                h1 = min(i * sh - ph + KH, H)
                for j in range(OW):
                    w0 = max(j * sw - pw, 0)
                    w1 = min(j * sw - pw + KW, W)
                    best = x[n, c, h0, w0]  # the first valid element (padding is -inf)
                    best_index = h0 * W + w0
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            v = x[n, c, ih, iw]
                            # strict '>': ties keep the FIRST maximum in row-major order;
                            # a NaN (v != v) always wins, as in PyTorch's CPU kernel
                            if v > best or v != v:
                                best = v
                                best_index = ih * W + iw
                    out[n, c, i, j] = best
                    argmax[n, c, i, j] = best_index


@njit(cache=True)
def _maxpool_backward_loops(grad_out, argmax, grad_x):
    N, C, OH, OW = grad_out.shape
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    grad_x[n, c, argmax[n, c, i, j]] += grad_out[n, c, i, j]


def maxpool2d_forward(x, kernel, stride, padding):
    """See reference.maxpool2d_forward. x: (N, C, H, W) -> (out, argmax), both (N, C, OH, OW)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph), output_size(W, KW, sw, pw)
    # every window must hold at least one real element (PyTorch: padding <= kernel / 2)
    assert 2 * ph <= KH and 2 * pw <= KW and OH >= 1 and OW >= 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int64)
    _maxpool_forward_loops(x, out, argmax, int(KH), int(KW), int(sh), int(sw), int(ph), int(pw))
    return out, argmax


def maxpool2d_backward(grad_out, argmax, in_shape):
    """See reference.maxpool2d_backward. grad_out, argmax: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    grad_out = np.ascontiguousarray(grad_out)
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    assert argmax.shape == grad_out.shape and grad_out.shape[:2] == (N, C)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W):  # would write out of bounds
        raise ValueError(f"maxpool2d_backward: argmax values must lie in [0, {H * W}), "
                         f"got [{argmax.min()}, {argmax.max()}]")
    grad_x = np.zeros((N, C, H * W), dtype=grad_out.dtype)
    _maxpool_backward_loops(grad_out, argmax, grad_x)
    return grad_x.reshape(N, C, H, W)  # (N, C, H, W)


@njit(cache=True)
def _avgpool_forward_loops(x, out, KH, KW, sh, sw, ph, pw):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    count = KH * KW  # count_include_pad=True: padding zeros count too
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                h0 = max(i * sh - ph, 0)
                h1 = min(i * sh - ph + KH, H)
                for j in range(OW):
                    w0 = max(j * sw - pw, 0)
                    w1 = min(j * sw - pw + KW, W)
                    total = 0.0
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            total += x[n, c, ih, iw]
                    out[n, c, i, j] = total / count


@njit(cache=True)
def _avgpool_backward_loops(grad_out, grad_x, KH, KW, sh, sw, ph, pw):
    N, C, H, W = grad_x.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    count = KH * KW
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                h0 = max(i * sh - ph, 0)
                h1 = min(i * sh - ph + KH, H)
                for j in range(OW):
                    w0 = max(j * sw - pw, 0)
                    w1 = min(j * sw - pw + KW, W)
                    share = grad_out[n, c, i, j] / count
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            grad_x[n, c, ih, iw] += share


def avgpool2d_forward(x, kernel, stride, padding):
    """See reference.avgpool2d_forward. x: (N, C, H, W) -> (N, C, OH, OW)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph), output_size(W, KW, sw, pw)
    assert OH >= 1 and OW >= 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    _avgpool_forward_loops(x, out, int(KH), int(KW), int(sh), int(sw), int(ph), int(pw))
    return out


def avgpool2d_backward(grad_out, kernel, stride, padding, in_shape):
    """See reference.avgpool2d_backward. grad_out: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    grad_out = np.ascontiguousarray(grad_out)
    assert grad_out.shape == (N, C, output_size(H, KH, sh, ph), output_size(W, KW, sw, pw))
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    _avgpool_backward_loops(grad_out, grad_x, int(KH), int(KW), int(sh), int(sw), int(ph), int(pw))
    return grad_x


@njit(cache=True)
def _adaptive_forward_loops(x, out, h_bins, w_bins):
    N, C = x.shape[0], x.shape[1]
    OH, OW = out.shape[2], out.shape[3]
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    total = 0.0
                    for ih in range(h_bins[i, 0], h_bins[i, 1]):
                        for iw in range(w_bins[j, 0], w_bins[j, 1]):
                            total += x[n, c, ih, iw]
                    count = (h_bins[i, 1] - h_bins[i, 0]) * (w_bins[j, 1] - w_bins[j, 0])
                    out[n, c, i, j] = total / count


@njit(cache=True)
def _adaptive_backward_loops(grad_out, grad_x, h_bins, w_bins):
    N, C = grad_x.shape[0], grad_x.shape[1]
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    count = (h_bins[i, 1] - h_bins[i, 0]) * (w_bins[j, 1] - w_bins[j, 0])
                    share = grad_out[n, c, i, j] / count
                    for ih in range(h_bins[i, 0], h_bins[i, 1]):
                        for iw in range(w_bins[j, 0], w_bins[j, 1]):
                            grad_x[n, c, ih, iw] += share


def adaptive_avgpool2d_forward(x, output_size):
    """See reference.adaptive_avgpool2d_forward. x: (N, C, H, W) -> (N, C, OH, OW)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    h_bins = np.array(adaptive_bins(H, OH), dtype=np.int64).reshape(OH, 2)  # (OH, 2): [start, end)
    w_bins = np.array(adaptive_bins(W, OW), dtype=np.int64).reshape(OW, 2)  # (OW, 2)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    _adaptive_forward_loops(x, out, h_bins, w_bins)
    return out


def adaptive_avgpool2d_backward(grad_out, in_shape):
    """See reference.adaptive_avgpool2d_backward. grad_out: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    grad_out = np.ascontiguousarray(grad_out)
    _, _, OH, OW = grad_out.shape
    assert grad_out.shape[:2] == (N, C)
    h_bins = np.array(adaptive_bins(H, OH), dtype=np.int64).reshape(OH, 2)  # (OH, 2)
    w_bins = np.array(adaptive_bins(W, OW), dtype=np.int64).reshape(OW, 2)  # (OW, 2)
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    _adaptive_backward_loops(grad_out, grad_x, h_bins, w_bins)
    return grad_x
