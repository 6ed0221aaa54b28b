"""Faults and restarts (issue 14 item 4, issue 24 item 8): a worker process killed in the
middle of a run, or at any moment while the LocalCluster starts or the client connects,
is replaced and nothing is lost or duplicated; workers that cannot start at all are one
line, exit 2, and the same command run again resumes the store; a rerun of an
interrupted job computes only the chunks that were not complete."""
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest


pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from minicnn.cluster import client as client_module
from minicnn.cluster.attribute import attribute_dataset
from tests.cluster.conftest import PYTHONPATH, write_images
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


KILL_ONCE_AT_START = """\
import os, signal
try:
    with open({marker!r}, "x") as f:
        f.write(str(os.getpid()))
except FileExistsError:
    pass
else:
    os.kill(os.getpid(), signal.SIGKILL)
"""


def kill_once_at_start(marker: str) -> str:
    """A worker preload (the text of a module, which Dask runs in each worker process as
    it makes the worker, before the worker has connected to its nanny) that SIGKILLs its
    own process, in the first worker process only: ``marker``, created exclusively,
    records its pid. That is the moment at which a kill used to stop the job; a preload
    reaches it every time, where a kill from outside would depend on timing."""
    return KILL_ONCE_AT_START.format(marker=marker)


def test_a_worker_killed_while_the_cluster_starts_loses_nothing(cluster_client, model_path,
                                                                images, tmp_path,
                                                                monkeypatch):
    """The worker's nanny fails to start; LocalCluster(n_workers=2) then closes and raises,
    so connect starts the cluster again."""
    import dask
    folder, _ = images
    options = dict(model=model_path, chunk=8)
    attribute_dataset(folder, ["gradient", "grad_cam"], tmp_path / "clean.zarr",
                      client=cluster_client, **options)
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH)                 # for the new workers
    marker = tmp_path / "killed"
    with dask.config.set({"distributed.worker.preload": [kill_once_at_start(str(marker))]}):
        r = attribute_dataset(folder, ["gradient", "grad_cam"], tmp_path / "hit.zarr",
                              workers=2, **options)
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert r["computed"] == [0, 1, 2, 3, 4] and r["unreadable"] == []
    assert_same_store(tmp_path / "clean.zarr", tmp_path / "hit.zarr")


def test_a_worker_that_dies_as_its_nanny_starts_is_replaced(dask_extra, monkeypatch):
    """A worker process that dies after it has connected, before its nanny counts itself
    started, is never restarted by Dask: connect starts the cluster again rather than run
    a worker short (with one worker: no worker at all, and a job would wait forever)."""
    from distributed import Nanny
    from distributed.core import Status
    instantiate, killed = Nanny.instantiate, []

    async def instantiate_then_kill(nanny):
        status = await instantiate(nanny)
        if not killed and nanny.status == Status.init:      # starting, not restarting
            killed.append(nanny.process.pid)
            os.kill(nanny.process.pid, signal.SIGKILL)
            await nanny.process.stopped.wait()   # the nanny has seen the process exit and
            await asyncio.sleep(0.5)             # queued its decision: let that run first
        return status

    # the nannies of a LocalCluster run in this process, on its event loop thread
    monkeypatch.setattr(Nanny, "instantiate", instantiate_then_kill)
    monkeypatch.setattr(client_module, "START_TIMEOUT", 5)
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH)
    with client_module.connect(workers=1) as client:
        pids = list(client.run(os.getpid).values())
    assert killed, "no worker was killed: the test did not test anything"
    assert len(pids) == 1 and pids[0] != killed[0]


def test_a_worker_that_dies_as_connect_sends_the_plugin_is_replaced(cluster_client, address,
                                                                    tmp_path):
    """connect(scheduler=...) sends OneThreadPerWorker to every worker; one that dies
    meanwhile is replaced by its nanny and the new worker gets the plugin too. A worker
    replaces a plugin of the same name by calling the old one's teardown: there, the
    first worker kills itself, in the middle of the scheduler's call."""
    from distributed import WorkerPlugin

    from minicnn.cluster.workers import OneThreadPerWorker
    marker = str(tmp_path / "killed")

    class KillOnceOnTeardown(WorkerPlugin):
        name = OneThreadPerWorker.name

        def teardown(self, worker):
            try:
                with open(marker, "x") as f:
                    f.write(worker.address)
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)

    cluster_client.register_plugin(KillOnceOnTeardown())
    try:
        with client_module.connect(scheduler=address) as client:
            assert os.path.exists(marker), "no worker was killed: nothing was tested"
            with open(marker) as f:
                wait_until_replaced(client, f.read())
            plugins = client.run(lambda dask_worker: type(
                dask_worker.plugins[OneThreadPerWorker.name]).__name__)
    finally:
        cluster_client.register_plugin(OneThreadPerWorker())     # as the other tests expect
    assert list(plugins.values()) == ["OneThreadPerWorker"] * 2


def wait_until_replaced(client, dead: str, n: int = 2, timeout: float = 60):
    """Wait until the scheduler has forgotten the worker at address ``dead`` and has
    ``n`` workers again (its nanny started a new process, at a new address)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        if dead not in workers and len(workers) == n:
            return
        assert time.monotonic() < deadline, f"not replaced in {timeout} s: {list(workers)}"
        time.sleep(0.1)


# Every worker process exits as Dask makes its worker, before it connects: Dask reads its
# configuration from DASK_* variables, a preload with a space in it is a module's text.
NO_WORKER_ENV = dict(os.environ, PYTHONPATH=PYTHONPATH,
                     DASK_DISTRIBUTED__WORKER__PRELOAD=repr(["import os; os._exit(3)"]))
START_FAILED = ("minicnn: error: the local Dask cluster could not start its 2 worker "
                "process(es) in 3 attempts: ")


def minicnn_command(*argv, env):
    return subprocess.run([sys.executable, "-m", "minicnn", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_when_no_worker_can_start_the_same_command_run_again_resumes(dask_extra, model_path,
                                                                     tmp_path):
    folder, out = tmp_path / "imgs", tmp_path / "s.zarr"
    write_images(folder, 12)
    argv = ["attribute", folder, "--out", out, "--workers", 2, "--chunk", 4,
            "--model", model_path]
    failed = minicnn_command(*argv, env=NO_WORKER_ENV)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(START_FAILED), failed.stderr
    assert lines[0].endswith(f"; {out} keeps its 0 complete chunk(s) of 3: run the same "
                             f"command again to resume it"), lines[0]
    assert not zarr.open_group(str(out), mode="r")["done"][:].any()
    env = dict(NO_WORKER_ENV, DASK_DISTRIBUTED__WORKER__PRELOAD="[]")   # workers start now
    done = minicnn_command(*argv, env=env)
    assert done.returncode == 0, done.stderr
    assert "12 images, gradient: 3 chunk(s) computed" in done.stdout
    assert zarr.open_group(str(out), mode="r")["done"][:].all()


def test_when_no_worker_can_start_evaluate_is_one_line_and_exit_2(dask_extra, tmp_path):
    from minicnn.io.datasets import DatasetNotFoundError, make_cluttered
    try:
        make_cluttered([0], "test", 0)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not installed")
    failed = minicnn_command("evaluate", "-n", 4, "--methods", "gradient", "--slow-limit", 0,
                             "--graphcut-limit", 0, "--curve-limit", 0, "--workers", 2,
                             "--out", tmp_path / "e", env=NO_WORKER_ENV)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(START_FAILED), failed.stderr
    assert not (tmp_path / "e").exists()


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
