"""examples/tutorial.ipynb: it runs from top to bottom without an error (so it cannot rot), also
on the base install, without any extra (each cell that needs one says so and moves on), and it
is committed with its outputs (so it reads on a code host without running)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "tutorial.ipynb"
# The top-level modules of the extras and of the test dependencies, none of which
# `pip install -e .` brings: OpenCV ("localize"), Dask and Zarr ("dask"), and torch, Captum
# and SciPy (the tests' oracles).
EXTRAS = ("cv2", "dask", "distributed", "zarr", "torch", "captum", "scipy")


def _execute(nb, tmp_path):
    """Run the notebook in a fresh kernel; the outputs of every code cell (no errors)."""
    nbclient = pytest.importorskip("nbclient")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()                          # raises CellExecutionError on any failing cell
    outputs = [c.outputs for c in nb.cells if c.cell_type == "code"]
    assert not [o for cell in outputs for o in cell if o.get("output_type") == "error"]
    return outputs


def _pictures(outputs) -> int:
    return sum("image/png" in o.get("data", {}) for cell in outputs for o in cell)


def _printed(outputs) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def test_the_committed_notebook_carries_its_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert all(o.get("output_type") != "error" for c in code for o in c.outputs)
    assert _pictures(c.outputs for c in code) >= 12      # every step has its picture


def test_the_notebook_runs_without_error(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    _execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path)


def test_the_notebook_runs_on_the_base_install(tmp_path):
    """A first cell makes every extra unimportable in the kernel, as on `pip install -e .`
    (`import` raises ImportError for a name whose sys.modules entry is None). The three
    cells that need OpenCV say how to install it, and every cell runs."""
    nbformat = pytest.importorskip("nbformat")
    from minicnn.experiments.localize import GRAPHCUT_INSTALL_HINT
    from minicnn.experiments.metrics import OPENCV_SALIENCY_HINT
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        "import sys\n"
        f"for name in {EXTRAS!r}:\n"
        "    assert name not in sys.modules, name   # too late to hide it\n"
        "    sys.modules[name] = None\n"))
    outputs = _execute(nb, tmp_path)
    said = [_printed(cell) for cell in outputs]
    assert sum(OPENCV_SALIENCY_HINT in text for text in said) == 2      # sections 1 and 9
    assert sum(GRAPHCUT_INSTALL_HINT in text for text in said) == 1     # the graph cut
    committed = nbformat.read(NOTEBOOK, as_version=4).cells
    assert _pictures(c.outputs for c in committed if c.cell_type == "code") - 2 \
        == _pictures(outputs)                 # only the two detector figures are missing
