"""From an image to a saliency figure: the whole path of one image in one place.

    file  --read_image-->  pixels (H, W, 3) uint8  --to_input-->  x (1, 3, H, W), normalised
          --model.forward-->  scores (1, K), before the softmax
          --one-hot on class c, model.backward-->  dS_c/dx, shaped like x     (saliency.attribute)
          --max over channels of |.|-->  the map M (H, W)                     (saliency.to_map)
          --viz-->  a figure (PNG), the map (.npy) and an overlay at the file's resolution

``explain`` does it for one image (a file or an array) and returns an ``Explanation``: the
figure and the numbers; ``show`` returns only the figure (for a notebook). The functions
that write files each return what they wrote and found (a ``Written``): ``explain_file``
writes the figure, the map and an overlay; ``compare_file`` runs every method of the
registry, ``trace_file`` draws the gradient at every layer, ``localize_file`` adds the
paper's weakly supervised localisation. All of them are about one image and print nothing:
the command line (``minicnn saliency``, ``compare``, ``trace``, ``localize``, ``demo``)
prints, and runs many images.

Two things every figure here says that the arrays alone do not:

- what the image truly is, when that is known: a file listed in the ``samples.json`` of its
  folder (the shipped samples are) has its class and its object's box;
- when an image is not of the kind the model knows (``out_of_distribution``): the shipped
  model was trained on synthetic 64x64 clothing images, so a photo, shrunk to 64x64, still
  gets one of its ten labels, confidently and meaninglessly.

Output files are named ``<stem>_<method>_<class>.<ext>``, the class being the explained one,
so runs for other methods or classes do not overwrite each other; ``output_stems`` gives
inputs of one call that share a file name (in different folders) distinct stems.

Nothing half-done reaches disk: a figure and its companion files are written together or not
at all (``viz.save_together``), and an image whose scores or map hold NaN or inf (an
overflow in the model) is an ``ExplainError``, with nothing written for it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from minicnn import saliency, viz
from minicnn.experiments.localize import localize
from minicnn.experiments.metrics import box_iou, pointing_hit
from minicnn.experiments.trace import trace
from minicnn.io.images import Preprocess, read_image, to_input, to_pixels
from minicnn.io.samples import SampleIndexError, load_sample_index
from minicnn.viz.experiments import localization_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["explain", "show", "explain_file", "compare_file", "trace_file", "localize_file",
           "Explanation", "Written", "ExplainedFile", "Compared", "Traced", "Localized",
           "class_names", "top_classes", "method_options", "out_of_distribution",
           "ground_truth", "output_stems", "slug", "SEED", "ExplainError"]

SEED = 0  # SmoothGrad's noise: the same command gives the same map


class ExplainError(ValueError):
    """An image was read but cannot be explained: its scores or map hold NaN or inf, or
    localisation found no object. The message names the file."""


def _shown(name) -> str:
    """A file name as text to draw: bytes that are not UTF-8 shown as \\xNN."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ============================================================================ names and truth

def class_names(model) -> list[str]:
    """The model's class names from its metadata, or [] if it has none."""
    return list(model.meta.get("class_names") or [])


def _name_of(model, c: int) -> str:
    names = class_names(model)
    return names[c] if c < len(names) else str(c)


