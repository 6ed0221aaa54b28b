"""Inside a Dask worker process: one thread, and the model loaded once.

A machine runs one worker process per core, so minicnn's own thread pool and the BLAS
library must use one thread each inside a worker, or N workers would start N x cores
threads and fight over the cores. The environment variables (``client.WORKER_ENV``) do
that for workers this package starts; ``OneThreadPerWorker``, a worker plugin, does it
for every worker, also one started by hand with ``dask worker``: it calls
``threads.set_num_threads(1)`` (minicnn is imported before the plugin runs, so the
environment variable would be read too late) and limits BLAS to one thread with
threadpoolctl.

``model_for(path, sha256)`` loads a weights file once per worker thread and keeps it: the
tasks name the file, and the model is never sent with a task. One per *thread*, because a
model keeps what its backward pass needs from the last forward pass: two threads must not
share one. The file's sha256 must be the one the driver saw, so that every worker computes
with the same weights (a cluster whose machines hold different files fails loudly).
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from distributed import WorkerPlugin

__all__ = ["OneThreadPerWorker", "model_for", "file_sha256", "worker_threads"]


class OneThreadPerWorker(WorkerPlugin):
    """Set minicnn's threads and BLAS's to one in the worker process, at its start, and let
    it keep freed memory (``allocator.tune``), as the ``minicnn`` command does."""

    name = "minicnn-one-thread"     # Dask keeps one plugin per name on a worker

    def setup(self, worker):
        from threadpoolctl import threadpool_limits

        from minicnn.engine import settings
        from minicnn.engine.kernels.fast import allocator
        os.environ.update(MINICNN_NUM_THREADS="1", OMP_NUM_THREADS="1",
                          OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        settings.set_num_threads(1)
        allocator.tune()  # a worker computes pass after pass: reuse freed arrays
        self._limit = threadpool_limits(limits=1, user_api="blas")   # kept for the process


def worker_threads() -> dict:
    """What a worker runs with: {"pid", "minicnn", "blas": [threads of each BLAS]}."""
    from threadpoolctl import threadpool_info

    from minicnn.engine import settings
    return {"pid": os.getpid(), "minicnn": settings.get("num_threads"),
            "blas": [lib["num_threads"] for lib in threadpool_info()
                     if lib.get("user_api") == "blas"]}


def file_sha256(path) -> str:
    """The sha256 of a file's bytes, in hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_models = threading.local()   # .cache: {(path, mtime_ns, size): (sha256, model)}


def model_for(path, sha256: str):
    """The model in weights file ``path`` (None: the shipped model of this worker's
    install), loaded on this thread's first call and kept. ValueError if the file's sha256
    is not ``sha256``."""
    from minicnn.io.weights import default_weights_path, load
    path = Path(default_weights_path() if path is None else path)
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    cache = getattr(_models, "cache", None)
    if cache is None:
        cache = _models.cache = {}
    if key not in cache:
        cache.clear()                       # one model per thread: drop a replaced file's
        cache[key] = (file_sha256(path), load(path))
    found, model = cache[key]
    if found != sha256:
        raise ValueError(f"{path} on worker process {os.getpid()} has sha256 "
                         f"{found[:12]}..., not the driver's {sha256[:12]}...: every "
                         f"worker must see the same weights file")
    return model
