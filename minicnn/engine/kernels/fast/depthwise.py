"""Depthwise convolutions (groups = C): direct loops that read each channel once.

A depthwise layer (MobileNet, EfficientNet) gives each channel its own small filter (or
F // C of them): 9 or 25 multiply-adds per output, too few for im2col + GEMM, which would
spend its time building columns and multiplying matrices 9 rows deep. The loops here take
one channel at a time: copy its plane, padded, into a per-thread scratch that stays in
cache, then make every output of the channel from that copy with a few long vector loops.
The input gradient is the same loop transposed, written as a gather: each input's gradient
is summed in a cached buffer and stored once.

The layout that makes every tap one long contiguous loop, for any stride and dilation:

- Phases. With strides (sh, sw), the padded plane (Hp, Wp) is stored as sh*sw sub-planes:
  padded position (r, c) goes to sub-plane (r % sh, c % sw), at row r // sh and column
  c // sw of a (Hq, Wq) grid, Hq = ceil(Hp / sh), Wq = ceil(Wp / sw). Output (i, j) reads,
  through tap (kh, kw), position (i*sh + kh*dh, j*sw + kw*dw): in sub-plane
  ((kh*dh) % sh, (kw*dw) % sw), row i + (kh*dh) // sh, column j + (kw*dw) // sw. So within
  a tap, neighbouring outputs read neighbouring memory, whatever the stride.
- Wide rows. Outputs are computed Wq to a row instead of OW (the last Wq - OW of each row
  are junk, dropped afterwards, as in conv.py's stride-1 lowering), so that output t =
  i*Wq + j reads, through tap k, element off[k] + t of the flat sub-planes: each tap is
  ONE loop over all outputs, at a fixed offset off[k].

The input gradient reverses it: the gradient of sub-plane position (u, v) gathers, from the
taps k that read that sub-plane, w_k * grad_out[u - bh_k, v - bw_k] (bh_k = (kh*dh) // sh,
bw_k likewise), read from a copy of grad_out with zero margins of BH rows above and BW
columns to the left (the largest bh and bw), rows Wg = Wq + BW wide: again one loop per tap,
at a fixed offset. Then each sub-plane is written back to its positions of grad_x, without
the padding.

Work is cut by (image, range of channels) for minicnn's threads (``threads.py``); the loops
take plain ints and read-only inputs and weights (``allocator.read_only``), so each compiles
once per dtype.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
from numba import njit

from minicnn.engine.kernels import output_size
from minicnn.engine.kernels.fast import allocator
from minicnn.engine.kernels.fast import threads as thread_pool  # thresholds read per call
from minicnn.engine.kernels.fast.threads import n_threads, run_chunks, split

__all__ = ["conv2d_forward", "conv2d_backward_input"]

# Outputs per pass of the tap loops: the running sums (4 bytes each in float32) stay in the
# 32 KB level-1 cache while every tap adds to them.
SPAN = 2048
# Every loop over a span runs to a multiple of this many elements (junk past the end, in
# scratch): the compiled loop takes 32 float32 at a step (8 lanes, unrolled 4 times), then
# 8, then one at a time; a 5x5 layer's 7x7 map ran 10% faster without the last (measured).
STEP = 8

# Indices in the loops are unsigned (np.uint64): Numba then skips the check for negative
# indices (x[-1] is the last element) that it adds to every signed index, and which keeps
# the compiler from vectorising a loop that reads x[start + t]. Slices would avoid it too,
# but each slice costs a pair of atomic reference counts, more than a 7x7 row's arithmetic.


@njit(cache=True, nogil=True, inline="always")
def _round_up(n):
    """n rounded up to a multiple of STEP."""
    return -(-n // STEP) * STEP


@njit(cache=True, nogil=True, inline="always")
def _add_taps(dst, d0, n, src, s0, offs, coefs, k0, k1):
    """dst[d0 + t] += sum over k0 <= k < k1 of coefs[k] * src[s0 + offs[k] + t], t < n.

    Four taps per pass over dst, so its elements are loaded and stored once per four taps;
    dst, src: flat arrays, the other arguments ints >= 0."""
    d = np.uint64(d0)
    k = k0
    while k1 - k >= 4:
        a0, a1, a2, a3 = coefs[k], coefs[k + 1], coefs[k + 2], coefs[k + 3]
        o0, o1 = np.uint64(s0 + offs[k]), np.uint64(s0 + offs[k + 1])
        o2, o3 = np.uint64(s0 + offs[k + 2]), np.uint64(s0 + offs[k + 3])
        for t in range(n):
            u = np.uint64(t)
            dst[d + u] += (a0 * src[o0 + u] + a1 * src[o1 + u] + a2 * src[o2 + u]
                           + a3 * src[o3 + u])
        k += 4
    if k1 - k == 3:
        a0, a1, a2 = coefs[k], coefs[k + 1], coefs[k + 2]
        o0, o1 = np.uint64(s0 + offs[k]), np.uint64(s0 + offs[k + 1])
        o2 = np.uint64(s0 + offs[k + 2])
        for t in range(n):
            u = np.uint64(t)
            dst[d + u] += a0 * src[o0 + u] + a1 * src[o1 + u] + a2 * src[o2 + u]
    elif k1 - k == 2:
        a0, a1 = coefs[k], coefs[k + 1]
        o0, o1 = np.uint64(s0 + offs[k]), np.uint64(s0 + offs[k + 1])
        for t in range(n):
            u = np.uint64(t)
            dst[d + u] += a0 * src[o0 + u] + a1 * src[o1 + u]
    elif k1 - k == 1:
        a0, o0 = coefs[k], np.uint64(s0 + offs[k])
        for t in range(n):
            u = np.uint64(t)
            dst[d + u] += a0 * src[o0 + u]


# The two functions below move rows between the image and the phase layout. Each tests the
# stride once, outside its loop over rows: with the test inside, the compiled row loops ran
# 2-3x slower (measured). Pairs of columns (stride 2) go in one loop, which vectorises.

@njit(cache=True, nogil=True)
def _split_rows(x, c, xs, row0, plane, P, u0, u1, inside, sh, sw, ph, pw, Wq):
    """Rows of channel c of x (C, H, W) into their sw phases: input (h, col) with
    h = u*sh + P - ph, u0 <= u < u1, goes to xs[row0 + u*Wq + ((col + pw) % sw)*plane +
    (col + pw) // sw] (row0: where row phase P starts; plane: the distance between column
    phases). Phase p's input columns are [inside[p, 0], inside[p, 1]); the padding around
    them is not written."""
    W = x.shape[2]
    if sw == 1:
        for u in range(u0, u1):
            h, dst = u * sh + P - ph, np.uint64(row0 + u * Wq + pw)
            for t in range(W):
                xs[dst + np.uint64(t)] = x[c, h, t]
    elif sw == 2:
        e = pw % 2  # column e is the first in phase 0 (with an odd pw, column 0 is in phase 1)
        first, pairs, one = np.uint64(e), (W - e) // 2, np.uint64(1)
        for u in range(u0, u1):
            h, even = u * sh + P - ph, row0 + u * Wq + (e + pw) // 2
            if e == 1:
                xs[np.uint64(row0 + u * Wq + plane + pw // 2)] = x[c, h, 0]
            ev, od = np.uint64(even), np.uint64(even + plane)
            for t in range(pairs):
                v = np.uint64(t)
                xs[ev + v] = x[c, h, first + v + v]
                xs[od + v] = x[c, h, first + v + v + one]
            if (W - e) % 2:
                xs[np.uint64(row0 + u * Wq + (W - 1 + pw) // 2)] = x[c, h, W - 1]
    else:
        for u in range(u0, u1):
            h = u * sh + P - ph
            for p in range(sw):
                v_lo, v_hi = inside[p, 0], inside[p, 1]
                dst, src = np.uint64(row0 + u * Wq + p * plane + v_lo), v_lo * sw + p - pw
                for t in range(v_hi - v_lo):
                    xs[dst + np.uint64(t)] = x[c, h, np.uint64(src + t * sw)]


@njit(cache=True, nogil=True)
def _scatter_channel(x, c, xs, where):
    """Channel c of x (C, H, W) into the phase layout in one loop: x[c].flat[q] goes to
    xs[where[q]]. On short rows (7x7 maps, 14x14 with stride 2) this is twice as fast as
    _split_rows, whose row loops are too short to vectorise (measured)."""
    H, W = x.shape[1], x.shape[2]
    for h in range(H):
        row = np.uint64(h * W)
        for t in range(W):
            xs[where[row + np.uint64(t)]] = x[c, h, t]


@njit(cache=True, nogil=True)
def _gather_channel(acc, grad_x, c, where):
    """The inverse of _scatter_channel: grad_x[c].flat[q] = acc[where[q]]."""
    H, W = grad_x.shape[1], grad_x.shape[2]
    for h in range(H):
        row = np.uint64(h * W)
        for t in range(W):
            grad_x[c, h, t] = acc[where[row + np.uint64(t)]]


@njit(cache=True, nogil=True)
def _merge_rows(acc, plane, Wg, grad_x, c, P, u0, u1, inside, sh, sw, ph, pw):
    """The inverse of _split_rows for a band of rows u0 <= u < u1 of row phase P, read from
    acc (rows Wg long, from row u0 on; column phases plane apart): grad_x[c, h, col] =
    acc[(u - u0)*Wg + ((col + pw) % sw)*plane + (col + pw) // sw] for h = u*sh + P - ph."""
    W = grad_x.shape[2]
    if sw == 1:
        for u in range(u0, u1):
            h, src = u * sh + P - ph, np.uint64((u - u0) * Wg + pw)
            for t in range(W):
                grad_x[c, h, t] = acc[src + np.uint64(t)]
    elif sw == 2:
        e = pw % 2
        first, pairs, one = np.uint64(e), (W - e) // 2, np.uint64(1)
        for u in range(u0, u1):
            h, even = u * sh + P - ph, (u - u0) * Wg + (e + pw) // 2
            if e == 1:
                grad_x[c, h, 0] = acc[np.uint64((u - u0) * Wg + plane + pw // 2)]
            ev, od = np.uint64(even), np.uint64(even + plane)
            for t in range(pairs):
                v = np.uint64(t)
                grad_x[c, h, first + v + v] = acc[ev + v]
                grad_x[c, h, first + v + v + one] = acc[od + v]
            if (W - e) % 2:
                grad_x[c, h, W - 1] = acc[np.uint64((u - u0) * Wg + (W - 1 + pw) // 2)]
    else:
        for u in range(u0, u1):
            h = u * sh + P - ph
            for p in range(sw):
                v_lo, v_hi = inside[p, 0], inside[p, 1]
                src, dst = np.uint64((u - u0) * Wg + p * plane + v_lo), v_lo * sw + p - pw
                for t in range(v_hi - v_lo):
                    grad_x[c, h, np.uint64(dst + t * sw)] = acc[src + np.uint64(t)]


@njit(cache=True, nogil=True)
def _depthwise_forward_loops(x, w, bias, out, xs, wide, offs, rows_in, inside, where, c0, c1,
                             sh, sw, ph, pw, Hq, Wq):
    """Channels c0 <= c < c1 of ONE image. x (C, H, W); w (F, KH*KW) the filters, F // C
    per channel; bias (F,); out (F, OH, OW) written.

    Scratch: xs the channel's sub-planes (module docstring) and slack, zero on entry but
    where inputs go (the padding is the same for every channel, so the caller zeroes xs
    once, not each call); wide a band of rows of wide outputs (and room to round its length
    up to STEP). offs (KH*KW,): where tap k's inputs start in xs; rows_in (sh, 2) and
    inside (sw, 2): the rows and columns of each phase that hold inputs; where (H*W,) or
    empty: where each input goes in xs, for _scatter_channel."""
    C = x.shape[0]
    F, KK = w.shape
    M = F // C  # filters per channel
    OH, OW = out.shape[1], out.shape[2]
    plane = Hq * Wq
    rows = max(1, min(OH, (wide.shape[0] - STEP) // Wq))  # output rows per band
    for c in range(c0, c1):
        if where.shape[0]:  # the channel into its sub-planes
            _scatter_channel(x, c, xs, where)
        else:
            for P in range(sh):
                _split_rows(x, c, xs, P * sw * plane, plane, P, rows_in[P, 0], rows_in[P, 1],
                            inside, sh, sw, ph, pw, Wq)
        for f in range(c * M, (c + 1) * M):
            for i0 in range(0, OH, rows):
                i1 = min(OH, i0 + rows)
                n = _round_up((i1 - i0) * Wq)
                for t in range(n):
                    wide[t] = bias[f]
                _add_taps(wide, 0, n, xs, i0 * Wq, offs, w[f], 0, KK - 1)
                # the last tap on the way out, with the junk columns dropped: a pass fewer
                a, last = w[f, KK - 1], i0 * Wq + offs[KK - 1]
                for i in range(i0, i1):
                    src, tap = np.uint64((i - i0) * Wq), np.uint64(last + (i - i0) * Wq)
                    for j in range(OW):
                        u = np.uint64(j)
                        out[f, i, j] = wide[src + u] + a * xs[tap + u]


@njit(cache=True, nogil=True)
def _depthwise_backward_loops(g, w, grad_x, gs, acc, coefs, order, bounds, offs, rows_in,
                              inside, where, c0, c1, sh, sw, ph, pw, Hq, Wq, BH, BW):
    """Channels c0 <= c < c1 of ONE image. g (F, OH, OW) the output gradient; w (F, KH*KW);
    grad_x (C, H, W) written.

    Scratch: gs (M, L) the channel's M output gradients, flat, rows Wg = Wq + BW long, with
    zero margins (BH rows above, BW columns to the left, zeros after), zero on entry but
    where grad_out goes (as xs in the forward loops); acc (sw, L') a band of rows of the
    gradient of the sw sub-planes of one row phase (and room to round up to STEP);
    coefs (M, KH*KW). The taps order[bounds[s]:bounds[s+1]] read sub-plane s, tap order[k]
    from element offs[k] + t of gs[m] for the sub-plane's element t; rows_in and inside: as
    in the forward loops. where (H*W,), on maps with short rows: where each input's gradient
    is in acc, then (sh*sw, L'), all sub-planes in one band each, read by _gather_channel."""
    C = grad_x.shape[0]
    F, KK = w.shape
    M = F // C
    OH, OW = g.shape[1], g.shape[2]
    Wg = Wq + BW
    band = acc.shape[1]
    rows = max(1, min(Hq, (band - STEP) // Wg))
    flat = acc.reshape(acc.shape[0] * band)  # a view: phase p's band at p * band
    for c in range(c0, c1):
        for m in range(M):
            f = c * M + m
            for i in range(OH):
                row = np.uint64((i + BH) * Wg + BW)
                for j in range(OW):
                    gs[m, row + np.uint64(j)] = g[f, i, j]
            for k in range(KK):
                coefs[m, k] = w[f, order[k]]
        for P in range(sh):
            for u0 in range(rows_in[P, 0], rows_in[P, 1], rows):
                u1 = min(rows_in[P, 1], u0 + rows)
                n = _round_up((u1 - u0) * Wg)
                for p in range(sw):
                    s = P * sw + p  # the sub-plane
                    first = (s if where.shape[0] else p) * band  # where its band goes in acc
                    for t in range(n):
                        flat[np.uint64(first + t)] = 0.0
                    for m in range(M):
                        _add_taps(flat, first, n, gs[m], u0 * Wg, offs, coefs[m], bounds[s],
                                  bounds[s + 1])
                if where.shape[0] == 0:
                    _merge_rows(flat, band, Wg, grad_x, c, P, u0, u1, inside, sh, sw, ph, pw)
        if where.shape[0]:
            _gather_channel(flat, grad_x, c, where)


def _frozen(a):
    """An int64 array, read-only: plans are shared by every call of their geometry."""
    a = np.ascontiguousarray(a, dtype=np.int64)
    a.flags.writeable = False
    return a


def _frozen_uint(a):
    """A uint64 array (indices for the loops), read-only."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    a.flags.writeable = False
    return a


def _inside(q, pad, stride, size, grid):
    """[v_lo, v_hi): the positions v of phase q, of a padded axis split into stride phases
    of ``grid`` positions, that hold an input: 0 <= v*stride + q - pad < size."""
    v_lo = min(grid, max(0, -((q - pad) // stride)))
    return v_lo, max(v_lo, min(grid, (size - 1 + pad - q) // stride + 1))


# Below this many input columns per phase row, a channel goes to and from the phase layout
# through an index map (_scatter_channel, _gather_channel): twice as fast on 7x7 maps, and
# on 14x14 ones with stride 2; as fast at 14 columns, slower above (measured).
SHORT_ROWS = 12


class _Plan:
    """What the loops need to know about one geometry, computed once per geometry
    (``_plan``): it depends on nothing but the ints it is made from, so it cannot go stale.

    - Hq, Wq: the grid of each sub-plane; OH, OW: the output's size;
    - rows_in (sh, 2), inside (sw, 2): the rows [rows_in[P, 0], rows_in[P, 1]) of the row
      phase P and the columns of the column phase p that hold inputs (the rest is padding);
    - forward: offs (KH*KW,), where tap k = kh*KW + kw starts reading the flat sub-planes;
      planes, band: the lengths of the two scratch buffers; where (H*W,), on maps with
      short rows (else empty): each input's place in the sub-planes;
    - backward: BH, BW, the margins of the copy of grad_out (rows Wg = Wq + BW long);
      order (KH*KW,) the taps sorted by the sub-plane they read, bounds (sh*sw + 1,) where
      each sub-plane's run of them starts, back_offs where each reads the copy;
      back_planes, back_band: the scratch lengths; back_where (H*W,) or empty: where each
      input's gradient is found when every sub-plane is one band of the scratch."""

    def __init__(self, H, W, KH, KW, sh, sw, ph, pw, dh, dw):
        self.OH, self.OW = (output_size(H, KH, sh, ph, dilation=dh),
                            output_size(W, KW, sw, pw, dilation=dw))
        self.Hq, self.Wq = Hq, Wq = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
        self.rows_in = _frozen([_inside(q, ph, sh, H, Hq) for q in range(sh)])
        self.inside = _frozen([_inside(q, pw, sw, W, Wq) for q in range(sw)])
        kh, kw = np.divmod(np.arange(KH * KW), KW)  # (KH*KW,) each
        P, p, bh, bw = kh * dh % sh, kw * dw % sw, kh * dh // sh, kw * dw // sw  # per tap
        self.offs = _frozen((P * sw + p) * Hq * Wq + bh * Wq + bw)
        self.planes = sh * sw * Hq * Wq + int(bw.max()) + STEP  # slack for junk outputs
        self.band = max(Wq, SPAN // Wq * Wq) + STEP

        self.BH, self.BW = BH, BW = int(bh.max()), int(bw.max())
        Wg = Wq + BW
        order = np.argsort(P * sw + p, kind="stable")  # the taps by sub-plane
        self.order = _frozen(order)
        self.bounds = _frozen(np.searchsorted((P * sw + p)[order], np.arange(sh * sw + 1)))
        self.back_offs = _frozen((BH - bh[order]) * Wg + (BW - bw[order]))
        self.back_planes = (Hq + BH) * Wg + BW + STEP
        self.back_band = max(Wg, SPAN // Wg * Wg) + STEP

        short = W < SHORT_ROWS * sw
        h, col = np.divmod(np.arange(H * W if short else 0), W)  # each input (h, col)
        r, c = h + ph, col + pw  # its padded row and column
        P, u, p, v = r % sh, r // sh, c % sw, c // sw  # its sub-plane and place there
        self.where = _frozen_uint(((P * sw + p) * Hq + u) * Wq + v)
        one_band = Hq * Wg + STEP <= self.back_band  # every sub-plane's rows in one band
        first = self.rows_in[P, 0]  # the first row of the band
        self.back_where = _frozen_uint(((P * sw + p) * self.back_band + (u - first) * Wg + v)
                                       if one_band else [])


@functools.lru_cache(maxsize=256)
def _plan(*ints) -> _Plan:
    return _Plan(*ints)


# Tasks (ranges of channels) per thread, taken in turn (``_run``); each costs a call of the
# loops, ~2 us.
TASKS_PER_THREAD = 4

# Whether to use the threads: from PARALLEL_SHARE times the pool's threshold for
# element-wise kernels, counting the input and output elements. Measured on 2 vCPUs of an
# AMD EPYC (AVX2) at a quiet time, the layers that stream more than the second-level cache
# holds (MobileNetV2's 112x112 and 56x56 maps) ran 1.3-1.5x faster on two threads; those on
# 28x28 maps and smaller, 10-25% slower: their loops are bound by vector loads, which the
# two vCPUs did not double (a vector loop in L1 ran no faster on two threads than on one),
# so only the hand-off's cost remained.
PARALLEL_SHARE = 2

def _plane_tasks(N, C, threads):
    """[(n, c0, c1)]: ranges of each image's channels, about TASKS_PER_THREAD per thread."""
    pieces = -(-TASKS_PER_THREAD * threads // N) if threads > 1 else 1  # per image
    return [(n, c0, c1) for n in range(N) for c0, c1 in split(C, pieces)]


def _run(tasks, make_work, threads):
    """work(*task) for every task, work = make_work() made once in each thread (it holds
    the thread's scratch buffers); the threads take the next task left until none is.

    A thread that starts late (on a busy machine a pool thread may wait for a CPU) then
    leaves its share to the others instead of making them wait for it, as a fixed share per
    thread would. The loops call no BLAS, so they need no BLAS limit around them."""
    claims = itertools.count()  # next() on it is atomic: C code, under the GIL

    def drain(_):
        work = make_work()
        for i in claims:
            if i >= len(tasks):
                return
            work(*tasks[i])

    run_chunks(drain, range(threads))


def conv2d_forward(x, w, b, stride, padding, dilation):
    """A depthwise convolution. x: (N, C, H, W), w: (F, 1, KH, KW) with F a multiple of C,
    b: (F,) or None -> (N, F, OH, OW) (reference.conv2d_forward with groups = C)."""
    x = allocator.read_only(x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    ints = tuple(int(v) for v in (*stride, *padding))  # (sh, sw, ph, pw)
    plan = _plan(H, W, KH, KW, *ints, *(int(d) for d in dilation))
    w2, bias = allocator.read_only(w.reshape(F, KH * KW)), allocator.bias_vector(b, F, x.dtype)
    out = np.empty((N, F, plan.OH, plan.OW), dtype=x.dtype)
    threads = n_threads(x.size + out.size, PARALLEL_SHARE * thread_pool.PARALLEL_MIN_ELEMENTS)

    def make_work():
        xs = allocator.scratch("depthwise", (plan.planes,), x.dtype)
        xs.fill(0)  # the padding, for every channel this thread takes
        wide = allocator.scratch("depthwise band", (plan.band,), x.dtype)

        def work(n, c0, c1):
            _depthwise_forward_loops(x[n], w2, bias, out[n], xs, wide, plan.offs,
                                     plan.rows_in, plan.inside, plan.where, c0, c1, *ints,
                                     plan.Hq, plan.Wq)
        return work

    _run(_plane_tasks(N, C, threads), make_work, threads)
    return out


def conv2d_backward_input(grad_out, w, stride, padding, in_shape, dilation):
    """The input gradient of conv2d_forward. grad_out: (N, F, OH, OW), w: (F, 1, KH, KW)
    -> (N, C, H, W)."""
    grad_out = allocator.read_only(grad_out)
    N, C, H, W = in_shape
    F, _, KH, KW = w.shape
    ints = tuple(int(v) for v in (*stride, *padding))  # (sh, sw, ph, pw)
    plan = _plan(H, W, KH, KW, *ints, *(int(d) for d in dilation))
    M, sw, dtype = F // C, ints[1], grad_out.dtype
    w2 = allocator.read_only(w.reshape(F, KH * KW))
    grad_x = np.empty((N, C, H, W), dtype=dtype)
    threads = n_threads(grad_out.size + grad_x.size,
                        PARALLEL_SHARE * thread_pool.PARALLEL_MIN_ELEMENTS)

    def make_work():
        gs = allocator.scratch("depthwise", (M, plan.back_planes), dtype)
        gs.fill(0)  # the margins, for every channel this thread takes
        bands = ints[0] * sw if len(plan.back_where) else sw  # (sh*sw or sw, band)
        acc = allocator.scratch("depthwise band", (bands, plan.back_band), dtype)
        coefs = allocator.scratch("depthwise taps", (M, KH * KW), dtype)

        def work(n, c0, c1):
            _depthwise_backward_loops(grad_out[n], w2, grad_x[n], gs, acc, coefs, plan.order,
                                      plan.bounds, plan.back_offs, plan.rows_in, plan.inside,
                                      plan.back_where, c0, c1, *ints, plan.Hq, plan.Wq,
                                      plan.BH, plan.BW)
        return work

    _run(_plane_tasks(N, C, threads), make_work, threads)
    return grad_x
