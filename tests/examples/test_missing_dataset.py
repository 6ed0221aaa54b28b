"""The example scripts without the Fashion-MNIST files: one line on stderr naming the
script's own --data-dir and $MINICNN_FASHION_MNIST, exit code 2, nothing written."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script, needs_torch", [("evaluate.py", False), ("fooling.py", False),
                                                 ("sanity_checks.py", False),
                                                 ("train_cluttered.py", True)])
def test_missing_fashion_mnist_is_one_line(tmp_path, script, needs_torch):
    if needs_torch:
        pytest.importorskip("torch")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ, MINICNN_FASHION_MNIST=str(empty), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: Fashion-MNIST "), lines
    for part in (str(empty / "t10k-images-idx3-ubyte.gz") if script != "train_cluttered.py"
                 else str(empty / "train-images-idx3-ubyte.gz"),
                 "apt-get install dataset-fashion-mnist", "four *-ubyte.gz files",
                 "pass --data-dir DIR or set $MINICNN_FASHION_MNIST"):
        assert part in lines[0], part
    assert sorted(os.listdir(tmp_path)) == ["empty"]
