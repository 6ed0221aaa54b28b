"""The package's layout: imports only run downward, and no module imports itself in a circle.

Every module of minicnn is parsed with ``ast`` (imports inside functions included) and each
import of minicnn is checked against the rooms below. A room may import itself and the rooms
listed for it, nothing else:

    _checks, _progress   shared plumbing, import nothing of minicnn
    engine               layers, model, kernels
    io, saliency         files in and out / the attribution methods, on the engine
    experiments          the paper's experiments and the evaluation, on those
    viz                  figures and report files (draws arrays; io only to write files)
    explain              one image from file to figure, on everything below
    explore              the explorer page's server (an extra), on explain and what it uses
    cluster              whole datasets on Dask: maps into a Zarr store, evaluation in ranges
    cli                  the command line, on top
    minicnn              the package's front door (load, save, layers, from_torch)

Inside the engine, the fast path is a room of its own: the files a student reads for the
maths (layers.py, model.py and the reference kernels) never import ``kernels/fast/``.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minicnn"

BASE = {"minicnn._checks", "minicnn._progress"}
ALLOWED = {
    "minicnn._checks": set(),
    "minicnn._progress": set(),
    "minicnn.engine": BASE,
    "minicnn.io": BASE | {"minicnn.engine"},
    "minicnn.saliency": BASE | {"minicnn.engine"},
    "minicnn.experiments": BASE | {"minicnn.engine", "minicnn.io", "minicnn.saliency"},
    "minicnn.viz": BASE | {"minicnn.io"},
    "minicnn.explain": BASE | {"minicnn.engine", "minicnn.io", "minicnn.saliency",
                               "minicnn.experiments", "minicnn.viz"},
    "minicnn.explore": BASE | {"minicnn.engine", "minicnn.io", "minicnn.saliency",
                               "minicnn.experiments", "minicnn.viz", "minicnn.explain"},
    "minicnn.cluster": BASE | {"minicnn.engine", "minicnn.io", "minicnn.saliency",
                               "minicnn.experiments"},
    "minicnn.cli": BASE | {"minicnn.engine", "minicnn.io", "minicnn.saliency",
                           "minicnn.experiments", "minicnn.viz", "minicnn.explain",
                           "minicnn.cluster", "minicnn.explore"},
    "minicnn.__main__": {"minicnn.cli"},
    "minicnn": BASE | {"minicnn.engine", "minicnn.io"},
}


def modules() -> dict:
    """{dotted module name: path} of every .py file in the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("minicnn",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict) -> set:
    """The minicnn modules that ``name`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y, from .. import z
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from a import b" names the module a.b when there is one, else a's attribute
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        out |= {t for t in targets if t == "minicnn" or t.startswith("minicnn.")}
    return out


def room(name: str) -> str:
    """The longest key of ALLOWED that ``name`` lies in."""
    return max((r for r in ALLOWED if name == r or name.startswith(r + ".")), key=len)


def graph() -> dict:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_room():
    for name in modules():
        assert room(name) in ALLOWED, name
    rooms = {room(name) for name in modules()}
    assert rooms == set(ALLOWED), set(ALLOWED) - rooms


def test_imports_only_run_downward():
    wrong = []
    for name, targets in graph().items():
        own = room(name)
        for target in targets:
            there = room(target)
            if there != own and there not in ALLOWED[own]:
                wrong.append(f"{name} imports {target} ({own} may use {sorted(ALLOWED[own])})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


FAST = "minicnn.engine.kernels.fast"


def test_the_readable_engine_never_imports_the_fast_path():
    """Every engine module outside kernels/fast/ (the layers, the model, the reference
    kernels and the switch, settings, frozen weights) keeps its imports out of it."""
    edges = graph()
    readable = [n for n in edges if n.startswith("minicnn.engine")
                and not (n == FAST or n.startswith(FAST + "."))]
    assert {"minicnn.engine.layers.conv", "minicnn.engine.model",
            "minicnn.engine.kernels.reference"} <= set(readable)
    for name in readable:
        wrong = [t for t in edges[name] if t == FAST or t.startswith(FAST + ".")]
        assert not wrong, f"{name} imports {wrong}: the fast path must stay out of it"


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    """The test can fail: an engine module that imports the saliency package is caught, and
    so is a circle, also through an import inside a function."""
    fake = tmp_path / "minicnn"
    (fake / "engine").mkdir(parents=True)
    (fake / "saliency").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "engine" / "__init__.py").write_text("")
    (fake / "engine" / "layers.py").write_text("def f():\n    from minicnn import saliency\n")
    (fake / "saliency" / "__init__.py").write_text("from minicnn.engine import layers\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    edges = graph()
    assert edges["minicnn.engine.layers"] == {"minicnn.saliency"}
    assert edges["minicnn.saliency"] == {"minicnn.engine.layers"}
    assert room("minicnn.saliency") not in ALLOWED[room("minicnn.engine.layers")]
