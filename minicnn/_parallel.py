"""A function mapped over items in forked copies of this process, for the command line.

``minicnn demo`` draws a figure per sample image. Drawing and writing a figure costs five
times what computing its map does here, and matplotlib draws on one core, so the demo shares
the images out over forked copies of the process. A forked copy inherits everything already
in memory: the model is not pickled, and the function need not be picklable (a closure
will do); only the items' positions go to the copies, and the results come back pickled.
Where ``fork`` is missing (Windows, macOS's default) the work runs in this process.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

__all__ = ["forked_map", "default_jobs"]

MAX_JOBS = 4  # the demo's 20 figures gain little from more copies, and each holds a model

_WORK = None  # (function, items) while forked_map's copies run: they inherit it


def default_jobs() -> int:
    """One copy per CPU this process may use, at most MAX_JOBS."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(MAX_JOBS, cpus or 1)


def forked_map(function, items, jobs=None) -> list:
    """[function(item) for item in items], in that order, over ``jobs`` forked copies of
    this process (None: ``default_jobs()``; 1: all in this process, as without ``fork``).
    An exception raised by ``function`` is raised here."""
    items = list(items)
    jobs = default_jobs() if jobs is None else int(jobs)
    if "fork" not in multiprocessing.get_all_start_methods():
        jobs = 1
    jobs = max(1, min(jobs, len(items)))
    if jobs == 1:
        return [function(item) for item in items]
    global _WORK
    _WORK = (function, items)
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_call, range(len(items))))
    finally:
        _WORK = None


def _call(k: int):
    """In a forked copy: the function on item k of the inherited work."""
    function, items = _WORK
    return function(items[k])
