"""The fast kernels: every function of ``reference.py`` with an identical signature, as
compiled loops and BLAS calls. Nothing here changes what is computed, only how fast.

The set gathers ``conv.py`` (im2col, 1x1 as a matrix product, a direct loop for RGB first
layers, and Winograd's ``winograd.py`` / ``winograd4.py`` for 3x3 stride-1 layers),
``depthwise.py`` (depthwise convolutions as direct loops), ``pool.py``, ``elementwise.py``
(ReLU, SiLU) and ``linear.py``. What every fast kernel does the
same way (measured on a 2-core machine, see BENCHMARKS.md and examples/bench.py):

- work is cut into independent chunks for minicnn's own thread pool (``threads.py``), each
  thread running its loops AND its own single-threaded BLAS call, so only one thread pool is
  ever busy (Numba's parallel loops next to OpenBLAS's threads fought for the cores: ~8 ms
  lost per call here); small layers run serially, since a hand-off costs ~20 us;
- jitted functions take plain ints (never tuples) and C-contiguous arrays, so each compiles
  once per dtype (float32, float64); ``cache=True`` keeps the machine code on disk in
  ``__pycache__`` for the next process; ``nogil=True`` lets the pool's threads run them at
  the same time;
- scratch buffers are per thread and reused (``allocator.scratch``), so passes do not
  allocate their temporaries anew;
- arrays derived from weights (Winograd's transformed filters) are cached only for weights
  that cannot change (``minicnn.engine.frozen``): a layer's own.

Every Python wrapper makes its arrays C-contiguous and computes the output shape; the jitted
bodies are only loops. Numba does no bounds checking, so the wrappers are the last line of
defence before memory is touched.

``pass_context()`` is what a whole forward or backward pass needs around it: BLAS kept to
one thread while minicnn's threads share the cores (``threads.blas_single_threaded``).
"""
from __future__ import annotations

from minicnn.engine.kernels.fast import numba_startup
from minicnn.engine.kernels.fast.conv import conv2d_backward_input, conv2d_forward
from minicnn.engine.kernels.fast.elementwise import (hardswish_backward, hardswish_forward,
                                                    hardtanh_backward, hardtanh_forward,
                                                    relu_backward, relu_forward,
                                                    silu_backward, silu_forward)
from minicnn.engine.kernels.fast.linear import linear_backward_input, linear_forward
from minicnn.engine.kernels.fast.pool import (adaptive_avgpool2d_backward,
                                              adaptive_avgpool2d_forward, avgpool2d_backward,
                                              avgpool2d_forward, maxpool2d_backward,
                                              maxpool2d_forward, maxpool2d_values)
from minicnn.engine.kernels.fast.threads import blas_single_threaded as pass_context

__all__ = [
    "pass_context",
    "conv2d_forward", "conv2d_backward_input",
    "maxpool2d_forward", "maxpool2d_values", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward",
    "relu_forward", "relu_backward", "hardtanh_forward", "hardtanh_backward",
    "hardswish_forward", "hardswish_backward", "silu_forward", "silu_backward",
    "linear_forward", "linear_backward_input",
]

# Numba imports its NumPy support at the first compile, not with `import numba` above.
numba_startup.hide_scipy_from_numba()  # ~0.5 s less start-up when SciPy is installed
