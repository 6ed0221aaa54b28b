"""3x3, stride-1 convolutions with 2.25x fewer multiplications: Winograd's F(2x2, 3x3).

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks". Every VGG layer is a
3x3 convolution with stride 1, and their multiplications are most of a pass. Cut the output
into 2x2 blocks; each block depends on one 4x4 tile d of the padded input. In one dimension,
two outputs of a 3-tap filter g from four inputs take 4 multiplications instead of 6:

    y = A^T [ (G g) * (B^T d) ]            (* elementwise)

and in two dimensions, Y = A^T [ (G g G^T) * (B^T d B) ] A: 16 multiplications per block,
channel and filter instead of 36. Summed over input channels, the 16 elementwise products
become 16 matrix products, one per position (a, b) of the 4x4 transformed tile:

    M[ab] (F, tiles) = U[ab] (F, C) @ V[ab] (C, tiles)

with U = G g G^T per (filter, channel) and V = B^T d B per (channel, tile). The transforms
only add and subtract (and halve, in G); in float32 the error relative to the largest output
was measured comparable to im2col's (3.4 vs 2.8 machine epsilons with 128 channels), and the
tests compare with the reference loops.

The gradient with respect to the input of a stride-1 convolution is itself a stride-1
convolution, of grad_out with the kernels flipped in space and their channel axes swapped,
with padding 2 - p, so the backward pass runs the same code (``backward_weights``).

- ``forward_weights(w)`` / ``backward_weights(w)``: U, (16, F, C) and (16, C, F)
- ``conv3x3(x, U, bias, padding)``: the driver, threaded like fast.py's im2col path
- ``conv3x3_numpy(x, w, b, padding)``: the same algorithm in a few lines of NumPy (readable
  and slow), tested equal to the reference convolution
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["BT", "G", "AT", "forward_weights", "backward_weights", "conv3x3", "conv3x3_numpy",
           "supported"]

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


def supported(kernel, stride, padding) -> bool:
    """True if F(2x2, 3x3) applies, forward and backward: 3x3, stride 1, padding <= 2."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2


# (G kron G)[4a + b, 3k + l] = G[a, k] G[b, l], so that vec(G g G^T) = GG @ vec(g)
GG = np.kron(G, G)  # (16, 9)


def forward_weights(w):
    """w: (F, C, 3, 3) -> U: (16, F, C), U[4a + b, f, c] = (G w[f, c] G^T)[a, b].

    All F*C transforms are one matrix product, GG (16, 9) @ w as (9, F*C)."""
    F, C = w.shape[:2]
    w9 = np.asarray(w).reshape(F * C, 9)
    return (GG.astype(w9.dtype) @ w9.T).reshape(16, F, C)


def backward_weights(w):
    """w: (F, C, 3, 3) -> U of the flipped, channel-swapped kernels, (16, C, F).

    w_back[c, f, k, l] = w[f, c, 2 - k, 2 - l], and flipping a 3x3 kernel reverses its 9
    entries, so U_back = GG with its columns reversed @ w; returned as a transposed view."""
    F, C = w.shape[:2]
    w9 = np.asarray(w).reshape(F * C, 9)
    return (GG[:, ::-1].astype(w9.dtype) @ w9.T).reshape(16, F, C).transpose(0, 2, 1)


