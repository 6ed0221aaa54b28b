"""3x3, stride-1 convolutions with fewer multiplications: Winograd's minimal filtering.

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks". Every VGG layer is a
3x3 convolution with stride 1, and their multiplications are most of a pass. Cut the output
into m x m blocks; each block depends on one (m+2) x (m+2) tile d of the padded input. In one
dimension, m outputs of a 3-tap filter g take m + 2 multiplications instead of 3m:

    y = A^T [ (G g) * (B^T d) ]            (* elementwise)

and in two dimensions, Y = A^T [ (G g G^T) * (B^T d B) ] A. Summed over input channels, the
elementwise products become (m+2)^2 matrix products, one per position (a, b) of the tile:

    M[ab] (F, tiles) = U[ab] (F, C) @ V[ab] (C, tiles)

with U = G g G^T per (filter, channel) and V = B^T d B per (channel, tile). Two sizes:

- F(2x2, 3x3), this file: 4x4 tiles, 16 products for 36 multiplications (2.25x fewer). Its
  transforms only add, subtract and halve; float32 error comparable to im2col's.
- F(4x4, 3x3), ``winograd4.py``: 6x6 tiles, 36 products for 144 (4x fewer), the default
  on large images. Its matrices hold larger constants (up to 8, and 1/15 in G), and
  rounding errors grow with them: in float32 its error is 3-10x F(2x2)'s (bounds measured
  and tested, see ``winograd4.py``). In float64 both are exact to ~1e-14 relative.

The gradient with respect to the input of a stride-1 convolution is itself a stride-1
convolution, of grad_out with the kernels flipped in space and their channel axes swapped,
with padding 2 - p. And correlating with a flipped kernel is correlating with the kernel
itself under a half turn of the image: corr(y, rot180(g)) = rot180(corr(rot180(y), g)). So
the backward pass runs the forward algorithm either with the flipped filters' own transform
(cached too, for layers up to ``BACKWARD_FILTERS_MAX_BYTES``), or, on the largest layers, with
the SAME transformed filters, channel axes swapped (U[ab] transposed, (C, F)), rotating
grad_out as it reads it and its output back as it writes it: one U then serves both
directions, at the price of slower reversed reads and writes (``backward_input``).

Transformed filters are cached, once per weight array (``cached_filters``): a layer passes
the same array every call, and re-transforming 512x512 filters costs as much as the
convolution at 28x28. Only arrays that cannot change are cached (``minicnn.engine.frozen``:
a layer's weights are read-only, and assigning new ones makes a new array); any other array
is transformed at every call, so a stale transform is impossible.

Which algorithm runs where (``conv.winograd_for``, with the thresholds below) is set by
``MINICNN_WINOGRAD`` (``minicnn.engine.settings``):

    MINICNN_WINOGRAD=4    (default) F(4x4) where its blocks fit, F(2x2) on the other layers
    MINICNN_WINOGRAD=2    F(2x2) only: 3-10x less float32 error, slower
    MINICNN_WINOGRAD=off  im2col everywhere: no Winograd at all

This module also holds the driver both sizes share (``convolve``): which tiles each thread
transforms, multiplies and transforms back.

- ``conv3x3(x, w, b, padding)``: the convolution by F(2x2), threaded, cached filters
- ``conv3x3_backward_input(grad_out, w, padding)``: its input gradient
- ``conv3x3_numpy`` / ``conv3x3_backward_input_numpy``: the same algorithm in a few lines
  of NumPy (readable and slow), with the same signatures, tested equal to the reference
"""
from __future__ import annotations

import threading
import weakref

import numpy as np
from numba import njit

from minicnn.engine.frozen import is_frozen
from minicnn.engine.kernels.fast import allocator, threads

__all__ = ["BT", "G", "AT", "supported", "cached_filters", "pad_loops",
           "clear_cache", "conv3x3", "conv3x3_backward_input", "backward_input", "conv3x3_numpy",
           "conv3x3_backward_input_numpy", "convolve", "convolve_numpy", "backward_numpy"]

