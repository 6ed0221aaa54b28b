"""What the explorer page can choose, and every answer it asks for: the computing side, no HTTP
(``server.py`` serves it).

- networks: the shipped model, the weights files named on the command line (loaded and
  checked before the server starts), and every ImageNet network ``minicnn fetch`` has put in
  the cache (loaded when first chosen);
- images: the shipped samples and matplotlib's photo, the files named on the command line,
  and files dropped on the page (``upload``), which obey the command line's reading rule and
  limits (``minicnn.io.images``: MAX_PIXELS, MAX_ASPECT) and, before any of that, a size in
  bytes (``MAX_UPLOAD_BYTES``);
- answers, each computed by the functions the command line uses, so the page's map is the
  one ``minicnn saliency`` writes:

      classify(net, image)                 the input as the network saw it, top-5, warning
      explain(net, image, method, ...)     saliency.attribute -> to_map, signed map, box;
                                           for lrp, saliency.lrp_ledger: also the ledger
      trace(net, image, target, method)    experiments.trace: the gradient at every layer,
                                           or (method "lrp") the relevance

A change recomputes only what it changes. Each network runs behind ``_Remembered``, which
keeps its last forward pass: asking for another class, another method of the one-backward
family (gradient, guided backprop, deconvnet, input x gradient, Grad-CAM at any layer, LRP
by any rule) or the trace of the same image runs backward passes only. Answers are also kept
(a few per network) under a key made of what they are derived from: the image file's path,
size and modification time (or an upload's SHA-256), the method, its options, the class and
the layer.

Two tabs at once: a model keeps per-pass state in its layers (what backward needs), so two
passes on one model must not interleave. Every pass runs in one thread, one job after another
(``_Jobs``): the command line's main thread, while the HTTP requests wait for their answers
on threads of their own. Serialised rather than one model copy per request, because on this
2-core machine one pass already keeps both cores busy (the engine's own thread pool), so two
passes side by side would not finish sooner; a copy per request would hold a second set of
activations and lose the remembered forward pass. The MAIN thread, because the engine's
thread pool driven from any other thread ran the shipped model's occlusion 10-30 times
slower here (1.7 s against 20-55 s, measured on the loaded 2-core machine; with
MINICNN_NUM_THREADS=1 the gap disappears; docs/explore.md), a matter for the engine.
Until a thread calls ``run_forever`` (in a library or a test), a job runs in the thread
that asks, one at a time under a lock.
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import queue
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minicnn import saliency
from minicnn.experiments.localize import localize
from minicnn.experiments.trace import TRACE_METHODS, trace
from minicnn.explain import (ExplainError, class_names, ground_truth, method_options,
                             out_of_distribution, top_classes)
from minicnn.io.fetch import MODELS as FETCHABLE, model_status
from minicnn.io.images import (MAX_ASPECT, MAX_PIXELS, ImageReadError, Preprocess,
                               read_image, to_input)
from minicnn.io.samples import SAMPLES_DIR, load_sample_index, sample_photo
from minicnn.io.weights import load
from minicnn.viz.plotting import CMAP, DIVERGING

__all__ = ["Explorer", "ExploreError", "OPTIONS", "Option", "MAX_UPLOAD_BYTES", "MAX_UPLOADS",
           "LEDGER_METHODS", "LEDGER_COLUMNS"]

MAX_UPLOAD_BYTES = 100 << 20   # a file dropped on the page; a 89-megapixel JPEG is ~40 MB
MAX_UPLOADS = 32               # uploads kept on disk; the oldest is forgotten after that
_KEPT = 16                     # answers kept per network and kind (LRU)
_TOP = 5

# Methods whose answer carries a "ledger" (``_ledger``: LRP's relevance, node by node, and
# where the part that did not reach the pixels went); the page shows it as a table
# (static/app.js, renderLedger).
LEDGER_METHODS: frozenset = frozenset({"lrp"})

# The ledger's columns: (key in ``Graph.ledger``, heading, what it is), as the page shows them.
LEDGER_COLUMNS = (
    ("name", "node", "from the score (top) back to the pixels (bottom)"),
    ("layer", "layer", "the node's type"),
    ("rule", "rule", "how it shares relevance among its inputs"),
    ("relevance_out", "relevance out", "what reached its output (top row: the score S_c)"),
    ("relevance_in", "passed on", "what it handed to its inputs"),
    ("bias", "bias", "what its bias took (negative: created)"),
    ("stabiliser", "stabiliser", "what the rule's stabiliser took (epsilon in z + epsilon)"),
    ("batchnorm", "BatchNorm", "what a BatchNorm's shift took"),
    ("residual", "residual", "relevance out - passed on - bias - stabiliser - BatchNorm: "
                             "conservation's error (rounding, or relevance a rule dropped)"),
)


class ExploreError(ValueError):
    """A request the explorer cannot answer (an unknown network, image, method, option or
    class; a forgotten upload; a port in use). One line, shown on the page."""


# ============================================================================ method options

@dataclass(frozen=True)
class Option:
    """One option of a method that the page offers: name, kind ("int", "float" or
    "choice"), its default (the method's own, read from its signature), and the range or the
    choices the page offers and the server accepts."""

    name: str
    kind: str
    default: object
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def parse(self, method: str, text: str):
        """The option's value from the page's text; ExploreError out of range."""
        if self.kind == "choice":
            if text not in self.choices:
                raise ExploreError(f"{method}: {self.name} must be one of "
                                   f"{', '.join(self.choices)}, got {text!r}")
            return text
        try:
            value = int(text) if self.kind == "int" else float(text)
        except ValueError:
            raise ExploreError(f"{method}: {self.name} must be a number ({self.kind}), got "
                               f"{text!r}") from None
        if not (np.isfinite(value) and self.low <= value <= self.high):
            raise ExploreError(f"{method}: {self.name} must lie in {self.low}..{self.high}, "
                               f"got {text}")
        return value


def _default(method: str, option: str):
    return inspect.signature(saliency.METHODS[method].function).parameters[option].default


# What the page may change, besides the Grad-CAM layer (a list of its own, from the model).
# The upper bounds keep one click from occupying the machine for hours; seeds stay fixed
# (explain.SEED) so a map is the command line's map.
_INNER = ("gradient", "guided_backprop", "deconvnet", "input_x_gradient")
OPTIONS = {
    "smoothgrad": (
        Option("n_samples", "int", saliency.DEFAULT_SAMPLES, 1, 500),
        Option("noise_level", "float", _default("smoothgrad", "noise_level"), 0.0, 1.0),
        Option("kind", "choice", _default("smoothgrad", "kind"),
               choices=tuple(saliency.SMOOTHGRAD_KINDS)),
        Option("method", "choice", "gradient", choices=_INNER)),
    "integrated_gradients": (
        Option("steps", "int", _default("integrated_gradients", "steps"), 1, 1000),
        Option("baseline", "choice", "zeros", choices=tuple(saliency.BASELINES)),
        Option("method", "choice", _default("integrated_gradients", "method"),
               choices=tuple(saliency.IG_METHODS))),
    "occlusion": (
        Option("window", "int", _default("occlusion", "window"), 1, 512),
        Option("stride", "int", _default("occlusion", "stride"), 1, 512)),
    # the page offers rule_names(); the server checks any name against the model (``_rule``)
    "lrp": (
        Option("rule", "choice", saliency.DEFAULT_RULE, choices=tuple(saliency.rule_names())),),
}


def _rule(model, text) -> str:
    """LRP's rule from the page, checked as the command line checks ``--rule`` (cli._rule): a
    name ``saliency.resolve_rule`` knows (in any case, "_" for "-"), that applies to every
    layer of the model; else ExploreError with the command line's line."""
    try:
        model.rules_for(saliency.resolve_rule(text, model))
    except (ValueError, TypeError) as e:
        raise ExploreError(f"--rule {text}: {e}") from None
    return text


def _method_options(model, method: str, given: dict, layer) -> dict:
    """The keyword options for ``saliency.attribute``: what the command line passes
    (``explain.method_options``: SmoothGrad's seed, the layer) and the page's values."""
    known = {o.name: o for o in OPTIONS.get(method, ())}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ExploreError(f"{method} takes no option {unknown[0]!r}"
                           + (f": its options are {', '.join(known)}" if known else ""))
    options = method_options(method, False, layer)
    for name, text in given.items():
        value = (_rule(model, text) if (method, name) == ("lrp", "rule")
                 else known[name].parse(method, text))
        if value != known[name].default:    # the default is left to the method itself
            options[name] = saliency.get_method(value) if (method, name) == (
                "smoothgrad", "method") else value
    return options


# ============================================================================ images

@dataclass(frozen=True)
class _Picture:
    """An image the page can choose: its id on the page, its label, its group ("sample",
    "named", "uploaded"), the file, and the name messages use for it."""

    id: str
    label: str
    group: str
    path: Path
    name: str

    def key(self) -> tuple:
        """What an answer about this image is derived from: the file as it is now."""
        try:
            st = self.path.stat()
        except OSError:
            return (str(self.path),)                     # reading it will say what is wrong
        return (str(self.path), st.st_size, st.st_mtime_ns)


def _samples() -> list[tuple[Path, str]]:
    """The shipped samples (with their class) and matplotlib's photo."""
    found = []
    try:
        for name, info in load_sample_index(SAMPLES_DIR).items():
            found.append((SAMPLES_DIR / name, f"{name} ({info['class']})"))
    except (ValueError, OSError):
        pass
    try:
        photo = Path(sample_photo())
        found.append((photo, f"{photo.name} (a photo: for ImageNet networks)"))
    except (ImportError, OSError, ValueError):
        pass
    return found


def _shown_name(name: str) -> str:
    """An uploaded file's name as the page and messages show it: its last part, without
    control characters, at most 100 characters."""
    name = re.split(r"[\\/]", str(name))[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return (name or "upload")[:100]


# ============================================================================ the networks

class _Remembered:
    """A model that keeps its last forward pass: ``forward`` of the same input again returns
    that pass's scores without running it, the layers still holding what backward needs.
    Anything else (another input, ``predict``) runs the model and replaces what was kept.

    The input is compared by value, so nothing can go stale: the answer is the pass of
    exactly this x. Every other attribute is the model's own, so the saliency methods,
    ``saliency.attribute`` and ``experiments.trace`` take it as the model."""

    def __init__(self, model):
        self._model = model
        self._x = self._scores = None
        self.forwards = 0              # passes actually run (the tests count them)

    def forward(self, x):
        x = np.asarray(x)
        if (self._x is not None and x.shape == self._x.shape and x.dtype == self._x.dtype
                and np.array_equal(x, self._x)):
            return self._scores.copy()
        self._x = None
        scores = self._model.forward(x)                             # (N, K)
        self.forwards += 1
        self._x, self._scores = x.copy(), scores
        return scores.copy()

    __call__ = forward

    def predict(self, x):
        self._x = None                                              # the layers are overwritten
        return self._model.predict(x)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __getitem__(self, key):
        return self._model[key]

    def __len__(self):
        return len(self._model)


class _Jobs:
    """Where every pass runs: one job after another, in the thread that calls
    ``run_forever`` (see the module docstring), or, until one does, in the asking thread."""

    def __init__(self):
        self._queue = queue.SimpleQueue()
        self._inline = threading.Lock()
        self.looping = False

    def call(self, function, *args):
        """function(*args) when its turn comes; its result, or its exception raised here."""
        if not self.looping:
            with self._inline, np.errstate(all="ignore"):
                return function(*args)
        future = Future()
        self._queue.put((future, function, args))
        return future.result()

    def run_forever(self):
        """Run the jobs as they come, until KeyboardInterrupt (or another BaseException from
        a signal handler) stops this thread; the polling lets a signal in twice a second."""
        self.looping = True
        try:
            while True:
                try:
                    future, function, args = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    with np.errstate(all="ignore"):   # an overflow: reported by the NaN checks
                        future.set_result(function(*args))
                except Exception as error:            # handed to the request that asked
                    future.set_exception(error)
        finally:
            self.looping = False


class _Network:
    """One network the page can choose; its model is loaded on its first job.

    Everything below ``model`` is used only by jobs (``_Jobs``), one at a time: the
    remembered forward pass and the answers kept, so none of it needs a lock of its own."""

    def __init__(self, id: str, label: str, kind: str, path=None, model=None):
        self.id, self.label, self.kind, self.path = id, label, kind, path
        self._model = None if model is None else _Remembered(model)
        self.inputs = OrderedDict()       # picture key -> (x, pixels, size, notes)
        self.answers = OrderedDict()      # (kind, picture key, ...) -> answer
        self.cam_layers = None            # nodes with (C, h, w) outputs, after a forward

    @property
    def model(self) -> _Remembered:
        if self._model is None:                 # in a job: a fetched network, first use
            self._model = _Remembered(load(self.path))
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def kept(self, key, compute):
        """An answer from the last _KEPT of its kind, or compute() and keep it."""
        if key in self.answers:
            self.answers.move_to_end(key)
            return self.answers[key]
        value = compute()
        self.answers[key] = value
        if sum(1 for k in self.answers if k[0] == key[0]) > _KEPT:
            del self.answers[next(k for k in self.answers if k[0] == key[0])]
        return value


# ============================================================================ the explorer

class Explorer:
    """The networks and images of one ``minicnn explore`` session, and its answers.

    ``add_network(model, label, path)`` and ``add_image(path)`` are called before the server
    starts (the command line checks both and reports a bad one as its usual line);
    ``add_fetched()`` lists the networks of ``minicnn fetch``'s cache. The answers are dicts
    of numbers, strings and numpy arrays (``server.py`` encodes them)."""

    def __init__(self):
        self._networks: dict[str, _Network] = {}
        self._pictures: dict[str, _Picture] = {}
        self._lock = threading.Lock()            # the two registries (uploads add to them)
        self._ids = itertools.count()            # never reused, though uploads are forgotten
        self._uploads = tempfile.mkdtemp(prefix="minicnn-explore-")
        self._jobs = _Jobs()
        self.first_network = self.first_image = None

    def run_forever(self) -> None:
        """Run every pass in this thread, as the requests ask for them, until Ctrl-C (call it
        from the main thread: see the module docstring)."""
        self._jobs.run_forever()

    def close(self) -> None:
        """Remove the uploaded files."""
        shutil.rmtree(self._uploads, ignore_errors=True)

    # --- what can be chosen ---------------------------------------------------------------

    def add_network(self, model, label: str, path=None, kind: str = "named") -> str:
        """A loaded, checked model; -> its id. The first one added is the page's first."""
        with self._lock:
            id = f"net{next(self._ids)}"
            self._networks[id] = _Network(id, label, kind, path, model)
            self.first_network = self.first_network or id
        return id

    def first_model(self):
        """The model of the page's first network (the command line reads its preprocessing
        to check the images named with it)."""
        return self._networks[self.first_network].model

    def add_fetched(self, exclude=()) -> None:
        """Every network ``minicnn fetch`` knows; those not fetched are listed as such
        (``model_status`` is asked again whenever the page asks for the list). ``exclude``:
        paths already added by ``add_network``."""
        exclude = {Path(p).resolve() for p in exclude if p is not None}
        for name in FETCHABLE:
            status = model_status(name)
            if status.path is not None and Path(status.path).resolve() in exclude:
                continue
            with self._lock:
                self._networks[f"fetch-{name}"] = _Network(f"fetch-{name}", name, "fetched",
                                                           status.path)

    def add_samples(self) -> None:
        for path, label in _samples():
            self._add_picture(path, label, "sample", path.name)

    def add_image(self, path, prep: Preprocess) -> str:
        """An image named on the command line, read once now with ``prep`` so that a bad one
        is the command line's one line (ImageReadError) and the page never offers it."""
        read_image(path, prep, return_notes=True)
        return self._add_picture(Path(path), str(path), "named", str(path), first=True)

    def _add_picture(self, path: Path, label: str, group: str, name: str,
                     first: bool = False, id: str | None = None) -> str:
        with self._lock:
            id = id or f"img{next(self._ids)}"
            self._pictures[id] = _Picture(id, label, group, path, name)
            if self.first_image is None or (first and self._pictures[self.first_image].group
                                            != "named"):
                self.first_image = id
        return id

    def upload(self, name: str, data: bytes) -> dict:
        """A file dropped on the page: checked by the command line's reading rule now (any
        model's preprocessing gives the same verdict on a bad file); -> {"id", "label"}.
        ImageReadError naming the file as the user named it."""
        name = _shown_name(name)
        if len(data) > MAX_UPLOAD_BYTES:
            raise ImageReadError(f"{name}: {len(data):,} bytes, more than the upload limit "
                                 f"of {MAX_UPLOAD_BYTES:,}")
        digest = hashlib.sha256(data).hexdigest()[:16]
        id = f"up-{digest}"
        with self._lock:
            if id in self._pictures:
                return {"id": id, "label": self._pictures[id].label}
        folder = Path(self._uploads) / digest
        folder.mkdir(exist_ok=True)
        path = folder / "upload"
        path.write_bytes(data)
        try:
            read_image(path, Preprocess(), return_notes=True)
        except ImageReadError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise ImageReadError(str(e).replace(str(path), name)) from None
        label = f"{name} (uploaded)"
        self._add_picture(path, label, "uploaded", name, id=id)
        with self._lock:
            uploaded = [p for p in self._pictures.values() if p.group == "uploaded"]
            for old in uploaded[:-MAX_UPLOADS]:
                del self._pictures[old.id]
                shutil.rmtree(old.path.parent, ignore_errors=True)
        return {"id": id, "label": label}

    def info(self) -> dict:
        """Everything the page lists: networks, images, methods and their options, the
        colormaps, the limits."""
        import matplotlib
        with self._lock:
            networks = list(self._networks.values())
            pictures = list(self._pictures.values())
        listed = []
        for n in networks:
            entry = {"id": n.id, "label": n.label, "kind": n.kind, "available": True,
                     "note": ""}
            if n.kind == "fetched":
                status = model_status(n.label)
                entry.update(available=status.fetched, note=status.message)
            listed.append(entry)
        lut = lambda name: (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]  # noqa: E731
                            * 255).round().astype(np.uint8)                            # (256, 3)
        return {
            "networks": listed,
            "images": [{"id": p.id, "label": p.label, "group": p.group} for p in pictures],
            "first": {"network": self.first_network, "image": self.first_image},
            "methods": [{"name": m.name, "summary": m.summary, "returns": m.returns,
                         "layer": "layer" in m.options,
                         "options": [vars(o) for o in OPTIONS.get(m.name, ())],
                         "ledger": m.name in LEDGER_METHODS}
                        for m in saliency.METHODS.values()],
            "colormaps": {"map": {"name": CMAP, "lut": lut(CMAP)},
                          "signed": {"name": DIVERGING, "lut": lut(DIVERGING)}},
            "limits": {"upload_bytes": MAX_UPLOAD_BYTES, "pixels": MAX_PIXELS,
                       "aspect": MAX_ASPECT},
        }

    def _network(self, id) -> _Network:
        with self._lock:
            network = self._networks.get(id)
        if network is None:
            raise ExploreError(f"unknown network {id!r}")
        if network.kind == "fetched" and not network.loaded:
            status = model_status(network.label)
            if not status.fetched:
                raise ExploreError(status.message)
        return network

    def _picture(self, id) -> _Picture:
        with self._lock:
            picture = self._pictures.get(id)
        if picture is None:
            raise ExploreError(f"unknown image {id!r} (an upload is kept for the last "
                               f"{MAX_UPLOADS} files: drop it again)")
        return picture

    # --- the answers ----------------------------------------------------------------------

    def classify(self, network: str, image: str) -> dict:
        """The input as the network saw it, its top-5 classes, the warning and the truth."""
        return self._jobs.call(_classify, self._network(network), self._picture(image))

    def explain(self, network: str, image: str, method: str, target=None, layer=None,
                options=None) -> dict:
        """One method's map of one image for one class (None: the predicted one)."""
        method = _known_method(method)
        return self._jobs.call(_explain, self._network(network), self._picture(image), method,
                               _as_int(target), layer or None, dict(options or {}))

    def trace(self, network: str, image: str, target=None, method=None, rule=None) -> dict:
        """The backward pass of the class score kept at every layer (``experiments.trace``),
        from the score back to the pixels, each step reduced to one map: method "gradient"
        (None too): |dS_c/d(output)| summed over channels; "lrp": the relevance there, summed
        over channels with its sign, by ``rule`` (None: LRP's default)."""
        method = method or "gradient"
        if method not in TRACE_METHODS:
            raise ExploreError(f"the trace follows {' or '.join(TRACE_METHODS)}, got "
                               f"{method!r}")
        if rule not in (None, "") and method != "lrp":     # the command line's words
            raise ExploreError(f"--rule chooses how LRP shares relevance out; it applies to "
                               f"--method lrp, not {method}")
        return self._jobs.call(_trace, self._network(network), self._picture(image),
                               _as_int(target), method, rule or None)


def _known_method(name) -> str:
    try:
        return saliency.get_method(name).name
    except ValueError as e:
        raise ExploreError(str(e)) from None


def _as_int(text):
    if text is None or text == "":
        return None
    if isinstance(text, (int, np.integer)):
        return int(text)
    if not re.fullmatch(r"[0-9]+", str(text)):
        raise ExploreError(f"a class is given by its index, got {text!r}")
    return int(text)


# ============================================================================ the jobs

def _input(net: _Network, pic: _Picture):
    """(x (1, 3, H, W), pixels (H, W, 3) uint8, the file's size (w, h), notes), read with the
    network's preprocessing; the last few kept."""
    key = pic.key()
    if key not in net.inputs:
        prep = Preprocess.from_meta(net.model.meta)
        try:
            pixels, notes = read_image(pic.path, prep, return_notes=True)
        except ImageReadError as e:
            raise ImageReadError(str(e).replace(str(pic.path), pic.name)) from None
        from PIL import Image
        with Image.open(pic.path) as im:
            size = im.size                                          # (w, h), as explain reads it
        notes = [n.replace(str(pic.path), pic.name) for n in notes]
        net.inputs[key] = (to_input(pixels, prep), pixels, size, notes)
        while len(net.inputs) > 4:
            net.inputs.popitem(last=False)
    net.inputs.move_to_end(key)
    return net.inputs[key]


def _finite(pic: _Picture, what: str, values) -> None:
    if not np.isfinite(values).all():
        raise ExplainError(f"{pic.name}: NaN or inf in {what} (an overflow in the model?)")


def _scores(net: _Network, pic: _Picture):
    x = _input(net, pic)[0]
    scores = net.model.forward(x)[0]                                # (K,), remembered
    _finite(pic, "the model's scores", scores)
    if net.cam_layers is None:                                      # after a forward: shapes
        net.cam_layers = [name for name in net.model.names
                          if np.ndim(net.model.activation(name)) == 4]
    return x, scores


def _classify(net: _Network, pic: _Picture) -> dict:
    started = time.perf_counter()
    x, scores = _scores(net, pic)
    _, pixels, size, notes = _input(net, pic)
    model = net.model
    prep = Preprocess.from_meta(model.meta)
    names = class_names(model) or [str(c) for c in range(len(scores))]
    top = [{"index": int(c), "name": name, "score": s, "probability": p}
           for c, (name, s, p) in zip(np.argsort(-scores)[:_TOP],
                                      top_classes(model, scores, _TOP))]
    truth = ground_truth(pic.path) if pic.group != "uploaded" else None
    try:
        default_layer = saliency.default_cam_layer(model)
    except ValueError:
        default_layer = None
    layers = list(net.cam_layers)
    if default_layer is not None and default_layer not in layers:
        layers.insert(0, default_layer)        # a block's name (MobileNetV2's "features.18")
    return {"network": net.id, "image": pic.id, "name": pic.name,
            "pixels": pixels, "mean": prep.mean, "std": prep.std,
            "size": list(size), "classes": names, "top": top,
            "predicted": int(np.argmax(scores)),
            "true": None if not truth else {"index": truth["label"], "name": truth["class"],
                                            "box": truth["box"]},
            "warning": out_of_distribution(model, size), "notes": notes,
            "layers": layers, "default_layer": default_layer,
            "seconds": time.perf_counter() - started}


def _explain(net: _Network, pic: _Picture, method: str, target, layer, given: dict) -> dict:
    started = time.perf_counter()
    forwards = net.model.forwards
    x, scores = _scores(net, pic)
    if target is not None and not 0 <= target < len(scores):
        raise ExploreError(f"unknown class index {target}: valid indices are "
                           f"0..{len(scores) - 1}")
    t = int(np.argmax(scores)) if target is None else target
    takes_layer = "layer" in saliency.get_method(method).options
    if takes_layer:
        default = saliency.default_cam_layer(net.model)
        layer = layer or default
        try:                                   # a node, or a block ("layer4": its output)
            node = net.model.names[net.model.index(layer)]
        except (KeyError, IndexError, TypeError):
            node = None
        if node not in net.cam_layers:
            raise ExploreError(f"unknown layer {layer!r} for Grad-CAM: choose a node or block "
                               f"with (C, h, w) output, e.g. {default!r}")
    options = _method_options(net.model, method, given, layer if takes_layer else None)
    key = ("explain", pic.key(), method, t, layer if takes_layer else None,
           tuple(sorted((k, str(v)) for k, v in given.items())))

    def compute():
        if method == "lrp":     # the pass saliency.attribute runs for lrp, and its ledger
            batch, ledger = saliency.lrp_ledger(net.model, x, t, **options)
        else:
            batch, ledger = saliency.attribute(net.model, x, [method], t,
                                               {method: options})[2][method], None
        _finite(pic, f"the {method} map", batch)
        result = batch[0]                                           # (C, H, W) or (h, w)
        smap = saliency.to_map(batch, x.shape[2:])[0]               # (H, W), as the CLI's .npy
        coarse = result.ndim == 2
        box = localize(None, smap, "threshold").box
        iy, ix = np.unravel_index(np.argmax(smap), smap.shape)
        return {"method": method, "target": t, "layer": layer if takes_layer else None,
                "rule": saliency.describe_rule(options.get("rule", saliency.DEFAULT_RULE))
                if method == "lrp" else None,
                "map": smap.astype(np.float32),
                "signed": None if coarse else
                saliency.to_map(batch, x.shape[2:], signed=True)[0].astype(np.float32),
                "attribution": None if coarse else result.astype(np.float32),
                "coarse": result.astype(np.float32) if coarse else None,
                "box": None if box is None else [int(v) for v in box],
                "peak": [int(ix), int(iy)],
                "ledger": None if ledger is None else _ledger(ledger)}

    answer = dict(net.kept(key, compute))
    answer.update(target_name=class_names(net.model)[t] if class_names(net.model) else str(t),
                  forward="reused" if net.model.forwards == forwards else "computed",
                  seconds=time.perf_counter() - started)
    return answer


def _ledger(entries: list) -> dict:
    """LRP's ledger of one image (``Graph.ledger``: a dict per node, from the score's node back
    to "input", each value an array of one) as the page's table:

        {"columns": [{"key", "label", "about"}, ...]    LEDGER_COLUMNS
         "rows": [[a value per column], ...]            a row per node, then "input" (the
                                                        relevance that reached the pixels)
         "totals": {"score", "input", "bias", "stabiliser", "batchnorm", "residual"}}

    The totals: the relevance the pass started from (the explained score), what reached the
    pixels, and each absorbed column and the residual summed over the nodes, so that score =
    input + bias + stabiliser + batchnorm + residual (``viz.trace.ledger_table``'s last line)."""
    keys = [key for key, _, _ in LEDGER_COLUMNS]

    def cell(entry, key):
        value = entry.get(key)
        return None if value is None else value if isinstance(value, str) else float(value[0])
    rows = [[cell(entry, key) for key in keys] for entry in entries]
    nodes = entries[:-1]                                            # the input absorbs nothing
    totals = {"score": cell(entries[0], "relevance_out"),
              "input": cell(entries[-1], "relevance_out")}
    for term in ("bias", "stabiliser", "batchnorm", "residual"):
        totals[term] = float(sum(cell(entry, term) for entry in nodes))
    return {"columns": [{"key": key, "label": label, "about": about}
                        for key, label, about in LEDGER_COLUMNS],
            "rows": rows, "totals": totals}


def _trace(net: _Network, pic: _Picture, target, method: str, rule) -> dict:
    started = time.perf_counter()
    forwards = net.model.forwards
    x, scores = _scores(net, pic)
    t = int(np.argmax(scores)) if target is None else target
    if not 0 <= t < len(scores):
        raise ExploreError(f"unknown class index {t}: valid indices are 0..{len(scores) - 1}")
    if method == "lrp":
        rule = _rule(net.model, rule or saliency.DEFAULT_RULE)

    def compute():
        result = (trace(net.model, x, t, "sum", "lrp", rule) if method == "lrp"
                  else trace(net.model, x, t, "sum"))
        return {"target": t, "method": method, "rule": result["rule"], "steps": [
            {"name": s["name"], "shape": list(s["shape"]), "total": s["total"],
             "gradient": s["gradient_map"].astype(np.float32),
             "activation": s["activation_map"].astype(np.float32)}
            for s in result["steps"]]}

    answer = dict(net.kept(("trace", pic.key(), t, method, rule), compute))
    answer.update(forward="reused" if net.model.forwards == forwards else "computed",
                  seconds=time.perf_counter() - started)
    return answer
