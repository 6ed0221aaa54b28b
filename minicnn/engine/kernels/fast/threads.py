"""minicnn's one thread pool, and BLAS kept to one thread while the pool works.

Why our own pool (measured on a 2-core machine, see BENCHMARKS.md): the loops around a
convolution (im2col, col2im, pooling) are serial Numba code, so with BLAS doing the threading
only the matrix products used both cores, and half the machine idled in the loops. Numba's
``parallel=True`` was worse: its workers and OpenBLAS's (which spin-wait after each product)
fought for the same two cores. So each kernel splits its work into independent chunks (images,
row bands or channels) and runs one chunk per thread, every thread doing its own im2col AND
its own single-threaded matrix product. Only one pool is busy at any time, as in PyTorch.

- ``num_threads()``: ``$MINICNN_NUM_THREADS`` if set, else the CPUs this process may use;
  ``minicnn.engine.settings.set_num_threads(n)`` changes it later (a Dask worker, one of
  several processes on a machine, sets 1 once minicnn is already imported).
- ``run_chunks(work, chunks)``: ``work(chunk)`` for every chunk, spread over the threads.
  The jitted loops are compiled with ``nogil=True`` and NumPy's matmul releases the GIL, so
  the threads really run at the same time.
- ``blas_single_threaded()``: a context in which BLAS uses one thread (threadpoolctl), so that
  two of our threads calling it do not start four BLAS threads on two cores. If the BLAS
  cannot be controlled, ``parallel_ok()`` is False and the kernels run serially.

The pool is num_threads() - 1 persistent workers, each waiting on a lock of its own that the
caller releases to hand it work, and answering on a second lock. A VGG pass makes ~100
parallel calls and the small net's layers take tens of microseconds each, so the hand-off
matters: ~20 us per call this way against ~60 us through ``concurrent.futures`` (a queue, a
condition variable and a Future per chunk), measured on one machine. On a virtual machine
where waking a sleeping thread took 65 us, each side first watches a counter for up to a
millisecond (``spin.py``; ``MINICNN_SPIN_US=0`` turns that off): an empty parallel call
took 30 us instead of 65, what is left being mostly the two threads taking turns at
Python's GIL.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy as np

from minicnn.engine import settings

__all__ = ["num_threads", "run_chunks", "run_tasks", "split", "n_threads", "parallel",
           "blas_single_threaded", "parallel_ok", "PARALLEL_MIN_MACS", "PARALLEL_MIN_ELEMENTS"]


def num_threads() -> int:
    """How many threads the pool uses now (``settings``: ``MINICNN_NUM_THREADS`` or
    ``set_num_threads``; a bad value is a SettingError here, at the first pass)."""
    return settings.get("num_threads")


class _Worker:
    """One pool thread. It watches ``counters[POSTED]`` for work (``spin.spin_until``, for up
    to ``spin.spin_seconds()``), then sleeps on the ``wake`` lock; it answers the same way,
    counting its jobs in ``counters[FINISHED]`` and releasing ``done``. A Lock (not a
    Condition) is the cheapest thing to sleep on: one futex call to block, one to wake.

    Each lock is released before its counter moves, so a thread that saw the counter move
    takes the lock at once: both ways of waiting see the same hand-over, in the same order.
    """

    def __init__(self, index):
        self.wake, self.done = threading.Lock(), threading.Lock()
        self.wake.acquire()  # held: the worker blocks on it until there is work
        self.done.acquire()  # held: released by the worker when its chunks are finished
        self.job = None  # (work, chunks) handed over before wake is released
        self.error = None  # the first exception of the last job, or None
        self.counters = np.zeros(2, dtype=np.int64)  # [POSTED, FINISHED] jobs, ever
        self.spins = _spins()  # measured here, in the thread that makes the pool
        self.spin_until = _spin_module().spin_until
        threading.Thread(target=self._loop, name=f"minicnn-{index}", daemon=True).start()

    def post(self, work, chunks):
        """Hand over a job (called by the thread that holds the pool)."""
        self.job = (work, chunks)
        self.wake.release()
        self.counters[POSTED] += 1

    def wait(self):
        """Return once the last job posted is finished (called by the poster)."""
        if self.spins:
            self.spin_until(self.counters, FINISHED, self.counters[POSTED], self.spins)
        self.done.acquire()

    def _loop(self):
        _inside.active = True  # a run_chunks called from a chunk here runs serially
        taken = 0
        while True:
            if self.spins:
                self.spin_until(self.counters, POSTED, taken + 1, self.spins)
            self.wake.acquire()
            taken += 1
            work, chunks = self.job
            self.job, self.error = None, None
            for chunk in chunks:
                try:
                    work(chunk)
                except BaseException as error:  # reported to the caller, who re-raises it
                    self.error = error
                    break
            self.done.release()
            self.counters[FINISHED] = taken


POSTED, FINISHED = 0, 1  # the two counters of a _Worker


def _spin_module():
    """spin.py, imported when the first worker is made: it compiles a Numba function, which a
    program that never runs a pool thread does not need."""
    from minicnn.engine.kernels.fast import spin
    return spin


def _spins() -> int:
    """Reads of a counter in spin.spin_seconds(), the longest a pool thread watches one
    (0: no watching, straight to sleep)."""
    spin = _spin_module()
    seconds = spin.spin_seconds()
    if seconds <= 0:
        return 0
    return max(1, int(seconds * spin.spins_per_second()))


_workers: list = []  # the pool, grown on demand to num_threads() - 1 workers
_lock = threading.Lock()  # guards the pool's creation and the BLAS limit below
_busy = threading.Lock()  # held by the one run_chunks call that is using the workers


def _forget_after_fork():
    """A forked child inherits the worker objects but not their threads: work handed to them
    would wait forever. Start afresh; the child makes its own workers on first use. (The BLAS
    limit's nesting count is kept: the forking thread may be inside a block it will leave.)"""
    global _workers, _lock, _busy
    _workers, _lock, _busy = [], threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """[0, n) cut into at most ``parts`` contiguous, non-empty ranges of near-equal length."""
    parts = max(1, min(parts, n))
    return [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]


_inside = threading.local()  # .active: this thread is running a chunk


def run_chunks(work, chunks) -> None:
    """Call ``work(chunk)`` for each chunk: some in this thread, the rest in the pool.

    ``work`` must write only to memory no other chunk writes to. Every chunk has finished when
    this returns or raises; the first exception is re-raised (this thread's own first, then
    the workers' in chunk order). A call made from inside a chunk, or while another thread's
    call holds the pool, runs its chunks serially in the calling thread: waiting for busy
    workers could hang.
    """
    chunks = list(chunks)
    threads = min(len(chunks), num_threads())
    if threads <= 1 or getattr(_inside, "active", False) or not _busy.acquire(blocking=False):
        _run_serially(work, chunks)
        return
    try:
        with _lock:
            while len(_workers) < threads - 1:
                _workers.append(_Worker(len(_workers) + 1))
        helpers = _workers[:threads - 1]
        for k, worker in enumerate(helpers):  # chunk k + 1, k + 1 + threads, ... to worker k
            worker.post(work, chunks[k + 1::threads])
        try:
            _run_serially(work, chunks[0::threads])
        finally:  # never return while a chunk still runs (it may still be writing, or using BLAS)
            for worker in helpers:
                worker.wait()
        for worker in helpers:
            if worker.error is not None:
                error, worker.error = worker.error, None
                raise error
    finally:
        _busy.release()


def _run_serially(work, chunks):
    outer = getattr(_inside, "active", False)
    _inside.active = True
    try:
        for chunk in chunks:
            work(chunk)
    finally:
        _inside.active = outer


# ----------------------------------------------------------------------------- BLAS threads

_controller = None  # threadpoolctl.ThreadpoolController: the BLAS libraries loaded when made
_blas_found: bool | None = None
_modules_seen = 0  # len(sys.modules) when _controller was made
_depth = 0  # nesting of blas_single_threaded() across all threads
_limit = None  # the active threadpoolctl limit, restored when _depth returns to 0


def parallel_ok() -> bool:
    """True if there are several threads and the BLAS library's threads can be limited.

    threadpoolctl sees the libraries loaded when its controller is made, so the controller
    is made again (~1-7 ms) whenever modules were imported since: one of them may have
    loaded its own BLAS (SciPy does), which would otherwise keep its threads."""
    global _controller, _blas_found, _modules_seen
    if num_threads() == 1:
        return False
    if _blas_found is None or len(sys.modules) != _modules_seen:
        with _lock:
            if _blas_found is None or len(sys.modules) != _modules_seen:
                try:
                    from threadpoolctl import ThreadpoolController
                    _modules_seen = len(sys.modules)
                    _controller = ThreadpoolController()
                    _blas_found = bool(_controller.select(user_api="blas").lib_controllers)
                except Exception:  # no threadpoolctl, or it cannot read this process
                    _blas_found = False
    return _blas_found


@contextlib.contextmanager
def blas_single_threaded():
    """BLAS runs on one thread inside this block (re-entrant; restored on the way out).

    The limit is process-wide while it lasts: BLAS calls made meanwhile by other threads of
    the program run single-threaded too.
    """
    global _depth, _limit
    if not parallel_ok():
        yield
        return
    with _lock:
        if _depth == 0:
            _limit = _controller.limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limit.restore_original_limits()
                _limit = None


# ----------------------------------------------------------------------------- for the kernels

# Below this many multiply-adds (conv, Winograd) or touched elements (pooling, ReLU) a kernel
# runs in the calling thread: handing work to the pool costs tens of microseconds, more than
# such a layer takes.
PARALLEL_MIN_MACS = 1 << 22
PARALLEL_MIN_ELEMENTS = 1 << 18


def n_threads(work: int, minimum: int) -> int:
    """How many threads a kernel with ``work`` units should use: all of them from
    ``minimum`` units on (if BLAS can be kept to one thread meanwhile), else one."""
    threads = num_threads()
    return threads if threads > 1 and work >= minimum and parallel_ok() else 1


def parallel(count: int):
    """The context a kernel runs its chunks in: BLAS single-threaded if it uses several."""
    return blas_single_threaded() if count > 1 else contextlib.nullcontext()


def run_tasks(tasks, work, count: int) -> None:
    """work(*task) for every task, the list cut into one contiguous chunk per thread."""
    def chunk(bounds):
        for task in tasks[bounds[0]:bounds[1]]:
            work(*task)
    with parallel(count):
        run_chunks(chunk, split(len(tasks), count))