BT = np.array([[1, 0, -1, 0],
               [0, 1, 1, 0],
               [0, -1, 1, 0],
               [0, 1, 0, -1]], dtype=np.float64)  # (4, 4): input tile transform B^T
G = np.array([[1, 0, 0],
              [0.5, 0.5, 0.5],
              [0.5, -0.5, 0.5],
              [0, 0, 1]], dtype=np.float64)  # (4, 3): filter transform
AT = np.array([[1, 1, 1, 0],
               [0, 1, -1, -1]], dtype=np.float64)  # (2, 4): output transform A^T


# ----------------------------------------------------------------------------- the choice

# Measured on VGG16's, AlexNet's and the small net's shapes (BENCHMARKS.md).
# Winograd needs both channel counts to fill its GEMMs (an RGB first layer, C = 3, is faster
# through im2col). With its filters transformed once, F(2x2) beat im2col on every 3x3 layer
# with >= 16 channels measured, from 224x224 down to 4x4 (VGG16's 14x14 layers: 1.6x).
MIN_CHANNELS = 16
# F(4x4) needs enough tiles for its 36 GEMMs next to U[ab] (F, C), 2.25x F(2x2)'s U, and
# blocks that fit the map: on 14x14 (or 13x13, 7x7) a third of its outputs would be padding.
# Counted per image: with many images a small map still has few tiles per row, and its
# transforms, not its products, set the pace. Measured on the small net at batch 50,
# F(2x2) is as fast or faster on its 16x16 and 8x8 layers
# (128->128 at 16x16, forward + backward: 29.5 ms against 35; 128->192 at 8x8: 11.2 against
# 13.8); F(4x4) wins from 28x28 up (64->64 at 32x32: 39.6 against 50.3).
F4_MIN_TILES = 48  # ceil(OH/4) * ceil(OW/4): 28x28 (49) gains, 16x16 (16) not
F4_MAX_PADDING = 1.15  # outputs computed / outputs wanted


