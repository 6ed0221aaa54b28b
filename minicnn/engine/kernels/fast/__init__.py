"""Fast kernels: the functions of ``reference.py`` with identical signatures, compiled loops.

The layers call whichever kernel module is active (``kernels.active()``); this is the fast
one. It gathers the convolutions (``fast_conv.py``: im2col, 1x1 as a matrix product,
Winograd) and the pools (``fast_pool.py``), and holds the elementwise ReLU and the dense
layer below. What every fast kernel does the same way (measured on a 2-core machine, see
BENCHMARKS.md and examples/bench.py):

- work is cut into independent chunks for minicnn's own thread pool (``threads.py``), each
  thread running its loops AND its own single-threaded BLAS call, so only one thread pool is
  ever busy (Numba's parallel loops next to OpenBLAS's threads fought for the cores: ~8 ms
  lost per call here); small layers run serially, since a hand-off costs ~20 us;
- jitted functions take plain ints (never tuples) and C-contiguous arrays, so each compiles
  once per dtype (float32, float64); ``cache=True`` keeps the machine code on disk in
  ``__pycache__`` for the next process; ``nogil=True`` lets the pool's threads run them at
  the same time;
- scratch buffers are per thread and reused (``allocator.scratch``), and glibc is told to
  keep freed memory (``allocator.tune``), so passes do not page-fault their arrays in anew.

Every Python wrapper makes its arrays C-contiguous and computes the output shape; the jitted
bodies are only loops. Numba does no bounds checking, so the wrappers are the last line of
defence before memory is touched.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.engine.kernels import allocator, numba_startup
from minicnn.engine.kernels.fast_conv import (col2im, conv2d_backward_input, conv2d_forward,
                                              im2col)
from minicnn.engine.kernels.fast_pool import (adaptive_avgpool2d_backward,
                                              adaptive_avgpool2d_forward, avgpool2d_backward,
                                              avgpool2d_forward, maxpool2d_backward,
                                              maxpool2d_forward, maxpool2d_values)
from minicnn.engine.kernels import threads as thread_pool  # (its settings, read per call)
from minicnn.engine.kernels.threads import (n_threads, run_chunks, run_tasks, split)

__all__ = [
    "conv2d_forward", "conv2d_backward_input", "im2col", "col2im",
    "maxpool2d_forward", "maxpool2d_values", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward",
    "relu_forward", "relu_backward", "linear_forward", "linear_backward_input",
]

allocator.tune()  # reuse freed memory instead of page-faulting every pass in (allocator.py)
numba_startup.hide_scipy_from_numba()  # ~0.5 s less start-up when SciPy is installed


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
               split(size, n_threads(size, 4 * thread_pool.PARALLEL_MIN_ELEMENTS)))


def relu_forward(x, out=None):
    """See reference.relu_forward. x: any shape -> same shape; ``out`` may be x itself (each
    element is read before it is written), which needs x C-contiguous."""
    if out is None:
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
    else:
        # the loops index both flat: out must be x's C-ordered twin (the caller's array, so
        # no copy may stand in for it)
        assert (out.shape == x.shape and out.dtype == x.dtype and out.flags.c_contiguous
                and x.flags.c_contiguous), "relu_forward: out needs x's shape, dtype, C order"
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)  # (size,) views
    _over_elements(x.size, lambda i0, i1: _relu_forward_loops(flat_x[i0:i1], flat_out[i0:i1]))
    return out


def relu_backward(grad_out, x, rule):
    """See reference.relu_backward. grad_out, x: same shape -> grad_x: that shape."""
    grad_out = np.ascontiguousarray(grad_out)
    x = np.ascontiguousarray(x)
    assert grad_out.shape == x.shape
    code = RELU_RULE_CODES[rule]
    grad_x = np.empty_like(grad_out)
    g, xf, gx = grad_out.reshape(-1), x.reshape(-1), grad_x.reshape(-1)  # (size,) views
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
    threads = n_threads(N * w.size, thread_pool.PARALLEL_MIN_MACS)

    def block(o0, o1):
        out[:, o0:o1] = x @ w[o0:o1].T  # the BLAS call: (N, I) @ (I, o1-o0)
        if b is not None:
            out[:, o0:o1] += b[o0:o1]

    run_tasks(split(O, threads), block, threads)
    return out


def linear_backward_input(grad_out, w):
    """See reference.linear_backward_input. grad_out: (N, O), w: (O, I) -> (N, I).

    Each thread computes a block of input features, grad_x[:, i0:i1] = grad_out @ w[:, i0:i1].
    """
    N, I = grad_out.shape[0], w.shape[1]
    grad_x = np.empty((N, I), dtype=grad_out.dtype)
    threads = n_threads(N * w.size, thread_pool.PARALLEL_MIN_MACS)

    def block(i0, i1):
        grad_x[:, i0:i1] = grad_out @ w[:, i0:i1]  # the BLAS call

    run_tasks(split(I, threads), block, threads)
    return grad_x
