"""Winograd's F(4x4, 3x3): 3x3 stride-1 convolutions with 4x fewer multiplications.

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks", section 4. The
idea, the driver and the filter cache are ``winograd.py``'s; here each 4x4 block of outputs
comes from a 6x6 input tile, through 36 elementwise products per channel instead of the 144
multiplications of the direct convolution (F(2x2): 16 for 36).

The matrices are Toom-Cook's: A^T evaluates at six points, G interpolates there (divided by
the product of the points' differences), B^T is what makes A^T [(G g) * (B^T d)] the
correlation. Lavin & Gray use the points 0, 1, -1, 2, -2 and infinity; here 0, 1, -1, 1/2,
-2 and infinity, which Barabasz et al. (2020, "Error analysis and improving the accuracy of
Winograd convolution for deep neural networks") found more accurate: measured here, a third
of the float32 error on VGG-sized layers for a few more additions in B^T. Rows and columns
are scaled by powers of two (exact) so that B^T and A^T hold small integers:

    B^T (6, 6): input tiles      G (6, 3): filters      A^T (4, 6): back to outputs

What a user gives up (measured; ``tests/test_winograd.py`` holds the bound): the float32
GEMMs sum large transformed values whose rounding A^T then amplifies. On random data with
16-512 input channels, the largest error of a float32 layer output, relative to the largest
output, is 10-45 float32 epsilons (1e-6 to 5e-6; tested bound 100; F(2x2) and im2col <= 6),
forward and backward alike; in RMS 5-17 epsilons (F(2x2) 1-4). That is far below what
changes a saliency map, but it is not im2col's rounding: it can flip which of two nearly
equal inputs wins a max-pool downstream, or whether a ReLU input within rounding of 0 passes
the gradient, moving a little of the gradient along another path (on the shipped model's 20
samples, 17 float32 gradients agree with PyTorch's to ~1e-6 and three by 0.4-5.2%; PyTorch's
float32 is itself 0.7% off float64 on one of them; ``tests/test_shipped_model.py`` checks
that every difference from float64 comes from such a tie).
``MINICNN_WINOGRAD=2`` (F(2x2) only) or ``MINICNN_WINOGRAD=off`` (im2col) trade speed for
it. In float64 the error stays ~1e-14 relative (tested against PyTorch at 1e-9).

- ``conv3x3(x, w, b, padding)``: the convolution, threaded, w's transform cached
- ``conv3x3_backward_input(grad_out, w, padding)``: its input gradient
- ``conv3x3_numpy`` / ``conv3x3_backward_input_numpy``: the same algorithm in NumPy, with
  the same signatures
"""
from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.engine.kernels.fast import allocator, winograd

__all__ = ["BT", "G", "AT", "conv3x3", "conv3x3_backward_input", "conv3x3_numpy",
           "conv3x3_backward_input_numpy"]

# columns of A^T and rows of G, B^T: the points 0, 1, -1, 1/2, -2, infinity
BT = np.array([[2, -3, -4, 3, 2, 0],
               [0, -2, 1, 5, 2, 0],
               [0, 2, -5, 1, 2, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 1, -2, -1, 2, 0],
               [0, 2, -3, -4, 3, 2]], dtype=np.float64)  # (6, 6): input tile transform B^T