def supported(kernel, stride, padding) -> bool:
    """True if Winograd applies, forward and backward: 3x3, stride 1, padding <= 2."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2


# ----------------------------------------------------------------------------- filter cache

_cache: dict = {}  # id(w) -> (weakref to w, data address, shape, dtype, {kind: U})
# re-entrant: a garbage collection inside the locked region may run _forget in this thread
_cache_lock = threading.RLock()


def cached_filters(w, kind, transform):
    """``transform(w)``, computed once per weight array ``w`` and ``kind`` and then reused,
    if w cannot change (``is_frozen``); for any other array, computed afresh at every call.

    An entry is found by the array's identity and checked against its data address, shape
    and dtype; it is dropped when the array is garbage-collected."""
    if not is_frozen(w):
        return transform(w)
    key = id(w)
    address = w.__array_interface__["data"][0]
    entry = _cache.get(key)
    if entry is None or entry[0]() is not w or entry[1:4] != (address, w.shape, w.dtype):
        with _cache_lock:
            _cache.pop(key, None)
            entry = (weakref.ref(w, lambda ref, key=key: _forget(key, ref)), address, w.shape,
                     w.dtype, {})
            _cache[key] = entry
    filters = entry[4]
    U = filters.get(kind)
    if U is None:
        U = filters[kind] = transform(w)  # two threads may both compute it: same result
    return U


def _forget(key, ref):
    with _cache_lock:
        if key in _cache and _cache[key][0] is ref:
            del _cache[key]


def clear_cache():
    """Forget every transformed filter (frees their memory)."""
    with _cache_lock:
        _cache.clear()


# ----------------------------------------------------------------------------- F(2x2, 3x3)

# (G kron G)[4a + b, 3k + l] = G[a, k] G[b, l], so that vec(G g G^T) = GG @ vec(g)
GG = np.kron(G, G)  # (16, 9)


def filter_transform(w, GG):
    """w: (F, C, 3, 3) -> U: (T*T, F, C) with U[:, f, c] = GG @ vec(w[f, c]), T*T = len(GG).

    Computed in float64 (so U holds the exact transform, rounded once), stored in w's dtype,
    a few filters at a time (all of VGG16's 512x512 at once would be a 75 MB temporary)."""
    F, C = w.shape[:2]
    U = np.empty((len(GG), F, C), dtype=w.dtype)
    step = max(1, (1 << 16) // C)  # filters per chunk: float64 temporaries of ~20 MB at most
    for f0 in range(0, F, step):
        w9 = np.asarray(w[f0:f0 + step], dtype=np.float64).reshape(-1, 9)  # (chunk*C, 9)
        U[:, f0:f0 + step] = (GG @ w9.T).reshape(len(GG), -1, C)  # (T*T, chunk, C)
    return U


def cached_U(w):
    """The cached U (16, F, C) of w (F, C, 3, 3)."""
    return cached_filters(w, "F2", lambda w: filter_transform(w, GG))


def convolve_numpy(x, w, b, padding, BT, G, AT):
    """Winograd's algorithm in NumPy for any output block m = len(AT), tile T = m + 2:
    x: (N, C, H, W), w: (F, C, 3, 3), b: (F,) or None -> (N, F, H+2ph-2, W+2pw-2)."""
    N, C, H, W = x.shape
    F = w.shape[0]
    m, T = AT.shape
    (ph, pw) = padding
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    TH, TW = -(-OH // m), -(-OW // m)  # tiles per column and row (the last may stick out)
    xp = np.zeros((N, C, m * TH + 2, m * TW + 2), dtype=x.dtype)  # padded; room for the last tile
    xp[:, :, ph:ph + H, pw:pw + W] = x
    # d[n, c, r, s] is the T x T tile whose outputs are rows m*r.. m*r+m-1, columns likewise
    d = np.lib.stride_tricks.sliding_window_view(xp, (T, T), axis=(2, 3))[:, :, ::m, ::m]
    V = np.einsum("ai,ncrsij,bj->abcnrs", BT, d, BT)  # (T, T, C, N, TH, TW)
    U = np.einsum("ak,fckl,bl->abfc", G, w, G)  # (T, T, F, C): G g G^T per filter and channel
    M = np.einsum("abfc,abcnrs->abfnrs", U, V)  # the T*T products, summed over channels
    Y = np.einsum("ia,abfnrs,jb->nfrisj", AT, M, AT)  # (N, F, TH, m, TW, m)
    out = Y.reshape(N, F, m * TH, m * TW)[:, :, :OH, :OW]  # (N, F, OH, OW)
    if b is not None:
        out = out + b.reshape(1, F, 1, 1)  # (1, F, 1, 1) broadcast
    return np.ascontiguousarray(out, dtype=x.dtype)


def conv3x3_numpy(x, w, b, padding):
    """F(2x2, 3x3) in NumPy. x: (N, C, H, W), w: (F, C, 3, 3), b: (F,) or None
    -> (N, F, H+2ph-2, W+2pw-2)."""
    return convolve_numpy(x, w, b, padding, BT, G, AT)


def backward_numpy(grad_out, w, padding, conv_numpy):
    """Input gradient of a 3x3 stride-1 convolution with padding p: grad_out (N, F, OH, OW),
    w (F, C, 3, 3) -> (N, C, H, W).

    It is the convolution of grad_out with the kernels rotated by 180 degrees, channel axes
    swapped, padding 2 - p; a half turn of grad_out before and of the result after lets
    ``conv_numpy`` use the kernels unrotated, so its filter transform is the forward's."""
    w_swapped = w.transpose(1, 0, 2, 3)  # (C, F, 3, 3), a view: channels swapped, not rotated
    turned = grad_out[:, :, ::-1, ::-1]  # (N, F, OH, OW), a half turn
    grad_x = conv_numpy(turned, w_swapped, None, (2 - padding[0], 2 - padding[1]))
    return np.ascontiguousarray(grad_x[:, :, ::-1, ::-1])  # (N, C, H, W), turned back


def conv3x3_backward_input_numpy(grad_out, w, padding):
    """F(2x2)'s input gradient in NumPy (see backward_numpy): grad_out (N, F, OH, OW),
    w (F, C, 3, 3) -> (N, C, H, W)."""
    return backward_numpy(grad_out, w, padding, conv3x3_numpy)


@njit(cache=True, nogil=True)
def pad_loops(x, xp, ph, pw, h0, turn):
    """xp[c, i, j] = x_pad[c, h0 + i, j], x_pad being x[c] placed at (ph, pw) in zeros: the
    padded rows h0 <= h < h0 + xp.shape[1] that a band of tiles reads, without bounds checks
    in the transforms. turn: read x[c] turned by 180 degrees (the backward pass)."""
    C, H, W = x.shape
    for c in range(C):
        for i in range(xp.shape[1]):
            h = h0 + i - ph  # the row of x, if any
            if h < 0 or h >= H:
                for j in range(xp.shape[2]):
                    xp[c, i, j] = 0.0
                continue
            source = H - 1 - h if turn else h
            for j in range(xp.shape[2]):
                w = j - pw
                if 0 <= w < W:
                    xp[c, i, j] = x[c, source, W - 1 - w] if turn else x[c, source, w]
                else:
                    xp[c, i, j] = 0.0


@njit(cache=True, nogil=True)
def _input_transform_loops(xp, V, c0, col0, TW):
    """V[4a + b, c0 + c, col0 + r*TW + s] = (B^T d B)[a, b], d = xp[c, 2r:2r+4, 2s:2s+4], for
    every tile of a band of padded rows xp (C, 2*rows + 2, 2*TW + 2)."""
    C = xp.shape[0]
    for c in range(C):
        cv = c0 + c
        for r in range((xp.shape[1] - 2) // 2):
            h = 2 * r
            for s in range(TW):
                q = 2 * s
                col = col0 + r * TW + s
                # t = B^T d, column by column (rows of d: h, h+1, h+2, h+3)
                t00 = xp[c, h, q] - xp[c, h + 2, q]
                t01 = xp[c, h, q + 1] - xp[c, h + 2, q + 1]
                t02 = xp[c, h, q + 2] - xp[c, h + 2, q + 2]
                t03 = xp[c, h, q + 3] - xp[c, h + 2, q + 3]
                t10 = xp[c, h + 1, q] + xp[c, h + 2, q]
                t11 = xp[c, h + 1, q + 1] + xp[c, h + 2, q + 1]
                t12 = xp[c, h + 1, q + 2] + xp[c, h + 2, q + 2]
                t13 = xp[c, h + 1, q + 3] + xp[c, h + 2, q + 3]
                t20 = xp[c, h + 2, q] - xp[c, h + 1, q]
                t21 = xp[c, h + 2, q + 1] - xp[c, h + 1, q + 1]
                t22 = xp[c, h + 2, q + 2] - xp[c, h + 1, q + 2]
                t23 = xp[c, h + 2, q + 3] - xp[c, h + 1, q + 3]
                t30 = xp[c, h + 1, q] - xp[c, h + 3, q]
                t31 = xp[c, h + 1, q + 1] - xp[c, h + 3, q + 1]
                t32 = xp[c, h + 1, q + 2] - xp[c, h + 3, q + 2]
                t33 = xp[c, h + 1, q + 3] - xp[c, h + 3, q + 3]
                # V = t B, row by row
                V[0, cv, col] = t00 - t02
                V[1, cv, col] = t01 + t02
                V[2, cv, col] = t02 - t01
                V[3, cv, col] = t01 - t03
                V[4, cv, col] = t10 - t12
                V[5, cv, col] = t11 + t12
                V[6, cv, col] = t12 - t11
                V[7, cv, col] = t11 - t13
                V[8, cv, col] = t20 - t22
                V[9, cv, col] = t21 + t22
                V[10, cv, col] = t22 - t21
                V[11, cv, col] = t21 - t23
                V[12, cv, col] = t30 - t32
                V[13, cv, col] = t31 + t32
                V[14, cv, col] = t32 - t31
                V[15, cv, col] = t31 - t33


@njit(cache=True, nogil=True)
def _output_transform_loops(M, col0, out, bias, r0, r1, TW, turn):
    """out[f, 2r + i, 2s + j] = (A^T m A)[i, j] + bias[f], m = M[:, f, col0 + tile], for tile
    rows r0 <= r < r1 of one image out (F, OH, OW); outputs past its edge (odd sizes) are
    dropped. turn: write the image turned by 180 degrees, out[f, OH-1-h, OW-1-w] for (h, w)
    (the backward pass)."""
    F, OH, OW = out.shape
    step = -1 if turn else 1  # along a row of out
    for f in range(F):
        for r in range(r0, r1):
            for s in range(TW):
                col = col0 + (r - r0) * TW + s
                # u = A^T m: two rows of four
                u00 = M[0, f, col] + M[4, f, col] + M[8, f, col]
                u01 = M[1, f, col] + M[5, f, col] + M[9, f, col]
                u02 = M[2, f, col] + M[6, f, col] + M[10, f, col]
                u03 = M[3, f, col] + M[7, f, col] + M[11, f, col]
                u10 = M[4, f, col] - M[8, f, col] - M[12, f, col]
                u11 = M[5, f, col] - M[9, f, col] - M[13, f, col]
                u12 = M[6, f, col] - M[10, f, col] - M[14, f, col]
                u13 = M[7, f, col] - M[11, f, col] - M[15, f, col]
                i, j = 2 * r, 2 * s  # y = u A, written at rows i, i+1 and columns j, j+1
                row = OH - 1 - i if turn else i
                q = OW - 1 - j if turn else j
                out[f, row, q] = u00 + u01 + u02 + bias[f]
                if j + 1 < OW:
                    out[f, row, q + step] = u01 - u02 - u03 + bias[f]
                if i + 1 < OH:
                    out[f, row + step, q] = u10 + u11 + u12 + bias[f]
                    if j + 1 < OW:
                        out[f, row + step, q + step] = u11 - u12 - u13 + bias[f]


def conv3x3(x, w, b, padding):
    """See conv3x3_numpy: the same convolution, with w's transform U (16, F, C) cached."""
    x = np.ascontiguousarray(x)
    return convolve(x, cached_U(w), allocator.bias_vector(b, w.shape[0], x.dtype), padding, _F2)


def conv3x3_backward_input(grad_out, w, padding):
    """See conv3x3_backward_input_numpy and ``backward_input``."""
    return backward_input(grad_out, w, padding, _F2, "F2", GG, cached_U)


# The input gradient of a layer is the convolution of grad_out with its filters turned by 180
# degrees, channel axes swapped (backward_numpy). Two ways to run it through ``convolve``:
# - with those filters' own transform, cached beside the forward's: grad_out is read as it is;
# - with the forward's U read transposed, turning grad_out on the way in and the result on
#   the way out: no second U in memory, but reversed reads and writes that cost, measured on
#   the small net's layers at batch 50, 20-35% of the layer's time.
# The first up to this many bytes of U per layer: every layer of the small net, ResNet-18's
# up to 128 channels, VGG16's up to conv2_2 (4 MB more in all). Not the larger ones: at 16 MB
# VGG16's peak memory grew by 40 MB, past the 1.3 GB it is held to (BENCHMARKS.md).
BACKWARD_FILTERS_MAX_BYTES = 4 << 20


def backward_input(grad_out, w, padding, tiles, kind, GG, cached_U):
    """grad_out (N, F, OH, OW), w (F, C, 3, 3) -> grad_x (N, C, H, W) through ``convolve``
    with output blocks ``tiles``: with the turned filters' transform (GG) cached under
    ``kind``, or, for layers whose U is larger than BACKWARD_FILTERS_MAX_BYTES, the forward's
    ``cached_U(w)`` read transposed and grad_out turned."""
    grad_out = np.ascontiguousarray(grad_out)
    zeros = allocator.bias_vector(None, w.shape[1], grad_out.dtype)
    back_padding = (2 - padding[0], 2 - padding[1])
    if len(GG) * (w.size // 9) * w.itemsize <= BACKWARD_FILTERS_MAX_BYTES:
        flipped = cached_filters(w, kind + " backward", lambda w: filter_transform(
            w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), GG))  # (T*T, C, F)
        return convolve(grad_out, flipped, zeros, back_padding, tiles)
    U_swapped = cached_U(w).transpose(0, 2, 1)  # (T*T, C, F), a view
    return convolve(grad_out, U_swapped, zeros, back_padding, tiles, turn=True)


# ----------------------------------------------------------------------------- the driver

class Tiles:
    """What the driver needs to know about one Winograd size: output block m, its loops.

    ``input_transform(xp, V, c0, col0, TW)`` and ``output_transform(M, col0, out, bias, r0,
    r1, TW, turn)`` have the signatures of this module's loops."""

    def __init__(self, m, input_transform, output_transform):
        self.m, self.T = m, m + 2  # m x m outputs from a T x T tile
        self.input_transform, self.output_transform = input_transform, output_transform


_F2 = Tiles(2, _input_transform_loops, _output_transform_loops)

# A band of tiles goes through input transform, GEMM and output transform before the next,
# its V and M ideally still in L2 (BAND_BYTES). It has at least MIN_BAND_COLUMNS tiles for an
# efficient GEMM, and at least 2 F C / (C + F), so that reading U (T*T*F*C) once per band
# costs at most half of the band's own V and M traffic (T*T*(C+F) per tile). Measured, one
# thread: the small net's 64->64 at 32x32, batch 50, 67 ms with 64-tile bands, 85 with 192;
# VGG16's 256->256 at 56x56, 35 ms with 256 tiles, 39 with 64.
MIN_BAND_COLUMNS = 64
BAND_BYTES = 1 << 20


def _planes(name, T2, rows, cols, dtype):
    """(T2, rows, cols) scratch whose planes start 16 elements (a float32 cache line) apart
    beyond their size: the T2 planes are written (V) or read (M) at once, tile by tile, and
    planes a power of two bytes apart fall into the same L1 cache sets and evict each other
    (10x slower, measured)."""
    buffer = allocator.scratch(name, (T2, rows * cols + 16), dtype)[:, :rows * cols]
    return buffer.reshape(T2, rows, cols)  # (T2, rows, cols), a view


def convolve(x, U, bias, padding, tiles, turn=False):
    """x: (N, C, H, W), U: (T*T, F, C), bias: (F,) -> (N, F, H + 2ph - 2, W + 2pw - 2): the
    Winograd convolution with output blocks of tiles.m, threaded. turn: of x turned by 180
    degrees, and the result turned back (the backward pass).

    Two schedules:
    - "whole layer", when the transformed filters outweigh the tiles (F*C > (C+F)*tiles, deep
      layers on small images): every thread transforms some input channels of every tile,
      then multiplies and transforms back some output channels, so each thread reads only
      its share of U, once.
    - "bands" otherwise: pieces of tiles (bands of tile rows of one image, or several whole
      images; sizes: see MIN_BAND_COLUMNS), each transformed, multiplied and transformed back
      by one thread while its V and M are still in cache.
    """
    N, C, H, W = x.shape
    F = U.shape[1]
    m = tiles.m
    ph, pw = padding
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    TH, TW = -(-OH // m), -(-OW // m)  # tiles per column and per row
    out = np.empty((N, F, OH, OW), dtype=x.dtype)
    n_threads = threads.n_threads(N * F * C * 9 * OH * OW, threads.PARALLEL_MIN_MACS)
    with threads.parallel(n_threads):
        if F * C > (C + F) * N * TH * TW:
            _whole_layer(x, U, bias, padding, tiles, out, n_threads, turn)
        else:
            _bands(x, U, bias, padding, tiles, out, n_threads, turn)
    return out


def _whole_layer(x, U, bias, padding, tiles, out, n_threads, turn):
    N, C, H, W = x.shape
    F = U.shape[1]
    m, T2 = tiles.m, tiles.T * tiles.T
    ph, pw = padding
    TH, TW = -(-out.shape[2] // m), -(-out.shape[3] // m)
    per_image = TH * TW
    cols = N * per_image
    V = _planes("winograd_in", T2, C, cols, x.dtype)  # (T2, C, cols), shared by the threads

    def transform_channels(chunk):
        c0, c1 = chunk
        xp = allocator.scratch("winograd_padded", (c1 - c0, m * TH + 2, m * TW + 2), x.dtype)
        for n in range(N):
            pad_loops(x[n, c0:c1], xp, ph, pw, 0, turn)
            tiles.input_transform(xp, V, c0, n * per_image, TW)

    def multiply_filters(chunk):
        f0, f1 = chunk
        M = _planes("winograd_out", T2, f1 - f0, cols, x.dtype)  # (T2, f1-f0, cols)
        np.matmul(U[:, f0:f1], V, out=M)  # T2 BLAS calls: (f1-f0, C) @ (C, cols)
        for n in range(N):
            tiles.output_transform(M, n * per_image, out[n, f0:f1], bias[f0:f1], 0, TH, TW,
                                   turn)

    threads.run_chunks(transform_channels, threads.split(C, n_threads))
    threads.run_chunks(multiply_filters, threads.split(F, n_threads))


def _band_tasks(N, TH, TW, columns, n_threads):
    """The pieces of the "bands" schedule: [(n0, n1, r0, r1)], images n0 <= n < n1, tile rows
    r0 <= r < r1, each about ``columns`` tiles, in an order that ``threads.split`` cuts into
    equal shares of work."""
    rows = min(TH, -(-columns // TW))  # tile rows per piece
    if rows == TH:  # whole images: group them, but leave every thread a piece
        per_piece = max(1, min(columns // (TH * TW), -(-N // n_threads)))
        tasks = [(n0, min(N, n0 + per_piece), 0, TH) for n0 in range(0, N, per_piece)]
        if len(tasks) >= n_threads:
            return tasks
        rows = -(-TH // -(-n_threads // N))  # fewer images than threads: cut them into bands
    # Bands of at most `rows` tile rows. With fewer images than threads, each image's rows
    # are first shared out evenly, one share per thread, then cut: 14 tile rows in bands of
    # 5 (ResNet's 56x56 layers at batch 1) would leave one thread two bands and the other
    # one (10 rows against 4); as 4+3 and 4+3 the threads finish together.
    shares = threads.split(TH, n_threads) if N < n_threads else [(0, TH)]
    return [(n, n + 1, s0 + b0, s0 + b1) for n in range(N) for s0, s1 in shares
            for b0, b1 in threads.split(s1 - s0, -(-(s1 - s0) // rows))]


def _bands(x, U, bias, padding, tiles, out, n_threads, turn):
    N, C, H, W = x.shape
    F = U.shape[1]
    m, T2 = tiles.m, tiles.T * tiles.T
    ph, pw = padding
    TH, TW = -(-out.shape[2] // m), -(-out.shape[3] // m)
    column_bytes = T2 * (C + F) * x.itemsize  # V and M of one tile
    columns = max(MIN_BAND_COLUMNS, BAND_BYTES // column_bytes, 2 * F * C // (C + F))
    tasks = _band_tasks(N, TH, TW, columns, n_threads)

    def work(chunk):
        for n0, n1, r0, r1 in tasks[chunk[0]:chunk[1]]:
            per_image = (r1 - r0) * TW
            cols = (n1 - n0) * per_image
            V = _planes("winograd_in", T2, C, cols, x.dtype)  # (T2, C, cols)
            M = _planes("winograd_out", T2, F, cols, x.dtype)  # (T2, F, cols)
            xp = allocator.scratch("winograd_padded", (C, m * (r1 - r0) + 2, m * TW + 2), x.dtype)
            for n in range(n0, n1):
                pad_loops(x[n], xp, ph, pw, m * r0, turn)  # the padded rows this band reads
                tiles.input_transform(xp, V, 0, (n - n0) * per_image, TW)
            np.matmul(U, V, out=M)  # T2 BLAS calls: (F, C) @ (C, cols)
            for n in range(n0, n1):
                tiles.output_transform(M, (n - n0) * per_image, out[n], bias, r0, r1, TW, turn)

    threads.run_chunks(work, threads.split(len(tasks), n_threads))
