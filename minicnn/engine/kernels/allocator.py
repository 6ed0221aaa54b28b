"""Keep freed memory inside the process, so each pass does not fault its arrays in anew.

A forward/backward pass allocates the same large arrays every time (each layer's output and
gradient: 26 MB for the first ReLU of a 50-image batch of the shipped model). glibc's malloc
serves a block above its "mmap threshold" with a fresh mmap and unmaps it on free, and the
threshold only adapts to sizes strictly below those already freed, so a same-sized array
comes back as new pages that the kernel must zero on first touch. Measured here for SmoothGrad
with 50 samples: 23,000 page faults and ~200 ms of system time per call, 390 ms in all;
with the settings below, ~0 faults and 260 ms.

``tune()`` (called when the fast kernels are imported) sets, on glibc only:

- ``M_MMAP_THRESHOLD`` = 32 MB (glibc's maximum): smaller blocks come from the heap;
- ``M_TRIM_THRESHOLD`` = 512 MB: free memory at the top of the heap is kept for reuse rather
  than returned to the OS until more than this much piles up.

These are process-wide malloc settings: the process's resident memory stays near its peak
after a large pass instead of shrinking. Set ``MINICNN_TUNE_MALLOC=0`` to leave malloc alone.
"""
from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["tune", "tuned"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20

tuned = False  # True once tune() changed glibc's settings


def tune() -> bool:
    """Apply the settings above if this is glibc and not opted out; True if applied."""
    global tuned
    if tuned or os.environ.get("MINICNN_TUNE_MALLOC", "1") == "0":
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