def slug(text: str) -> str:
    """A class name as part of a file name: "Ankle boot" -> "ankle-boot", "T-shirt/top" ->
    "t-shirt-top"."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "class"


def output_stems(paths) -> dict:
    """{path: stem} for the inputs of one call: the file's stem, and where two inputs share
    it, as many of their parent folders' names in front as make them distinct
    ("a/x.png", "b/x.png" -> "a_x", "b_x"; "p/a/x.png", "q/a/x.png" -> "p-a_x", "q-a_x")."""
    paths = [Path(p) for p in paths]
    stems = {}
    for p in paths:
        same = [q for q in paths if q.stem == p.stem and q.resolve() != p.resolve()]
        parts = p.resolve().parts[:-1]
        depth = 0
        while same and depth < len(parts):
            depth += 1
            mine = parts[len(parts) - depth:]
            same = [q for q in same if q.resolve().parts[:-1][-depth:] == mine]
        prefix = "_".join(parts[len(parts) - depth:]) if depth else ""
        stems[str(p)] = f"{slug(prefix)}_{p.stem}" if prefix else p.stem
    return stems


def ground_truth(path) -> dict | None:
    """What a ``samples.json`` in the file's folder says about it ({"label", "class", "box"}),
    or None (no index, or the file is not in it). The shipped samples have one."""
    path = Path(path)
    if not (path.parent / "samples.json").is_file():
        return None
    try:
        return load_sample_index(path.parent).get(path.name)
    except (SampleIndexError, ValueError, KeyError, AttributeError):
        return None


def out_of_distribution(model, size) -> str | None:
    """A warning when an image of ``size`` (width, height), before resizing, is not of the
    kind the model was trained on; None when it is (or when the model's metadata does not
    say). Models trained on a synthetic data set (``meta["dataset"]["generator"]``) saw
    only images of their input size, so an image of another size is a different kind of
    picture (a photo); ImageNet models (no generator) are made for photos of any size."""
    generator = (model.meta.get("dataset") or {}).get("generator")
    shape = model.meta.get("input_shape")
    if not generator or not shape:
        return None
    H, W = int(shape[1]), int(shape[2])
    w, h = (int(s) for s in size)
    if (w, h) == (W, H):
        return None
    names = class_names(model)
    known = f"{len(names)} classes ({', '.join(names)})" if names else "its classes"
    return (f"this image is not of the kind this model knows. It was trained on synthetic "
            f"{W}x{H} images of {known}; this {w}x{h} picture was shrunk "
            f"and cropped to {W}x{H}, and the model can only answer with the nearest of its "
            f"classes, however confident it looks. For real photos use an ImageNet network: "
            f"minicnn fetch mobilenet_v2, then --model mobilenet_v2.")


def top_classes(model, scores, k: int = 5) -> list[tuple[str, float, float]]:
    """The k best classes of one image's scores (K,): [(name, score, probability)]."""
    probs = saliency.softmax(np.asarray(scores, np.float64)[None])[0]   # (K,)
    return [(_name_of(model, int(c)), float(scores[c]), float(probs[c]))
            for c in np.argsort(-scores)[:k]]


def method_options(method: str, progress: bool, layer=None, rule=None) -> dict:
    """What the command line passes a method: a progress bar, a fixed seed, the Grad-CAM
    layer and the LRP rule where the method takes them (``Method.options`` says which)."""
    takes = saliency.get_method(method).options
    options = {"progress": True} if progress and "progress" in takes else {}
    if "seed" in takes:
        options["seed"] = SEED
    if layer is not None and "layer" in takes:
        options["layer"] = layer
    if rule is not None and "rule" in takes:
        options["rule"] = rule
    return options


def _kind(method: str, rule=None) -> str:
    """What output files call a method: its name, and for LRP a rule other than the default
    ("lrp-epsilon-gamma-box"), so that maps made by different rules do not overwrite each
    other."""
    if rule is None or "rule" not in saliency.get_method(method).options:
        return method
    return f"{method}-{slug(saliency.describe_rule(rule))}"


def _title(model, name, scores, t, what, true_label=None) -> str:
    """Two lines: the image, its true class (when known), the prediction with its score and
    probability; then what the figure explains."""
    probs = saliency.softmax(np.asarray(scores, np.float64)[None])[0]   # (K,)
    pred = int(np.argmax(scores))
    if true_label is None:
        truth = "true class unknown"
    else:
        truth = f"true class: {_name_of(model, true_label)}"
    verdict = "" if true_label is None else (" (right)" if pred == true_label else " (WRONG)")
    return (f"{name}   {truth}   predicted: {_name_of(model, pred)}{verdict}, score "
            f"{scores[pred]:.2f}, p = {probs[pred]:.2f}\n{what} for class "
            f"{_name_of(model, t)} (score S_c = {scores[t]:.2f} before the softmax, "
            f"p = {probs[t]:.2f})")


