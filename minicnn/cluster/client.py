"""The Dask client a job runs on: worker processes on this machine, or an existing cluster.

- ``connect(workers=N)``: a ``LocalCluster`` of N worker processes on the loopback
  interface, one thread each, no dashboard; it is shut down when the block ends. The
  worker processes get ``MINICNN_NUM_THREADS=1`` and one BLAS thread in their environment.
  A worker process that dies while the cluster starts makes the start fail, or is never
  replaced (Dask replaces only workers that are running): the cluster is started again,
  up to START_ATTEMPTS times in all, and then it is a ``WorkerStartError``, one line.
- ``connect(scheduler="tcp://host:8786")``: a client of a running cluster (``dask
  scheduler`` and ``dask worker`` commands); nothing else changes. An address that does not
  answer within ``timeout`` seconds is a ``SchedulerError``, one line. A worker that dies
  while the client connects is the cluster's to replace, as at any other moment.

Either way every worker runs the ``OneThreadPerWorker`` plugin (``workers.py``), so that
minicnn and BLAS run on one thread inside it, also on workers started by hand and on
workers that Dask restarts after a crash: a LocalCluster's workers are given it when they
start, a running cluster's through the scheduler, which also gives it to every worker
that joins later.
"""
from __future__ import annotations

import contextlib
import logging
import os

from minicnn._checks import check_int

__all__ = ["connect", "default_workers", "SchedulerError", "WorkerStartError", "WORKER_ENV",
           "CONNECT_TIMEOUT", "START_ATTEMPTS", "START_TIMEOUT"]

CONNECT_TIMEOUT = 10   # seconds to wait for a scheduler to answer
START_ATTEMPTS = 3     # LocalCluster starts tried before giving up on its workers
START_TIMEOUT = 60     # seconds for a started LocalCluster's missing workers to come back

# For worker processes that this module starts. Dask sets the BLAS ones itself by default
# (distributed.nanny.pre-spawn-environ); they are written here so that it does not depend
# on that configuration.
WORKER_ENV = {"MINICNN_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class SchedulerError(ConnectionError):
    """The scheduler's address is malformed or nothing answers there."""


class WorkerStartError(SchedulerError):
    """A LocalCluster's worker processes could not be started. A SchedulerError, so that
    whoever reports a cluster that cannot be used reports this one too."""


def default_workers() -> int:
    """One worker per CPU this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None, timeout=None):
    """A ``distributed.Client`` for the block: on ``scheduler``'s cluster if an address is
    given (waiting ``timeout`` seconds, default CONNECT_TIMEOUT, for it to answer), else on
    a new LocalCluster of ``workers`` processes (default: one per CPU)."""
    from distributed import Client

    from minicnn.cluster.workers import OneThreadPerWorker
    if scheduler is not None and workers is not None:
        raise ValueError("give workers (a LocalCluster) or scheduler (an existing cluster), "
                         "not both")
    if scheduler is not None:
        timeout = CONNECT_TIMEOUT if timeout is None else timeout
        if not isinstance(scheduler, str):
            raise TypeError(f"scheduler must be an address string such as "
                            f"tcp://host:8786, got {scheduler!r}")
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                                 f"{timeout:g} s: {reason}") from None
        with client:
            try:
                client.register_plugin(OneThreadPerWorker())
            except OSError:
                # A worker went away while the scheduler sent the plugin to every worker
                # (CommClosedError). The others get it all the same, and the scheduler
                # keeps it for every worker that joins, a restarted one too.
                pass
            yield client
        return
    workers = default_workers() if workers is None else check_int(workers, "workers", 1)
    with _local_cluster(workers) as cluster, Client(cluster) as client:
        yield client


def _local_cluster(workers: int):
    """A started LocalCluster of ``workers`` processes.

    Once a worker process runs, Dask looks after it: its nanny starts a new one if it
    dies, and the scheduler gives its tasks to the other workers. While the cluster
    starts, nobody does: a worker process that dies before it has connected makes its
    nanny fail ("Nanny failed to start"), and LocalCluster closes everything and raises;
    one that dies just after, before its nanny counts itself started, is never replaced,
    and the cluster runs one worker short (with one worker, a job would wait forever).
    So a start that fails, or that is still missing a worker after START_TIMEOUT seconds,
    is tried again, START_ATTEMPTS times in all: a worker killed once costs one more
    start, and workers that can never start are one WorkerStartError."""
    from distributed import LocalCluster

    from minicnn.cluster.workers import OneThreadPerWorker
    for _ in range(START_ATTEMPTS):
        try:
            # The plugin goes in with each worker's arguments rather than through
            # client.register_plugin: that call reaches every worker at once and fails
            # if one of them dies meanwhile, while a worker's own plugins run before it
            # takes any task. The scheduler's HTTP server (health checks, no dashboard)
            # takes any free loopback port: on 8787, which another cluster may hold, Dask
            # would warn on stderr.
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None,
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.ERROR, env=dict(WORKER_ENV),
                                   plugins=(OneThreadPerWorker(),))
        except (RuntimeError, OSError, TimeoutError) as e:  # OSError: CommClosedError too
            failure = e
            continue
        try:
            # every worker registered before LocalCluster returned, unless one died since
            cluster.wait_for_workers(workers, timeout=START_TIMEOUT)
            return cluster
        except TimeoutError as e:
            cluster.close()
            failure = e
    while failure.__cause__ is not None:      # Dask wraps the reason: "Nanny failed to start."
        failure = failure.__cause__
    raise WorkerStartError(f"the local Dask cluster could not start its {workers} worker "
                           f"process(es) in {START_ATTEMPTS} attempts: "
                           f"{str(failure) or type(failure).__name__}")
