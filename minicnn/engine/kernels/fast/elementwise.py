"""Fast elementwise kernels: ``relu_forward`` and ``relu_backward`` of ``reference.py`` with
identical signatures, one compiled pass over flat arrays, split into contiguous pieces for the
threads, with no temporaries.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.engine.kernels import RELU_RULES
from minicnn.engine.kernels.fast import threads as thread_pool  # thresholds read per call
from minicnn.engine.kernels.fast.threads import n_threads, run_chunks, split

__all__ = ["relu_forward", "relu_backward", "over_elements"]


def over_elements(size, loop):
    """Run ``loop(i0, i1)`` over pieces of [0, size), in parallel if there are many."""
    run_chunks(lambda chunk: loop(*chunk),
               split(size, n_threads(size, 4 * thread_pool.PARALLEL_MIN_ELEMENTS)))


@njit(cache=True, nogil=True)
def _relu_forward_loops(x, out):
    for i in range(x.size):
        v = x[i]
        out[i] = v if (v > 0 or v != v) else 0.0  # NaN passes through, as np.maximum


# The rule, as the compiled loop receives it: its position in RELU_RULES.
_GRADIENT, _DECONVNET, _GUIDED = (RELU_RULES.index(r) for r in ("gradient", "deconvnet", "guided"))


@njit(cache=True, nogil=True)
def _relu_backward_loops(grad_out, x, grad_x, rule):
    for i in range(grad_out.size):
        g = grad_out[i]
        keep = x[i] > 0 if rule != _DECONVNET else True  # gradient and guided look at the input
        if rule != _GRADIENT:
            keep = keep and g > 0  # deconvnet and guided look at the signal
        grad_x[i] = g if keep else 0.0


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
    over_elements(x.size, lambda i0, i1: _relu_forward_loops(flat_x[i0:i1], flat_out[i0:i1]))
    return out


def relu_backward(grad_out, x, rule):
    """See reference.relu_backward. grad_out, x: same shape -> grad_x: that shape."""
    grad_out = np.ascontiguousarray(grad_out)
    x = np.ascontiguousarray(x)
    assert grad_out.shape == x.shape
    code = RELU_RULES.index(rule)
    grad_x = np.empty_like(grad_out)
    g, xf, gx = grad_out.reshape(-1), x.reshape(-1), grad_x.reshape(-1)  # (size,) views
    over_elements(g.size, lambda i0, i1: _relu_backward_loops(g[i0:i1], xf[i0:i1],
                                                              gx[i0:i1], code))
    return grad_x