def conv3x3_numpy(x, w, b, padding):
    """The algorithm in NumPy. x: (N, C, H, W), w: (F, C, 3, 3) -> (N, F, H+2ph-2, W+2pw-2)."""
    N, C, H, W = x.shape
    F = w.shape[0]
    (ph, pw) = padding
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    TH, TW = -(-OH // 2), -(-OW // 2)  # tiles per column and row (the last may stick out)
    xp = np.zeros((N, C, 2 * TH + 2, 2 * TW + 2), dtype=x.dtype)  # padded; room for the last tile
    xp[:, :, ph:ph + H, pw:pw + W] = x
    # d[n, c, r, s] is the 4x4 tile whose outputs are rows 2r, 2r+1 and columns 2s, 2s+1
    d = np.lib.stride_tricks.sliding_window_view(xp, (4, 4), axis=(2, 3))[:, :, ::2, ::2]
    V = np.einsum("ai,ncrsij,bj->abcnrs", BT, d, BT)  # (4, 4, C, N, TH, TW)
    U = forward_weights(w).reshape(4, 4, F, C)
    M = np.einsum("abfc,abcnrs->abfnrs", U, V)  # the 16 products, summed over channels
    Y = np.einsum("ia,abfnrs,jb->nfrisj", AT, M, AT)  # (N, F, TH, 2, TW, 2)
    out = Y.reshape(N, F, 2 * TH, 2 * TW)[:, :, :OH, :OW]
    if b is not None:
        out = out + b.reshape(1, F, 1, 1)
    return np.ascontiguousarray(out, dtype=x.dtype)


# ----------------------------------------------------------------------------- compiled loops

@njit(cache=True, nogil=True)
def _pad_loops(x, xp, ph, pw, h0):
    """xp[c, i, j] = x_pad[c, h0 + i, j], x_pad being x[c] placed at (ph, pw) in zeros: the
    padded rows h0 <= h < h0 + xp.shape[1] that a band of tiles reads, without bounds checks
    in the transform below."""
    C, H, W = x.shape
    for c in range(C):
        for i in range(xp.shape[1]):
            h = h0 + i - ph  # the row of x, if any
            for j in range(xp.shape[2]):
                w = j - pw
                xp[c, i, j] = x[c, h, w] if 0 <= h < H and 0 <= w < W else 0.0


@njit(cache=True, nogil=True)
def _input_transform_loops(xp, V, col0, TW):
    """V[4a + b, c, col0 + r*TW + s] = (B^T d B)[a, b], d = xp[c, 2r:2r+4, 2s:2s+4], for
    every tile of a band of padded rows xp (C, 2*rows + 2, 2*TW + 2)."""
    C = xp.shape[0]
    for c in range(C):
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
                V[0, c, col] = t00 - t02
                V[1, c, col] = t01 + t02
                V[2, c, col] = t02 - t01
                V[3, c, col] = t01 - t03
                V[4, c, col] = t10 - t12
                V[5, c, col] = t11 + t12
                V[6, c, col] = t12 - t11
                V[7, c, col] = t11 - t13
                V[8, c, col] = t20 - t22
                V[9, c, col] = t21 + t22
                V[10, c, col] = t22 - t21
                V[11, c, col] = t21 - t23
                V[12, c, col] = t30 - t32
                V[13, c, col] = t31 + t32
                V[14, c, col] = t32 - t31
                V[15, c, col] = t31 - t33


@njit(cache=True, nogil=True)
def _output_transform_loops(M, col0, out, bias, r0, r1, TW):
    """out[f, 2r + i, 2s + j] = (A^T m A)[i, j] + bias[f], m = M[:, f, col0 + tile], for tile
    rows r0 <= r < r1 of one image out (F, OH, OW); outputs past its edge (odd sizes) are
    dropped."""
    F, OH, OW = out.shape
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
                i, j = 2 * r, 2 * s  # y = u A
                out[f, i, j] = u00 + u01 + u02 + bias[f]
                if j + 1 < OW:
                    out[f, i, j + 1] = u01 - u02 - u03 + bias[f]
                if i + 1 < OH:
                    out[f, i + 1, j] = u10 + u11 + u12 + bias[f]
                    if j + 1 < OW:
                        out[f, i + 1, j + 1] = u11 - u12 - u13 + bias[f]


# ----------------------------------------------------------------------------- the driver

def conv3x3(x, U, bias, padding, scratch, run_tasks, band_bytes, min_pieces=1):
    """x: (N, C, H, W), U: (16, F, C) from forward_weights/backward_weights, bias: (F,)
    -> (N, F, H + 2ph - 2, W + 2pw - 2).

    Work is cut into pieces of whole images (small images: several per piece, so that each
    of the 16 GEMMs gets enough columns) or bands of tile rows of one image (large images).
    Per piece: transform the input tiles, 16 GEMMs, transform back. ``scratch(name, shape,
    dtype)`` gives per-thread buffers and ``run_tasks(tasks, work)`` spreads the pieces over
    the threads (both from fast.py); there are at least ``min_pieces`` pieces if N allows,
    or bands of one image.
    """
    N, C, H, W = x.shape
    F = U.shape[1]
    ph, pw = padding
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    TH, TW = -(-OH // 2), -(-OW // 2)
    out = np.empty((N, F, OH, OW), dtype=x.dtype)
    row_bytes = 16 * (C + F) * TW * x.itemsize  # V and M for one row of tiles
    rows = max(1, min(TH, band_bytes // row_bytes))  # tile rows per piece
    if rows == TH:  # whole images fit: group them, but leave every thread a piece
        per_piece = max(1, min(band_bytes // (row_bytes * TH), -(-N // min_pieces)))
        tasks = [(n0, min(N, n0 + per_piece), 0, TH) for n0 in range(0, N, per_piece)]
        if len(tasks) < min_pieces:  # fewer images than pieces wanted: cut them into bands
            rows = -(-TH // -(-min_pieces // N))
    if rows < TH:
        tasks = [(n, n + 1, r0, min(TH, r0 + rows)) for n in range(N) for r0 in range(0, TH, rows)]

    def work(n0, n1, r0, r1):
        tiles = (r1 - r0) * TW  # per image
        cols = (n1 - n0) * tiles
        # The 16 planes are written (V) and read (M) at once, tile by tile. Planes a power of
        # two bytes apart would fall into the same L1 cache sets and evict each other (10x
        # slower, measured), so each plane starts 16 elements (a float32 cache line) later.
        V = scratch("winograd_in", (16, C * cols + 16), x.dtype)[:, :C * cols]
        V = V.reshape(16, C, cols)  # (16, C, cols), a view
        M = scratch("winograd_out", (16, F * cols + 16), x.dtype)[:, :F * cols]
        M = M.reshape(16, F, cols)  # (16, F, cols), a view
        xp = scratch("winograd_padded", (C, 2 * (r1 - r0) + 2, 2 * TW + 2), x.dtype)
        for n in range(n0, n1):
            _pad_loops(x[n], xp, ph, pw, 2 * r0)  # the padded rows this band reads
            _input_transform_loops(xp, V, (n - n0) * tiles, TW)
        np.matmul(U, V, out=M)  # 16 BLAS calls: (F, C) @ (C, cols)
        for n in range(n0, n1):
            _output_transform_loops(M, (n - n0) * tiles, out[n], bias, r0, r1, TW)

    run_tasks(tasks, work)
    return out
