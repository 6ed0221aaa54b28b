"""Fast pooling: the max, average and adaptive average pools of ``reference.py`` with
identical signatures, as compiled loops.

The loops see the input as P = N*C independent planes (P, H, W), a free reshape of NCHW, and
the wrappers hand out contiguous groups of planes to minicnn's threads (``threads.py``).
Max-pooling's ties go to the first maximum in row-major order, as in PyTorch's CPU kernel
and ``reference.maxpool2d_forward``; 2x2 windows with stride 2 and 3x3 windows with stride 2
have their own loops, and so does ``maxpool2d_values``, the maxima without their positions.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.engine.kernels import adaptive_bins, output_size, window_ints
from minicnn.engine.kernels.fast import threads as thread_pool  # thresholds read per call
from minicnn.engine.kernels.fast.threads import n_threads, run_chunks, split

__all__ = ["maxpool2d_forward", "maxpool2d_values", "maxpool2d_backward", "avgpool2d_forward",
           "avgpool2d_backward", "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward"]


def _over_planes(P, work_per_plane, loop):
    """Run ``loop(p0, p1)`` over groups of the P planes, in parallel if the work is large."""
    threads = n_threads(P * work_per_plane, thread_pool.PARALLEL_MIN_ELEMENTS)
    run_chunks(lambda chunk: loop(*chunk), split(P, threads))


@njit(cache=True, nogil=True)
def _first_max(x, p, h0, h1, w0, w1):
    """(max, flat index in plane p) of the window x[p, h0:h1, w0:w1], clipped to the image.

    Starts from the first valid element (padding is -inf); strict '>': ties keep the FIRST
    maximum in row-major order; a NaN (v != v) always wins, as in PyTorch's CPU kernel."""
    W = x.shape[2]
    best = x[p, h0, w0]
    best_index = h0 * W + w0
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            v = x[p, ih, iw]
            if v > best or v != v:
                best = v
                best_index = ih * W + iw
    return best, best_index


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
                out[p, i, j], argmax[p, i, j] = _first_max(x, p, h0, h1, w0, w1)


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
def _maxpool3x3s2_forward_loops(x, out, argmax, ph, pw):
    """_maxpool_forward_loops for 3x3 windows with stride 2 (the pooling of AlexNet, ResNet
    and SqueezeNet), 3x faster (measured). A window wholly inside the image is done in two
    passes of fixed length: its maximum (no branches, which random data mispredicts), then
    the first position in row-major order that holds it, i.e. the general loops' argmax.
    A window with a NaN, or over the border (padding, ceil_mode's partial last one), runs
    the general loops' ordered comparisons (``_first_max``)."""
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in range(P):
        for i in range(OH):
            h = 2 * i - ph
            for j in range(OW):
                w = 2 * j - pw
                h0, h1, w0, w1 = max(h, 0), min(h + 3, H), max(w, 0), min(w + 3, W)
                if h1 - h0 == 3 and w1 - w0 == 3:
                    m = x[p, h0, w0]
                    nan = False
                    for dh in range(3):
                        for dw in range(3):
                            v = x[p, h0 + dh, w0 + dw]
                            m = max(m, v)
                            nan |= v != v
                    if not nan:
                        kh, kw = 2, 2
                        for dh in range(2, -1, -1):  # backwards: the first one is found last
                            for dw in range(2, -1, -1):
                                if x[p, h0 + dh, w0 + dw] == m:
                                    kh, kw = dh, dw
                        out[p, i, j] = x[p, h0 + kh, w0 + kw]  # with its own sign of zero
                        argmax[p, i, j] = (h0 + kh) * W + w0 + kw
                        continue
                out[p, i, j], argmax[p, i, j] = _first_max(x, p, h0, h1, w0, w1)


@njit(cache=True, nogil=True)
def _maxpool_backward_loops(grad_out, argmax, grad_x):
    """grad_x (P, H*W) := 0, then each output gradient added at its argmax. Zeroing here
    splits it over the threads with the rest (a third of the pass, measured at batch 50).
    Returns False, with nothing written past the plane, if an index lies outside it."""
    P, OH, OW = grad_out.shape
    HW = grad_x.shape[1]
    inside = True
    for p in range(P):
        for t in range(HW):
            grad_x[p, t] = 0.0
        for i in range(OH):
            for j in range(OW):
                a = argmax[p, i, j]
                if a < 0 or a >= HW:  # a check as we go, instead of a pass of min and max
                    inside = False
                    continue
                grad_x[p, a] += grad_out[p, i, j]
    return inside


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
    planes = x.reshape(N * C, H, W)  # (P, H, W), a view
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N * C, OH, OW), dtype=np.int64)
    if ((tuple(kernel), tuple(stride), tuple(padding)) == ((2, 2), (2, 2), (0, 0))
            and 2 * OH <= H and 2 * OW <= W):
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool2x2_forward_loops(
            planes[p0:p1], out[p0:p1], argmax[p0:p1]))
    elif tuple(kernel) == (3, 3) and tuple(stride) == (2, 2):
        ph, pw = int(padding[0]), int(padding[1])
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool3x3s2_forward_loops(
            planes[p0:p1], out[p0:p1], argmax[p0:p1], ph, pw))
    else:
        ints = window_ints(kernel, stride, padding)
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool_forward_loops(
            planes[p0:p1], out[p0:p1], argmax[p0:p1], *ints))
    return out.reshape(N, C, OH, OW), argmax.reshape(N, C, OH, OW)  # (N, C, OH, OW) each


