"""``evaluate_on_cluster``: ``run_evaluation`` with its images spread over Dask workers.

The driver plans the evaluation (``experiments.evaluate.plan_evaluation``: every check,
before any work), cuts the images into ranges of whole batches (``EvaluationPlan.ranges``)
and submits one task per range. A worker evaluates its range with the model from its
cache (``workers.model_for``) and returns the range's tallies: the per-image numbers of
every method, which are small. The driver joins them in image order
(``finish_evaluation``) before taking any mean, and each range forms exactly the batches
of the single-process run, so the result is the same dict, to the last bit, as
``run_evaluation``'s (only ``settings["seconds"]`` differs). The early images carry the
slow work (slow methods, curves, graph cut), so one task per batch keeps the workers
evenly busy.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from minicnn._progress import progress_bar
from minicnn.cluster.client import connect
from minicnn.cluster.workers import file_sha256, model_for
from minicnn.experiments.evaluate import evaluate_range, finish_evaluation, plan_evaluation

__all__ = ["evaluate_on_cluster", "evaluate_range_task"]


def evaluate_range_task(model_path, model_sha256: str, plan, start: int, stop: int):
    """Run on a worker: ``evaluate_range`` of images start..stop-1 -> (correct, tallies)."""
    return evaluate_range(model_for(model_path, model_sha256), plan, start, stop)


def evaluate_on_cluster(model=None, *, workers=None, scheduler=None, client=None,
                        progress: bool = False, batches_per_task: int = 1,
                        **options) -> dict:
    """``run_evaluation(load(model), progress=progress, **options)``, computed on Dask.

    - model: a weights .npz path that every worker can read (None: the shipped model)
    - workers / scheduler / client: as for ``attribute_dataset``
    - batches_per_task: batches of ``options["batch_size"]`` images per task
    - options: ``run_evaluation``'s (n_images, methods, batch_size, slow_limit, ...)
    Raises what run_evaluation raises before any work, and SchedulerError. Returns
    run_evaluation's dict.
    """
    from minicnn.io.weights import default_weights_path, load
    weights = Path(default_weights_path() if model is None else model).resolve()
    plan = plan_evaluation(load(weights), **options)
    sha = file_sha256(weights)
    path = None if model is None else str(weights)
    ranges = plan.ranges(batches_per_task)
    started = time.perf_counter()
    if client is not None:
        parts = _run(client, path, sha, plan, ranges, progress)
    else:
        with connect(workers, scheduler) as new:
            parts = _run(new, path, sha, plan, ranges, progress)
    return finish_evaluation(plan, parts, time.perf_counter() - started)


def _run(client, path, sha, plan, ranges, progress):
    from distributed import as_completed
    job = uuid.uuid4().hex[:8]
    futures = [client.submit(evaluate_range_task, path, sha, plan, a, b,
                             key=f"minicnn-evaluate-{a}-{job}", pure=False)
               for a, b in ranges]
    cost = {f.key: plan.work(a, b) for f, (a, b) in zip(futures, ranges)}
    with progress_bar(plan.work(), "evaluate", progress, percent=True) as bar:
        try:
            for future in as_completed(futures):
                future.result()
                bar.update(cost[future.key])
        finally:
            client.cancel([f for f in futures if not f.done()])
    return [f.result() for f in futures]          # in image order
