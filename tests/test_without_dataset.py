"""The README's test command on a machine without Fashion-MNIST: every test that reads the
dataset must skip there, not fail. This runs each test module that mentions the dataset in
a subprocess with $MINICNN_FASHION_MNIST pointing at an empty folder."""
import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
READS_THE_DATASET = re.compile(r"\b(make_cluttered|load_fashion_mnist)\(")  # the two readers


def test_tests_that_need_the_dataset_skip_without_it(tmp_path):
    modules = sorted(str(p) for p in TESTS.rglob("test_*.py")
                     if p != Path(__file__).resolve() and READS_THE_DATASET.search(p.read_text()))
    assert len(modules) >= 2, modules          # the finder still finds them
    env = dict(os.environ, MINICNN_FASHION_MNIST=str(tmp_path), PYTHONPATH=str(TESTS.parent))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *modules], capture_output=True, text=True, env=env, timeout=1200,
                          cwd=TESTS.parent)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0 and "failed" not in summary and "error" not in summary, \
        done.stdout[-3000:]
    assert "skipped" in summary, summary       # the ones that need the files did skip