# ============================================================================ what comes back

@dataclass(frozen=True)
class Explanation:
    """What ``explain`` found for one image, and the figure it drew. Shapes are for an input
    (1, C, H, W) and a model of K classes.

    - figure: the method's figure (a matplotlib Figure)
    - result: the method's output for the image, (C, H, W), or a coarse (h, w) for Grad-CAM
    - saliency: the map (H, W): max |.| over channels, or Grad-CAM resized to (H, W)
    - scores: (K,), before the softmax
    - predicted, target: the predicted and the explained class (indices)
    - true_label: the true class (index), or None when unknown
    - predicted_name, target_name, true_name: their names (true_name None when unknown)
    - box: the object's box (x0, y0, x1, y1) in the input's pixels, or None when unknown
    - top: the five best classes, ((name, score, probability), ...) (``top_classes``)
    - peak: (x, y) of the map's maximum
    - warning: ``out_of_distribution``'s warning, or None
    - pixels: what the network saw, float RGB (H, W, 3) in [0, 1]
    - notes: what the image reader did (e.g. took the first of several frames)
    """

    figure: Figure
    result: np.ndarray
    saliency: np.ndarray
    scores: np.ndarray
    predicted: int
    target: int
    true_label: int | None
    predicted_name: str
    target_name: str
    true_name: str | None
    box: tuple | None
    top: tuple
    peak: tuple[int, int]
    warning: str | None
    pixels: np.ndarray
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Written:
    """What a ``*_file`` function wrote for one image file, and what the command line says
    about it; each function's answer adds its own fields to these.

    - path: the image file
    - figure: the figure written (PNG)
    - predicted_name, target_name: the predicted and the explained class
    - true_name: the true class from the folder's samples.json, or None
    - warning: ``out_of_distribution``'s warning, or None
    - notes: what the image reader did (e.g. took the first of several frames)
    """

    path: str
    figure: str
    predicted_name: str
    target_name: str
    true_name: str | None
    warning: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ExplainedFile(Written):
    """``explain_file``'s answer: ``Written``'s fields, and

    - method: the method explained
    - map, overlay: the other two files written, the map (.npy) and the overlay (.png)
    - top: the five best classes, ((name, score, probability), ...) (``top_classes``)
    - correct: whether the prediction is the true class (None when that is unknown)
    - inside: whether the map's maximum lies in the object's box, the pointing game (None
      when the box is unknown)
    """

    method: str
    map: str
    overlay: str
    top: tuple
    correct: bool | None
    inside: bool | None


@dataclass(frozen=True)
class Compared(Written):
    """``compare_file``'s answer: ``Written``'s fields, and methods: the registry's names, in
    the figure's order."""

    methods: tuple[str, ...]


@dataclass(frozen=True)
class Traced(Written):
    """``trace_file``'s answer: ``Written``'s fields, and

    - layers: the names of the trace's steps, the score's layer first, "input" last
    - trace: ``experiments.trace``'s result, every step's activation and gradient
    """

    layers: tuple[str, ...]
    trace: dict


@dataclass(frozen=True)
class Localized(Written):
    """``localize_file``'s answer: ``Written``'s fields, and

    - box: the box found, (x0, y0, x1, y1), x1 and y1 exclusive
    - true_box: the object's box from the folder's samples.json, or None
    - iou: their intersection over union, or None without a true box
    """

    box: tuple[int, int, int, int]
    true_box: tuple[int, int, int, int] | None
    iou: float | None


# ============================================================================ one image

