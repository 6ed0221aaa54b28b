"""Saliency maps and evaluations for whole datasets, on Dask distributed.

Dask (https://distributed.dask.org) runs the work; minicnn only says what one task is:

- ``attribute.py``: ``attribute_dataset``, the maps of every image of a folder or of the
  test split, written by the workers into a Zarr store (``store.py``), a chunk of images
  per task;
- ``evaluate.py``: ``evaluate_on_cluster``, ``run_evaluation`` with its images split into
  ranges over the workers and the tallies joined exactly;
- ``client.py``: the Dask client: a ``LocalCluster`` of worker processes on this machine by
  default, or an existing cluster by its scheduler's address;
- ``workers.py``: what happens inside a worker process: one thread for minicnn and BLAS,
  the model loaded once per worker thread;
- ``sources.py``: which images a job covers (a folder, recursively, or the test split).

Dask and Zarr are an optional extra (``pip install -e ".[dask]"``); ``import minicnn`` never
imports them, and ``require()`` turns their absence into one line naming the install.
"""
from __future__ import annotations

__all__ = ["require", "MissingExtraError", "INSTALL_HINT"]

INSTALL_HINT = ('the Dask commands need dask[distributed] and zarr: pip install -e ".[dask]" '
                '(in a checkout) or pip install "dask[distributed]" zarr')


class MissingExtraError(ImportError):
    """dask.distributed or zarr cannot be imported."""


def require() -> None:
    """Import dask.distributed and zarr, or raise MissingExtraError saying what to install."""
    try:
        import dask.distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(f"{INSTALL_HINT} ({e})") from None
