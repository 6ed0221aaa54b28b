"""Faults and restarts (issue 14 item 4): a worker process killed in the middle of a run
loses and duplicates nothing, and a rerun of an interrupted job computes only the chunks
that were not complete."""
import os
import shutil
import signal

import numpy as np
import pytest


pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from minicnn.cluster.attribute import attribute_dataset
ARRAYS = ("gradient", "grad_cam", "class", "score", "probability", "ok", "error", "image",
          "done")


def assert_same_store(a, b):
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)
    assert dict(ga.attrs) == dict(gb.attrs)


def kill_once_plugin(marker: str, tag: str):
    """A worker plugin that SIGKILLs its own worker process when a task whose key holds
    ``tag`` starts executing, the first time only (``marker`` records that it happened)."""
    from distributed import WorkerPlugin

    class KillOnce(WorkerPlugin):
        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and tag in str(key) and not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)

    return KillOnce()


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster_client, model_path,
                                                              images, tmp_path):
    folder, _ = images
    options = dict(model=model_path, chunk=8, client=cluster_client)
    attribute_dataset(folder, ["gradient", "grad_cam"], tmp_path / "clean.zarr", **options)
    marker = tmp_path / "killed"
    cluster_client.register_plugin(kill_once_plugin(str(marker), "minicnn-chunk-2-"),
                                   name="kill-once")
    try:
        r = attribute_dataset(folder, ["gradient", "grad_cam"], tmp_path / "hit.zarr",
                              **options)
    finally:
        cluster_client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "no worker was killed: the test did not test anything"
    killed = int(marker.read_text())
    cluster_client.wait_for_workers(2, timeout=60)           # the nanny restarted it
    assert killed not in cluster_client.run(os.getpid).values()
    assert r["computed"] == [0, 1, 2, 3, 4] and r["unreadable"] == []
    assert_same_store(tmp_path / "clean.zarr", tmp_path / "hit.zarr")


def test_a_rerun_skips_complete_chunks_and_redoes_partial_ones(cluster_client, model_path,
                                                              images, tmp_path):
    folder, _ = images
    options = dict(model=model_path, chunk=8, client=cluster_client)
    clean, resumed = tmp_path / "clean.zarr", tmp_path / "resumed.zarr"
    attribute_dataset(folder, ["gradient", "grad_cam"], clean, **options)
    shutil.copytree(clean, resumed)
    g = zarr.open_group(str(resumed), mode="r+")
    # an interrupted job: chunk 1 never marked, chunk 3 half written (maps, no predictions)
    g["done"][1] = False
    g["done"][3] = False
    g["gradient"][24:32] = np.float32(7.0)
    g["class"][24:32] = -1
    kept = resumed / "gradient" / "c" / "0" / "0" / "0"           # chunk 0's maps
    assert kept.is_file()
    before = kept.stat().st_mtime_ns
    r = attribute_dataset(folder, ["gradient", "grad_cam"], resumed, **options)
    assert r["computed"] == [1, 3] and r["skipped"] == 3
    assert kept.stat().st_mtime_ns == before                      # not written again
    assert_same_store(clean, resumed)
    # everything complete: nothing to compute, and no cluster is needed to say so
    r = attribute_dataset(folder, ["gradient", "grad_cam"], resumed, model=model_path,
                          chunk=8)
    assert r["computed"] == [] and r["skipped"] == 5