class _Image:
    """One image on its way to a figure: what every function here does around its own
    computation, written once. It reads the image (``_load``) and what its folder's
    samples.json says about it, checks arrays for NaN or inf, titles the figure, and names
    and writes the output files.

    - x: the model's input (1, 3, H, W); pixels: (H, W, 3) uint8, or None for an input
    - name: what titles and errors call the image; true_label, box: the truth, or None
    - warning: ``out_of_distribution``'s, for a file; notes: what the image reader did
    """

    def __init__(self, model, image, name=None, true_label=None, box=None):
        self.model, self.image = model, image
        self.prep = Preprocess.from_meta(model.meta)
        is_file = isinstance(image, (str, Path))
        truth = (ground_truth(image) if is_file else None) or {}
        self.true_label = truth.get("label") if true_label is None else true_label
        self.box = truth.get("box") if box is None else box
        self.name = (_shown(Path(image).name) if is_file and name is None else name) or "image"
        self.pixels, self.x, size, notes = _load(image, self.prep)
        self.notes = tuple(notes)
        self.warning = None if size is None else out_of_distribution(model, size)

    def shown(self) -> np.ndarray:
        """What the network saw: float RGB (H, W, 3) in [0, 1]."""
        return to_pixels(self.x, self.prep)[0]

    def check_finite(self, what: str, values) -> None:
        """ExplainError naming the image when ``values`` hold NaN or inf."""
        if not np.isfinite(values).all():
            raise ExplainError(f"{self.name}: NaN or inf in {what} (an overflow in the "
                               "model?); nothing written for it")

    def title(self, scores, t: int, what: str) -> str:
        """The figure's title for one image's scores (K,) and the explained class t."""
        return _title(self.model, self.name, scores, t, what, self.true_label)

    def save(self, out_dir, stem, kind: str, t: int, outputs: dict, dpi: int) -> list[str]:
        """Write ``outputs`` {suffix: a Figure or a function write(tmp_path)} all or none
        (``viz.save_together``), each as ``<stem>_<kind>_<class><suffix>`` in ``out_dir``,
        the class being t; -> their paths. ``stem`` defaults to the file's stem."""
        base = f"{stem or Path(self.image).stem}_{kind}_{slug(_name_of(self.model, t))}"
        paths = [Path(out_dir) / f"{base}{suffix}" for suffix in outputs]
        viz.save_together(dict(zip(paths, outputs.values())), dpi=dpi)
        return [str(p) for p in paths]

    def written(self, answer, scores, t: int, figure: str, **own):
        """``answer`` (a ``Written`` class) for scores (K,) and the explained class t: the
        fields every file function fills the same way, and the function's own."""
        return answer(path=str(self.image), figure=figure,
                      predicted_name=_name_of(self.model, int(np.argmax(scores))),
                      target_name=_name_of(self.model, t),
                      true_name=(None if self.true_label is None
                                 else _name_of(self.model, self.true_label)),
                      warning=self.warning, notes=self.notes, **own)


def _load(image, prep: Preprocess):
    """An image file, uint8 pixels (H, W, 3) at the model's size, or a model input (1, 3, H, W)
    -> (pixels (H, W, 3) uint8 or None, x (1, 3, H, W), the file's own size or None, notes:
    what the image reader did, e.g. took the first of several frames). ImageReadError for an
    unreadable file."""
    if isinstance(image, (str, Path)):
        pixels, notes = read_image(image, prep, return_notes=True)   # (H, W, 3) uint8
        from PIL import Image
        with Image.open(image) as im:
            size = im.size                                            # (width, height)
        return pixels, to_input(pixels, prep), size, notes
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        if a.shape[:2] != (prep.crop, prep.crop):
            raise ValueError(f"pixels of shape {a.shape}: the model takes {prep.crop}x"
                             f"{prep.crop}; pass the file's path to have it resized")
        return a, to_input(a, prep), None, []
    if a.ndim == 4 and a.shape[:2] == (1, 3):
        return None, a, None, []
    raise ValueError(f"expected an image path, uint8 pixels (H, W, 3) or an input (1, 3, H, W), "
                     f"got {a.dtype} of shape {a.shape}")