G = np.array([[1 / 2, 0, 0],
              [1 / 6, 1 / 6, 1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [-2 / 15, -1 / 15, -1 / 30],
              [1 / 30, -1 / 15, 2 / 15],
              [0, 0, 1 / 2]], dtype=np.float64)  # (6, 3): filter transform
AT = np.array([[1, 1, 1, 8, 1, 0],
               [0, 1, -1, 4, -2, 0],
               [0, 1, 1, 2, 4, 0],
               [0, 1, -1, 1, -8, 1]], dtype=np.float64)  # (4, 6): output transform A^T

GG = np.kron(G, G)  # (36, 9): vec(G g G^T) = GG @ vec(g)


def conv3x3_numpy(x, w, b, padding):
    """F(4x4, 3x3) in NumPy. x: (N, C, H, W), w: (F, C, 3, 3), b: (F,) or None
    -> (N, F, H+2ph-2, W+2pw-2)."""
    return winograd.convolve_numpy(x, w, b, padding, BT, G, AT)


def conv3x3_backward_input_numpy(grad_out, w, padding):
    """F(4x4)'s input gradient in NumPy (see winograd.backward_numpy): grad_out
    (N, F, OH, OW), w (F, C, 3, 3) -> (N, C, H, W)."""
    return winograd.backward_numpy(grad_out, w, padding, conv3x3_numpy)


# ----------------------------------------------------------------------------- compiled loops
# The 2-D transforms are a 1-D transform down the columns of a tile, then along its rows. The
# two 1-D transforms are written out once each, with the sums they share. Their constants are
# float32 so that float32 data is computed in float32 (a float64 constant would promote it);
# small integers are exact in either type.

@njit(cache=True, nogil=True)
def _bt6(d0, d1, d2, d3, d4, d5):
    """B^T @ (d0, ..., d5): six values of one line of an input tile -> six."""
    two, three, four, five = np.float32(2), np.float32(3), np.float32(4), np.float32(5)
    p, q = d3 - d1, d4 - d2
    return (two * (d0 + d4) + three * p - four * d2,
            two * (d4 - d1) + d2 + five * d3,
            two * (d1 + d4) - five * d2 + d3,
            two * p + q,
            two * q - p,
            two * (d1 + d5) + three * q - four * d3)


@njit(cache=True, nogil=True)
def _at6(m0, m1, m2, m3, m4, m5):
    """A^T @ (m0, ..., m5): six products along one line of a tile -> four outputs."""
    two, four, eight = np.float32(2), np.float32(4), np.float32(8)
    a, b = m1 + m2, m1 - m2
    return (m0 + a + eight * m3 + m4,
            b + four * m3 - two * m4,
            a + two * m3 + four * m4,
            b + m3 - eight * m4 + m5)


@njit(cache=True, nogil=True)
def _input_transform_loops(xp, V, c0, col0, TW, t):
    """V[6a + b, c0 + c, col0 + r*TW + s] = (B^T d B)[a, b], d = xp[c, 4r:4r+6, 4s:4s+6], for
    every tile of a band of padded rows xp (C, 4*rows + 2, 4*TW + 2); t: (6, 4*TW + 2) scratch."""
    C, height, width = xp.shape
    for c in range(C):
        cv = c0 + c
        for r in range((height - 2) // 4):
            h = 4 * r
            for q in range(width):  # t = B^T d down every column of this row of tiles at once
                t[0, q], t[1, q], t[2, q], t[3, q], t[4, q], t[5, q] = _bt6(
                    xp[c, h, q], xp[c, h + 1, q], xp[c, h + 2, q], xp[c, h + 3, q],
                    xp[c, h + 4, q], xp[c, h + 5, q])
            col = col0 + r * TW
            for k in range(6):  # V = t B: along row k of each tile
                p = 6 * k
                for s in range(TW):
                    q = 4 * s
                    v0, v1, v2, v3, v4, v5 = _bt6(t[k, q], t[k, q + 1], t[k, q + 2],
                                                  t[k, q + 3], t[k, q + 4], t[k, q + 5])
                    V[p, cv, col + s] = v0
                    V[p + 1, cv, col + s] = v1
                    V[p + 2, cv, col + s] = v2
                    V[p + 3, cv, col + s] = v3
                    V[p + 4, cv, col + s] = v4
                    V[p + 5, cv, col + s] = v5


@njit(cache=True, nogil=True)
def _output_transform_loops(M, col0, out, bias, r0, r1, TW, turn, u):
    """out[f, 4r + i, 4s + j] = (A^T m A)[i, j] + bias[f], m = M[:, f, col0 + tile], for tile
    rows r0 <= r < r1 of one image out (F, OH, OW); outputs past its edge are dropped.
    turn: write the image turned by 180 degrees, out[f, OH-1-h, OW-1-w] for (h, w) (the
    backward pass). u: (4, 6, TW) scratch."""
    F, OH, OW = out.shape
    step = -1 if turn else 1  # along a row of out
    for f in range(F):
        for r in range(r0, r1):
            col = col0 + (r - r0) * TW
            for l in range(6):  # u = A^T m: down column l of each tile of this row
                for s in range(TW):
                    u[0, l, s], u[1, l, s], u[2, l, s], u[3, l, s] = _at6(
                        M[l, f, col + s], M[6 + l, f, col + s], M[12 + l, f, col + s],
                        M[18 + l, f, col + s], M[24 + l, f, col + s], M[30 + l, f, col + s])
            for i in range(min(4, OH - 4 * r)):  # y = u A: along row i of each tile
                h = OH - 1 - (4 * r + i) if turn else 4 * r + i
                for s in range(TW):
                    y0, y1, y2, y3 = _at6(u[i, 0, s], u[i, 1, s], u[i, 2, s], u[i, 3, s],
                                          u[i, 4, s], u[i, 5, s])
                    j = 4 * s
                    q = OW - 1 - j if turn else j  # where y0 goes; y1.. follow by step
                    if j + 4 <= OW:
                        out[f, h, q] = y0 + bias[f]
                        out[f, h, q + step] = y1 + bias[f]
                        out[f, h, q + 2 * step] = y2 + bias[f]
                        out[f, h, q + 3 * step] = y3 + bias[f]
                    else:  # the last tile of a row whose width is not a multiple of 4
                        out[f, h, q] = y0 + bias[f]
                        if j + 1 < OW:
                            out[f, h, q + step] = y1 + bias[f]
                        if j + 2 < OW:
                            out[f, h, q + 2 * step] = y2 + bias[f]


def _input_transform(xp, V, c0, col0, TW):
    t = allocator.scratch("winograd4_columns", (6, xp.shape[2]), xp.dtype)
    _input_transform_loops(xp, V, c0, col0, TW, t)


def _output_transform(M, col0, out, bias, r0, r1, TW, turn):
    u = allocator.scratch("winograd4_rows", (4, 6, TW), M.dtype)
    _output_transform_loops(M, col0, out, bias, r0, r1, TW, turn, u)


_F4 = winograd.Tiles(4, _input_transform, _output_transform)


def cached_U(w):
    """The cached U (36, F, C) of w (F, C, 3, 3)."""
    return winograd.cached_filters(w, "F4", lambda w: winograd.filter_transform(w, GG))


def conv3x3(x, w, b, padding):
    """See conv3x3_numpy: the same convolution, with w's transform U (36, F, C) cached."""
    x = np.ascontiguousarray(x)
    bias = allocator.bias_vector(b, w.shape[0], x.dtype)
    return winograd.convolve(x, cached_U(w), bias, padding, _F4)


def conv3x3_backward_input(grad_out, w, padding):
    """See conv3x3_backward_input_numpy and ``winograd.backward_input``."""
    return winograd.backward_input(grad_out, w, padding, _F4, "F4", GG, cached_U)