# The maxima alone, for a forward that no backward follows (``maxpool2d_values``). max(m, v)
# keeps m unless v > m, i.e. the first of equal values in row-major order, as the forward
# loops do (so even the sign of a zero agrees); it would skip a NaN, which the forward lets
# win, hence the NaN flag. There are no data-dependent branches.

@njit(cache=True, nogil=True)
def _maxpool_values_loops(x, out, KH, KW, sh, sw, ph, pw):
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in range(P):
        for i in range(OH):
            h0 = max(i * sh - ph, 0)
            h1 = min(i * sh - ph + KH, H)
            for j in range(OW):
                w0 = max(j * sw - pw, 0)
                w1 = min(j * sw - pw + KW, W)
                m = x[p, h0, w0]
                nan = False
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        v = x[p, ih, iw]
                        m = max(m, v)
                        nan |= v != v
                out[p, i, j] = np.nan if nan else m


@njit(cache=True, nogil=True)
def _maxpool2x2_values_loops(x, out):
    """_maxpool_values_loops for 2x2 windows with stride 2 and no padding, written out."""
    P, OH, OW = out.shape
    for p in range(P):
        for i in range(OH):
            for j in range(OW):
                a, b = x[p, 2 * i, 2 * j], x[p, 2 * i, 2 * j + 1]
                c, d = x[p, 2 * i + 1, 2 * j], x[p, 2 * i + 1, 2 * j + 1]
                m = max(max(max(a, b), c), d)
                nan = (a != a) | (b != b) | (c != c) | (d != d)
                out[p, i, j] = np.nan if nan else m


@njit(cache=True, nogil=True)
def _maxpool3x3s2_values_loops(x, out, ph, pw):
    """_maxpool_values_loops for 3x3 windows with stride 2: whole windows written out, the
    ones over the border (padding, ceil_mode) by the general loop's body."""
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in range(P):
        for i in range(OH):
            h = 2 * i - ph
            for j in range(OW):
                w = 2 * j - pw
                h0, h1, w0, w1 = max(h, 0), min(h + 3, H), max(w, 0), min(w + 3, W)
                m = x[p, h0, w0]
                nan = False
                if h1 - h0 == 3 and w1 - w0 == 3:
                    for dh in range(3):
                        for dw in range(3):
                            v = x[p, h0 + dh, w0 + dw]
                            m = max(m, v)
                            nan |= v != v
                else:
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            v = x[p, ih, iw]
                            m = max(m, v)
                            nan |= v != v
                out[p, i, j] = np.nan if nan else m


def maxpool2d_values(x, kernel, stride, padding, ceil_mode=False):
    """See reference.maxpool2d_values. x: (N, C, H, W) -> out: (N, C, OH, OW)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph, ceil_mode), output_size(W, KW, sw, pw, ceil_mode)
    assert 2 * ph <= KH and 2 * pw <= KW and OH >= 1 and OW >= 1  # as in maxpool2d_forward
    planes = x.reshape(N * C, H, W)  # (P, H, W), a view
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    if ((tuple(kernel), tuple(stride), tuple(padding)) == ((2, 2), (2, 2), (0, 0))
            and 2 * OH <= H and 2 * OW <= W):
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool2x2_values_loops(
            planes[p0:p1], out[p0:p1]))
    elif tuple(kernel) == (3, 3) and tuple(stride) == (2, 2):
        ph, pw = int(padding[0]), int(padding[1])
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool3x3s2_values_loops(
            planes[p0:p1], out[p0:p1], ph, pw))
    else:
        ints = window_ints(kernel, stride, padding)
        _over_planes(N * C, H * W, lambda p0, p1: _maxpool_values_loops(
            planes[p0:p1], out[p0:p1], *ints))
    return out.reshape(N, C, OH, OW)  # (N, C, OH, OW)


def maxpool2d_backward(grad_out, argmax, in_shape):
    """See reference.maxpool2d_backward. grad_out, argmax: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    grad_out = np.ascontiguousarray(grad_out)
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    assert argmax.shape == grad_out.shape and grad_out.shape[:2] == (N, C)
    OH, OW = grad_out.shape[2:]
    g, a = grad_out.reshape(N * C, OH, OW), argmax.reshape(N * C, OH, OW)  # (P, OH, OW) each
    grad_x = np.empty((N * C, H * W), dtype=grad_out.dtype)  # zeroed by the loops
    inside = []
    _over_planes(N * C, H * W, lambda p0, p1: inside.append(_maxpool_backward_loops(
        g[p0:p1], a[p0:p1], grad_x[p0:p1])))
    if not all(inside):  # the loops skipped the indices that would have written out of bounds
        raise ValueError(f"maxpool2d_backward: argmax values must lie in [0, {H * W}), "
                         f"got [{argmax.min()}, {argmax.max()}]")
    return grad_x.reshape(N, C, H, W)  # (N, C, H, W)