def explain(model, image, method: str = "gradient", target=None, *, name=None,
            true_label=None, box=None, cmap: str = viz.CMAP, upscale: str = "blocks",
            progress: bool = False, layer=None, rule=None) -> Explanation:
    """Classify one image, compute its map with ``method`` and draw the method's figure.

    - image: a file path, uint8 pixels (H, W, 3) at the model's input size, or an input
      (1, 3, H, W) (``io.images.to_input``)
    - target: None (the predicted class) or a class index
    - layer: the node or block Grad-CAM (and guided Grad-CAM) uses; None: its default
    - rule: LRP's rule or composite (``saliency.lrp``); None: its default
    - name: what the title calls the image (default: the file name, or "image")
    - true_label, box: the image's true class index and the object's box (x0, y0, x1, y1);
      for a file listed in its folder's samples.json, read from there when not given
    - cmap, upscale: the figure's colormap for maps >= 0 and "blocks" or "smooth"
    Returns an ``Explanation`` (the figure, the map, the scores, the classes...).
    Raises ImageReadError for an unreadable file and ExplainError for NaN or inf in the
    scores or the map.
    """
    return _explain(_Image(model, image, name, true_label, box), method, target, cmap=cmap,
                    upscale=upscale, progress=progress, layer=layer, rule=rule)


def _explain(im: _Image, method, target, cmap, upscale, progress, layer,
             rule=None) -> Explanation:
    """``explain`` for an image already read, so that ``explain_file`` reads it once."""
    model, x = im.model, im.x
    scores, targets, results = saliency.attribute(                   # one forward pass
        model, x, [method], target, {method: method_options(method, progress, layer, rule)})
    im.check_finite("the model's scores", scores)
    im.check_finite(f"the {method} map", results[method])
    result = results[method][0]                                      # (C, H, W) or (h, w)
    smap = saliency.to_map(results[method], x.shape[2:])[0]          # (H, W)
    scores, t = scores[0], int(targets[0])
    pred = int(np.argmax(scores))
    words = viz.METHOD_WORDS.get(method, (method,))[0]
    if "rule" in saliency.get_method(method).options:
        words += f" ({saliency.describe_rule(rule or saliency.DEFAULT_RULE)})"
    title = im.title(scores, t, f"{words} of the score")
    if np.ndim(result) == 2 and layer is None:
        layer = saliency.default_cam_layer(model)
    shown = im.shown()                                               # (H, W, 3) in [0, 1]
    fig = viz.method_figure(method, shown, result, smap, title, im.box, layer, cmap=cmap,
                            upscale=upscale, warning=im.warning)
    iy, ix = np.unravel_index(np.argmax(smap), smap.shape)
    true_label = im.true_label
    return Explanation(
        figure=fig, result=result, saliency=smap, scores=scores, predicted=pred, target=t,
        true_label=true_label, predicted_name=_name_of(model, pred),
        target_name=_name_of(model, t),
        true_name=None if true_label is None else _name_of(model, true_label),
        box=None if im.box is None else tuple(im.box), top=tuple(top_classes(model, scores)),
        peak=(int(ix), int(iy)), warning=im.warning, pixels=shown, notes=im.notes)


def show(model, image, method: str = "gradient", target=None, **options):
    """``explain``'s figure alone: one call, one matplotlib Figure (in a notebook, make it
    the cell's last line to see it). Options as ``explain``."""
    return explain(model, image, method, target, **options).figure


