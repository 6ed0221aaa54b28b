"""examples/tutorial.ipynb: it runs from top to bottom without an error (so it cannot rot),
and it is committed with its outputs (so it reads on a code host without running)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "tutorial.ipynb"


def test_the_committed_notebook_carries_its_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert all(o.get("output_type") != "error" for c in code for o in c.outputs)
    pictures = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert pictures >= 12                     # every step has its picture


def test_the_notebook_runs_without_error(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()                          # raises CellExecutionError on any failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
