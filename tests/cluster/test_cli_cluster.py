"""``minicnn attribute`` and ``minicnn evaluate --workers/--scheduler``: end to end, and
one line + exit 2 for bad input (issue 14)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn.cli import main
from minicnn.cluster import client as cluster_client_module
from tests.cluster.conftest import ROOT, write_images

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def open_group(path):
    zarr = pytest.importorskip("zarr")
    return zarr.open_group(str(path), mode="r")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_attribute_on_an_existing_cluster_then_resumed(capsys, address, model_path, images,
                                                       tmp_path):
    folder, names = images
    out = tmp_path / "maps.zarr"
    argv = ["attribute", folder, "--methods", "gradient,grad_cam", "--out", out, "--chunk", 8,
            "--model", model_path, "--scheduler", address]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert "40 images, gradient, grad_cam: 5 chunk(s) computed" in stdout
    assert "attribute [" in err                                  # the progress bar
    g = open_group(out)
    assert g["gradient"].shape == (40, 32, 32) and g["done"][:].all()
    assert (tmp_path / "maps_predictions.csv").read_text().count("\n") == 41
    code, stdout, err = run(capsys, *argv)                      # again: nothing to do
    assert code == 0 and "0 chunk(s) computed, 5 already complete and skipped" in stdout


def test_attribute_on_local_worker_processes_by_default(dask_extra, model_path, tmp_path):
    """The laptop run: no address, a LocalCluster of --workers processes, in a subprocess
    as a user runs it."""
    folder = tmp_path / "imgs"
    write_images(folder, 12)
    done = subprocess.run([sys.executable, "-m", "minicnn", "attribute", str(folder),
                           "--out", str(tmp_path / "s.zarr"), "--workers", "2", "--chunk", "4",
                           "--model", str(model_path)], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "12 images, gradient: 3 chunk(s) computed" in done.stdout
    assert open_group(tmp_path / "s.zarr")["ok"][:].all()


def test_an_unreadable_image_is_one_line_at_the_end_and_the_job_goes_on(capsys, address,
                                                                      model_path, tmp_path):
    folder = tmp_path / "imgs"
    names = write_images(folder, 9)
    (folder / names[4]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, stdout, err = run(capsys, "attribute", folder, "--out", tmp_path / "s.zarr",
                            "--model", model_path, "--scheduler", address, "--chunk", 4)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("minicnn: error: 1 of 9 images could not be read, listed in ")
    assert str(folder / names[4]) in last
    assert "9 images, gradient: 3 chunk(s) computed" in stdout
    csv_text = (tmp_path / "s_predictions.csv").read_text()
    assert f"{names[4]},False,-1" in csv_text
    assert np.isfinite(open_group(tmp_path / "s.zarr")["gradient"][5]).all()


@pytest.mark.parametrize("case, expected", [
    ("unknown method", "unknown method 'gradcam': choose one of gradient,"),
    ("no source", "attribute: give a SOURCE folder of images, or --split test -n N"),
    ("missing folder", "nowhere: no such folder"),
    ("empty folder", "no image files in this folder or below it"),
    ("source is a file", "is a file; give a folder of images (or --split test)"),
    ("out is a file", "taken.zarr: is a file, not a Zarr store (a folder)"),
    ("split without n", "--split test needs -n N"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_work(dask_extra, capsys, model_path,
                                                          images, tmp_path, case, expected):
    folder, _ = images
    (tmp_path / "empty").mkdir()
    (tmp_path / "taken.zarr").write_text("a file")
    (tmp_path / "pic.png").write_bytes(b"x")
    argv = {"unknown method": [folder, "--methods", "gradient,gradcam"],
            "no source": [],
            "missing folder": [tmp_path / "nowhere"],
            "empty folder": [tmp_path / "empty"],
            "source is a file": [tmp_path / "pic.png"],
            "out is a file": [folder],
            "split without n": ["--split", "test"]}[case]
    out = tmp_path / ("taken.zarr" if case == "out is a file" else "new.zarr")
    code, _, err = run(capsys, "attribute", *argv, "--out", out, "--model", model_path,
                       "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2
    line = one_line(err)
    assert line.startswith("minicnn: error: ") and expected in line, line
    assert not (tmp_path / "new.zarr").exists()


def test_a_store_of_another_method_set_is_refused_unless_overwrite(capsys, address,
                                                                   model_path, tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 5)
    argv = ["attribute", folder, "--out", tmp_path / "s.zarr", "--model", model_path,
            "--scheduler", address]
    assert run(capsys, *argv)[0] == 0
    code, _, err = run(capsys, *argv, "--methods", "gradient,grad_cam")
    assert code == 2
    assert "holds maps of another method set (gradient, asked gradient,grad_cam); use " \
           "--overwrite" in one_line(err)
    code, stdout, _ = run(capsys, *argv, "--methods", "gradient,grad_cam", "--overwrite")
    assert code == 0 and "1 chunk(s) computed" in stdout


def test_an_unreachable_scheduler_is_one_line_and_exit_2(dask_extra, capsys, model_path,
                                                        images, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_client_module, "CONNECT_TIMEOUT", 2)
    folder, _ = images
    code, _, err = run(capsys, "attribute", folder, "--out", tmp_path / "s.zarr",
                       "--model", model_path, "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2
    line = one_line(err)
    assert line.startswith("minicnn: error: cannot reach the Dask scheduler at "
                           "'tcp://127.0.0.1:9' within 2 s"), line
    with pytest.raises(SystemExit) as stop:                     # argparse: both at once
        main(["attribute", str(folder), "--out", str(tmp_path / "s.zarr"), "--workers", "2",
              "--scheduler", "tcp://127.0.0.1:9"])
    assert stop.value.code == 2
    assert "argument --scheduler: not allowed with argument --workers" in \
        one_line(capsys.readouterr().err)


def test_without_dask_the_command_says_what_to_install(tmp_path):
    blocker = ("import sys; sys.modules['distributed'] = None; sys.modules['zarr'] = None; "
               "from minicnn.cli import main; sys.exit(main(sys.argv[1:]))")
    for argv in (["attribute", str(tmp_path), "--out", str(tmp_path / "s.zarr")],
                 ["evaluate", "--workers", "2", "--out", str(tmp_path / "e")]):
        done = subprocess.run([sys.executable, "-c", blocker, *argv], capture_output=True,
                              text=True, env=ENV, timeout=120)
        assert done.returncode == 2, done.stderr
        line = one_line(done.stderr)
        assert 'pip install -e ".[dask]"' in line and 'pip install "dask[distributed]" zarr' \
            in line, line
        assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "e").exists()


def test_minicnn_never_imports_dask_zarr_or_torch_by_itself():
    code = ("import sys, minicnn, minicnn.cli; minicnn.cli.build_parser(); "
            "print(sorted(m for m in ('dask', 'distributed', 'zarr', 'torch') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_evaluate_on_the_cluster_writes_the_same_results(capsys, address, tmp_path):
    """The same results.json, bit for bit, as one process on one minicnn thread and one BLAS
    thread (as each worker runs; tests/cluster/test_evaluate.py says why the thread count
    matters)."""
    from minicnn.io.datasets import DatasetNotFoundError, make_cluttered
    try:
        make_cluttered([0], "test", 0)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not installed")
    argv = ["evaluate", "-n", "12", "--methods", "gradient,grad_cam", "--slow-limit", "0",
            "--graphcut-limit", "0", "--curve-limit", "3"]
    done = subprocess.run([sys.executable, "-m", "minicnn", *argv, "--out",
                           str(tmp_path / "one")], capture_output=True, text=True,
                          env=dict(ENV, MINICNN_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"), timeout=300)
    assert done.returncode == 0, done.stderr
    code, stdout, err = run(capsys, *argv, "--out", tmp_path / "many", "--scheduler", address)
    assert code == 0, err
    assert "| gradient |" in stdout and "evaluate [" in err
    texts = []
    for d in ("one", "many"):
        r = json.loads((tmp_path / d / "results.json").read_text())
        r["settings"].pop("seconds")
        texts.append(json.dumps(r, sort_keys=True))
    assert texts[0] == texts[1]