def _full_resolution_map(path, smap, prep):
    """The map (crop, crop) placed back on the file's own pixels: -> (pixels (H0, W0, 3)
    uint8, map (H0, W0) with NaN outside the centre crop the network saw).

    ``read_image`` resizes the shorter side to prep.resize and crops the centre; this undoes
    both: the crop's corner and size in the file's pixels, then the map resized bilinearly
    into that rectangle."""
    from PIL import Image
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)      # (H0, W0, 3)
    H0, W0 = pixels.shape[:2]
    scale = prep.resize / min(W0, H0)                                # file -> resized pixels
    w, h = (prep.resize, int(prep.resize * H0 / W0)) if W0 <= H0 else \
        (int(prep.resize * W0 / H0), prep.resize)
    left, top = int(round((w - prep.crop) / 2.0)), int(round((h - prep.crop) / 2.0))
    x0, y0 = int(round(left / scale)), int(round(top / scale))
    side = max(1, int(round(prep.crop / scale)))
    x1, y1 = min(W0, x0 + side), min(H0, y0 + side)
    full = np.full((H0, W0), np.nan)
    full[y0:y1, x0:x1] = saliency.upsample_bilinear(np.asarray(smap)[None],
                                                    (y1 - y0, x1 - x0))[0]
    return pixels, full


# ============================================================================ one image, to files

def explain_file(model, path, method: str = "gradient", target=None, out_dir="saliency_out",
                 box=None, progress: bool = True, stem=None, true_label=None,
                 cmap: str = viz.CMAP, upscale: str = "blocks", dpi: int = viz.DPI,
                 layer=None, rule=None) -> ExplainedFile:
    """``explain`` for one image file, written to ``out_dir``:

    - ``<stem>_<method>_<class>.png``: the figure (``dpi`` dots per inch; LRP's files name
      a rule other than the default, ``<stem>_lrp-<rule>_<class>.png``);
    - ``<stem>_<method>_<class>.npy``: the (H, W) map, float32 (max |.| over channels, or
      Grad-CAM resized), at the network's input size;
    - ``<stem>_<method>_<class>_overlay.png``: the map over the picture at the file's own
      resolution, where the network's crop lies (``viz.overlay_picture``).
    ``<class>`` is the explained class (``slug``); ``stem`` defaults to the file's stem.
    Returns an ``ExplainedFile``. Raises as ``explain``, and a WriteError if the files
    cannot be written (then none is).
    """
    im = _Image(model, path, true_label=true_label, box=box)
    e = _explain(im, method, target, cmap=cmap, upscale=upscale, progress=progress,
                 layer=layer, rule=rule)
    pixels, full = _full_resolution_map(path, e.saliency, im.prep)
    picture = viz.overlay_picture(pixels, full, cmap)
    from PIL import Image
    figure, map_path, overlay = im.save(out_dir, stem, _kind(method, rule), e.target, {
        ".png": e.figure,
        ".npy": lambda tmp: np.save(tmp, e.saliency.astype(np.float32)),
        "_overlay.png": lambda tmp: Image.fromarray(picture).save(tmp, format="PNG")}, dpi)
    return im.written(ExplainedFile, e.scores, e.target, figure, method=method, map=map_path,
                      overlay=overlay, top=e.top,
                      correct=None if e.true_label is None else e.predicted == e.true_label,
                      inside=None if e.box is None else pointing_hit(e.saliency, e.box))


def compare_file(model, path, target=None, out_dir="saliency_out", progress: bool = True,
                 stem=None, cmap: str = viz.CMAP, upscale: str = "blocks",
                 dpi: int = viz.DPI) -> Compared:
    """Every method of the registry on one image, as a grid of overlays in
    ``<stem>_compare_<class>.png``; each panel says how its map was made.

    Returns a ``Compared``; raises as ``explain_file``."""
    im = _Image(model, path)
    methods = list(saliency.METHODS)
    options = {m: method_options(m, progress) for m in methods}
    scores, targets = saliency.in_chunks(model, im.x, target)  # before the slow methods
    im.check_finite("the model's scores", scores)
    scores, targets, results = saliency.attribute(model, im.x, methods, targets, options)
    maps = {}
    for m, r in results.items():
        im.check_finite(f"the {m} map", r)
        if r.ndim == 3:
            how = "upsampled bilinearly, / its max"
        elif viz.same_in_every_channel(r[0]):
            how = "|.| (same in every channel), / its max"
        else:
            how = "max over channels of |.|, / its max"
        maps[m] = (saliency.to_map(r, im.x.shape[2:])[0], how)         # (H, W) each
    t = int(targets[0])
    title = im.title(scores[0], t, f"{len(methods)} methods' maps")
    fig = viz.comparison_figure(im.shown(), maps, title, box=im.box, cmap=cmap,
                                upscale=upscale, warning=im.warning)
    [figure] = im.save(out_dir, stem, "compare", t, {".png": fig}, dpi)
    return im.written(Compared, scores[0], t, figure, methods=tuple(methods))


