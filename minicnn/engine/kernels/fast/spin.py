"""Waiting by watching memory: how the thread pool hands work over in microseconds.

Putting a thread to sleep on a lock and waking it costs a system call on each side, and on a
virtual machine the wake-up of a sleeping CPU goes through the hypervisor. On the 2-vCPU
machine of BENCHMARKS.md an empty parallel call (work out, "done" back: two wake-ups) took
65 us, and a ResNet-50 gradient makes ~130 parallel calls. A thread that is still awake,
re-reading a counter that the other thread will increase, notices the change in about a
microsecond. So the pool's threads watch a counter for a short while (``spin_seconds()``, 1 ms
unless ``MINICNN_SPIN_US`` says otherwise) before they fall back to sleeping on a lock, as
OpenMP runtimes do. Between two reads the watcher offers its CPU to any other ready thread
(sched_yield), so on a busy machine it does not keep the thread it waits for off the CPU.

The watching loop runs in compiled code without the GIL (Numba, ``nogil=True``), so the
thread being waited for keeps running Python. Its read of the counter is an atomic
"acquire" load, made anew on every pass: a plain load is one the compiler may keep in a
register, and the loop would then never see the change. The counters are int64 NumPy arrays
written from Python, each by one thread.

``spin_until_python`` is the readable twin of ``spin_until``, with the same signature: Python
re-reads an array element on every pass anyway, but it holds the GIL while it spins, which is
why the pool does not use it.
"""
from __future__ import annotations

import os
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from minicnn.engine import settings

__all__ = ["spin_until", "spin_until_python", "spins_per_second", "spin_seconds"]


def spin_seconds() -> float:
    """How long a waiting pool thread watches its counter before it sleeps:
    ``MINICNN_SPIN_US`` microseconds (0: never watch, sleep at once), 1 ms by default (the
    gaps between a network's parallel calls at batch 1 are 0.1-0.4 ms here: serial layers and
    Python between them). Always 0 on Windows, whose C library has no sched_yield."""
    microseconds = settings.get("spin_us")  # checked everywhere, used where it can be
    return 0.0 if os.name == "nt" else microseconds * 1e-6


@intrinsic
def _load_acquire(typingctx, counters, index):
    """counters[index] for an int64 array, read with an atomic acquire load."""
    if not (isinstance(counters, types.Array) and counters.dtype == types.int64
            and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        position = context.cast(builder, args[1], signature.args[1], types.intp)
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [position])
        return builder.load_atomic(pointer, ordering="acquire", align=8)

    return types.int64(counters, index), codegen


@intrinsic
def _sched_yield(typingctx):
    """The C library's sched_yield(): let another thread that is ready to run on this CPU
    (the one we wait for, or another program's) have it now."""
    def codegen(context, builder, signature, args):
        c_int = ir.IntType(32)
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(c_int, []),
                                                  "sched_yield")
        builder.call(function, [])
        return context.get_dummy_value()

    return types.none(), codegen


@njit(cache=True, nogil=True)
def spin_until(counters, index, target, spins):
    """True as soon as counters[index] >= target, False if it is still below after ``spins``
    reads. counters: (K,) int64. Between reads the CPU is offered to any other thread ready
    to run on it: on a loaded machine a thread that only spun would hold up the very thread
    it waits for (measured: a 3x slower SqueezeNet next to one busy process)."""
    for _ in range(spins):
        if _load_acquire(counters, index) >= target:
            return True
        _sched_yield()
    return False


def spin_until_python(counters, index, target, spins):
    """The readable twin of ``spin_until`` (same arguments, same answer)."""
    for _ in range(spins):
        if counters[index] >= target:
            return True
        if hasattr(os, "sched_yield"):
            os.sched_yield()
    return False


_rate = None  # reads per second of spin_until on this machine, measured once


def spins_per_second() -> int:
    """How many reads ``spin_until`` makes per second here (a 2 ms measurement, done once)."""
    global _rate
    if _rate is None:
        never = np.zeros(1, dtype=np.int64)
        spin_until(never, 0, 1, 1000)  # compiled (or loaded from the cache) before timing
        spins, seconds = 1000, 0.0
        while seconds < 2e-3:
            spins *= 4
            start = time.perf_counter()
            spin_until(never, 0, 1, spins)
            seconds = time.perf_counter() - start
        _rate = int(spins / seconds)
    return _rate
