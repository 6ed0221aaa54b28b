"""Keep freed memory inside the process, so each pass does not fault its arrays in anew.

A forward/backward pass allocates the same large arrays every time (each layer's output and
gradient: 26 MB for the first ReLU of a 50-image batch of the shipped model). glibc's malloc
serves a block above its "mmap threshold" with a fresh mmap and unmaps it on free, and the
threshold only adapts to sizes strictly below those already freed, so a same-sized array
comes back as new pages that the kernel must zero on first touch. Measured here for SmoothGrad
with 50 samples: 23,000 page faults and ~200 ms of system time per call, 390 ms in all;
with the settings below, ~0 faults and 260 ms.

``tune()`` sets, on glibc only:

- ``M_MMAP_THRESHOLD`` = 32 MB (glibc's maximum): smaller blocks come from the heap;
- ``M_TRIM_THRESHOLD`` = 512 MB: free memory at the top of the heap is kept for reuse rather
  than returned to the OS until more than this much piles up.

These are process-wide malloc settings: the process's resident memory stays near its peak
after a large pass instead of shrinking. So ``import minicnn`` never calls ``tune()``: the
``minicnn`` command and the benchmarks do, being whole programs of their own, and a program
that wants it (a notebook computing many maps) can call it. ``MINICNN_TUNE_MALLOC=0`` (or
``settings.set("tune_malloc", "0")``) makes ``tune()`` leave malloc alone.

The kernels' own temporaries (im2col columns, Winograd tiles) are not allocated per call at
all: ``scratch(name, shape, dtype)`` hands each thread its own buffer by name, grown when a
larger one is asked for and reused otherwise; ``release_scratch()`` frees them all.
"""
from __future__ import annotations

import ctypes
import math
import platform
import threading

import numpy as np

from minicnn.engine import settings

__all__ = ["tune", "tuned", "scratch", "release_scratch", "read_only", "bias_vector"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20

tuned = False  # True once tune() changed glibc's settings


def tune() -> bool:
    """Apply the settings above if this is glibc and not opted out; True if applied."""
    global tuned
    if tuned or settings.get("tune_malloc") == "0":
        return tuned
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)  # the running process's symbols, glibc's mallopt among them
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False
    tuned = ok
    return tuned


# ----------------------------------------------------------------------------- scratch buffers

_local = threading.local()  # each thread's own scratch buffers, by name
_every_thread_buffers = []  # the same dicts, so that release_scratch reaches all threads


def scratch(name, shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` in this thread's buffer ``name``.

    The same name in the same thread gives the same memory again, so two arrays in use at
    once need two names."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        _local.buffers = buffers = {}
        _every_thread_buffers.append(buffers)
    buffer = buffers.get(name)
    if buffer is None or buffer.nbytes < nbytes:
        buffers[name] = None  # drop the old buffer before allocating
        buffers[name] = buffer = np.empty(nbytes, dtype=np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)  # (shape), a view of the buffer


def release_scratch():
    """Free every thread's scratch buffers. Call it while no kernel is running."""
    for buffers in _every_thread_buffers:
        buffers.clear()


# ----------------------------------------------------------------------------- weights

def read_only(a, dtype=None):
    """``a`` as a C-contiguous, read-only array (a view when it already is one). A layer's
    weights are read-only (``minicnn.engine.frozen``), and Numba compiles a separate version
    of a loop for read-only arguments, so every caller hands weights to the loops this way:
    one version per dtype, not two."""
    view = np.ascontiguousarray(a, dtype=dtype).view()
    view.flags.writeable = False
    return view


def bias_vector(b, F, dtype):
    """The bias (F,) in ``dtype``, zeros where there is none, read-only (``read_only``)."""
    return read_only(np.zeros(F, dtype=dtype) if b is None else b, dtype)