def trace_file(model, path, target=None, out_dir="saliency_out", reduce: str = "sum",
               stem=None, cmap: str = viz.CMAP, dpi: int = viz.DPI, method: str = "gradient",
               rule=None) -> Traced:
    """The gradient of the class score at every layer, from the score back to the pixels
    (``experiments.trace``), drawn beside each layer's activation in
    ``<stem>_trace_<class>.png``; with method="lrp", the relevance at every layer by
    ``rule`` (None: LRP's default), in ``<stem>_trace-lrp_<class>.png`` (a rule other than
    the default named after "lrp"), and the trace's "ledger".

    Returns a ``Traced``; raises as ``explain_file``."""
    im = _Image(model, path)
    relevance = method == "lrp"
    result = trace(model, im.x, target, reduce, method, rule or saliency.DEFAULT_RULE) \
        if relevance else trace(model, im.x, target, reduce)
    scores, t = result["scores"], result["target"]
    im.check_finite("the model's scores", scores)
    what = (f"relevance ({result['rule']}), layer by layer, of the score" if relevance
            else "the backward pass, layer by layer, of the score")
    title = im.title(scores, t, what)
    if im.warning:
        title += f"\nWARNING: {im.warning}"
    fig = viz.trace_figure(result, title, class_names(model), image=im.shown(),
                           reduce=reduce, cmap=cmap)
    kind = f"trace-{_kind('lrp', rule)}" if relevance else "trace"
    [figure] = im.save(out_dir, stem, kind, t, {".png": fig}, dpi)
    return im.written(Traced, scores, t, figure, trace=result,
                      layers=tuple(s["name"] for s in result["steps"]))


def localize_file(model, path, method: str = "threshold", target=None,
                  out_dir="localize_out", stem=None, cmap: str = viz.CMAP,
                  dpi: int = viz.DPI) -> Localized:
    """The paper's weakly supervised localisation (§3.1) of one image file: its gradient map,
    a box from it by ``method`` ("threshold" or "graphcut"), and a figure
    ``<stem>_localize-<method>_<class>.png`` with the true box and the IoU when the file's
    samples.json knows them.

    Returns a ``Localized``. Raises ExplainError (and writes nothing) when the map holds NaN
    or inf or nothing was segmented from it, besides ``explain``'s errors."""
    im = _Image(model, path)
    scores, targets, results = saliency.attribute(model, im.x, ["gradient"], target)
    im.check_finite("the model's scores", scores)
    im.check_finite("the gradient map", results["gradient"])
    smap = saliency.to_map(results["gradient"], im.x.shape[2:])[0]  # (H, W)
    loc = localize(im.pixels, smap, method)
    if loc.box is None:
        why = " (the map is zero everywhere)" if not smap.any() else ""
        raise ExplainError(f"{im.name}: {method} localisation found no object: nothing was "
                           f"segmented from the saliency map{why}")
    box = tuple(int(v) for v in loc.box)
    true_box = None if im.box is None else tuple(im.box)
    iou = None if true_box is None else float(box_iou(box, true_box))
    t = int(targets[0])
    title = im.title(scores[0], t, f"a {method} box from the gradient map of the score")
    fig = localization_figure(im.pixels, smap, {method: loc}, true_box=im.box, title=title,
                              ious=None if iou is None else {method: iou}, warning=im.warning,
                              cmap=cmap)
    [figure] = im.save(out_dir, stem, f"localize-{method}", t, {".png": fig}, dpi)
    return im.written(Localized, scores[0], t, figure, box=box, true_box=true_box, iou=iou)
