"""Fast dense layer: ``linear_forward`` and ``linear_backward_input`` of ``reference.py`` with
identical signatures, as BLAS products cut into blocks for minicnn's threads.
"""
from __future__ import annotations

import numpy as np

from minicnn.engine.kernels.fast import threads as thread_pool  # thresholds read per call
from minicnn.engine.kernels.fast.threads import n_threads, run_tasks, split

__all__ = ["linear_forward", "linear_backward_input"]


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