@njit(cache=True, nogil=True)
def _pool_window(i, size, kernel, stride, padding, count_include_pad):
    """kernels.pool_window, compiled: (start, end, count) of window i along one axis."""
    start = i * stride - padding
    end = min(start + kernel, size + padding)
    count = end - start
    start, end = max(start, 0), min(end, size)
    return start, end, (count if count_include_pad else end - start)


@njit(cache=True, nogil=True)
def _avgpool_forward_loops(x, out, KH, KW, sh, sw, ph, pw, count_include_pad):
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in range(P):
        for i in range(OH):
            h0, h1, rows = _pool_window(i, H, KH, sh, ph, count_include_pad)
            for j in range(OW):
                w0, w1, cols = _pool_window(j, W, KW, sw, pw, count_include_pad)
                total = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        total += x[p, ih, iw]
                out[p, i, j] = total / (rows * cols)


@njit(cache=True, nogil=True)
def _avgpool_backward_loops(grad_out, grad_x, KH, KW, sh, sw, ph, pw, count_include_pad):
    P, H, W = grad_x.shape
    OH, OW = grad_out.shape[1], grad_out.shape[2]
    for p in range(P):
        for i in range(OH):
            h0, h1, rows = _pool_window(i, H, KH, sh, ph, count_include_pad)
            for j in range(OW):
                w0, w1, cols = _pool_window(j, W, KW, sw, pw, count_include_pad)
                share = grad_out[p, i, j] / (rows * cols)
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        grad_x[p, ih, iw] += share


def avgpool2d_forward(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    """See reference.avgpool2d_forward. x: (N, C, H, W) -> (N, C, OH, OW)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = output_size(H, KH, sh, ph, ceil_mode), output_size(W, KW, sw, pw, ceil_mode)
    assert OH >= 1 and OW >= 1
    planes = x.reshape(N * C, H, W)  # (P, H, W), a view
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    ints = window_ints(kernel, stride, padding)
    _over_planes(N * C, H * W, lambda p0, p1: _avgpool_forward_loops(
        planes[p0:p1], out[p0:p1], *ints, bool(count_include_pad)))
    return out.reshape(N, C, OH, OW)  # (N, C, OH, OW)


def avgpool2d_backward(grad_out, kernel, stride, padding, in_shape, ceil_mode=False,
                       count_include_pad=True):
    """See reference.avgpool2d_backward. grad_out: (N, C, OH, OW) -> (N, C, H, W)."""
    N, C, H, W = in_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    grad_out = np.ascontiguousarray(grad_out)
    OH, OW = output_size(H, KH, sh, ph, ceil_mode), output_size(W, KW, sw, pw, ceil_mode)
    assert grad_out.shape == (N, C, OH, OW)
    g = grad_out.reshape(N * C, OH, OW)  # (P, OH, OW), a view
    grad_x = np.zeros((N * C, H, W), dtype=grad_out.dtype)
    ints = window_ints(kernel, stride, padding)
    _over_planes(N * C, H * W, lambda p0, p1: _avgpool_backward_loops(
        g[p0:p1], grad_x[p0:p1], *ints, bool(count_include_pad)))
    return grad_x.reshape(N, C, H, W)  # (N, C, H, W)


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
    planes = x.reshape(N * C, H, W)  # (P, H, W), a view
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    _over_planes(N * C, H * W, lambda p0, p1: _adaptive_forward_loops(
        planes[p0:p1], out[p0:p1], h_bins, w_bins))
    return out.reshape(N, C, OH, OW)  # (N, C, OH, OW)


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
    g = grad_out.reshape(N * C, OH, OW)  # (P, OH, OW), a view
    grad_x = np.zeros((N * C, H, W), dtype=grad_out.dtype)
    _over_planes(N * C, H * W, lambda p0, p1: _adaptive_backward_loops(
        g[p0:p1], grad_x[p0:p1], h_bins, w_bins))
    return grad_x.reshape(N, C, H, W)  # (N, C, H, W)
