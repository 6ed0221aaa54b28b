"""From an image to a saliency figure: the whole path of one image in one place.

    file  --read_image-->  pixels (H, W, 3) uint8  --to_input-->  x (1, 3, H, W), normalised
          --model.forward-->  scores (1, K), before the softmax
          --one-hot on class c, model.backward-->  dS_c/dx, shaped like x     (saliency.attribute)
          --max over channels of |.|-->  the map M (H, W)                     (saliency.to_map)
          --viz-->  a figure (PNG), the map (.npy) and an overlay at the file's resolution

``explain`` does it for one image (a file or an array) and returns the figure and the
numbers; ``show`` returns only the figure (for a notebook); ``explain_file`` writes the
files; ``compare_file`` runs every method of the registry, ``trace_file`` draws the gradient
at every layer, ``localize_file`` adds the paper's weakly supervised localisation, and
``run_demo`` explains the shipped sample images. Each returns what it found as a dict and
prints nothing: the command line (``minicnn saliency``, ``compare``, ``trace``, ``localize``,
``demo``) prints.

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
from pathlib import Path

import numpy as np

from minicnn import saliency, viz
from minicnn.experiments.localize import localize
from minicnn.experiments.metrics import box_iou
from minicnn.experiments.trace import trace
from minicnn.io.images import ImageReadError, Preprocess, read_image, to_input, to_pixels
from minicnn.io.samples import SAMPLES_DIR, SampleIndexError, load_sample_index
from minicnn.viz.experiments import localization_figure

__all__ = ["explain", "show", "explain_file", "compare_file", "trace_file", "run_demo",
           "localize_file", "class_names", "top_classes", "method_options",
           "out_of_distribution", "ground_truth", "output_stems", "slug", "SEED",
           "ExplainError"]

SEED = 0  # SmoothGrad's noise: the same command gives the same map


class ExplainError(ValueError):
    """An image was read but cannot be explained: its scores or map hold NaN or inf, or
    localisation found no object. The message names the file."""


def _check_finite(name, what: str, values) -> None:
    if not np.isfinite(values).all():
        raise ExplainError(f"{name}: NaN or inf in {what} (an overflow in the model?); "
                           "nothing written for it")


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
            f"classes, however confident it looks. For real photos use an ImageNet network "
            f"(README: Real ImageNet networks).")


def top_classes(model, scores, k: int = 5) -> list[tuple[str, float, float]]:
    """The k best classes of one image's scores (K,): [(name, score, probability)]."""
    probs = saliency.softmax(np.asarray(scores, np.float64)[None])[0]   # (K,)
    return [(_name_of(model, int(c)), float(scores[c]), float(probs[c]))
            for c in np.argsort(-scores)[:k]]


def method_options(method: str, progress: bool, layer=None) -> dict:
    """What the command line passes a method: a progress bar, a fixed seed and the Grad-CAM
    layer where the method takes them (``Method.options`` says which)."""
    takes = saliency.get_method(method).options
    options = {"progress": True} if progress and "progress" in takes else {}
    if "seed" in takes:
        options["seed"] = SEED
    if layer is not None and "layer" in takes:
        options["layer"] = layer
    return options


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


# ============================================================================ one image

def _load(model, image):
    """An image file, uint8 pixels (H, W, 3) at the model's size, or a model input (1, 3, H, W)
    -> (pixels (H, W, 3) uint8 or None, x (1, 3, H, W), the file's own size or None, notes:
    what the image reader did, e.g. took the first of several frames). ImageReadError for an
    unreadable file."""
    prep = Preprocess.from_meta(model.meta)
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
            progress: bool = False, layer=None) -> dict:
    """Classify one image, compute its map with ``method`` and draw the method's figure.

    - image: a file path, uint8 pixels (H, W, 3) at the model's input size, or an input
      (1, 3, H, W) (``io.images.to_input``)
    - target: None (the predicted class) or a class index
    - layer: the node or block Grad-CAM (and guided Grad-CAM) uses; None: its default
    - name: what the title calls the image (default: the file name, or "image")
    - true_label, box: the image's true class index and the object's box (x0, y0, x1, y1);
      for a file listed in its folder's samples.json, read from there when not given
    - cmap, upscale: the figure's colormap for maps >= 0 and "blocks" or "smooth"
    Returns {"fig" (a matplotlib Figure), "result" (the method's output for the image:
    (C, H, W) or a coarse (h, w)), "saliency" (the (H, W) map: max |.| over channels, or
    Grad-CAM resized), "scores" (K,), "predicted", "target", "true_label" (int or None),
    "predicted_name", "target_name", "true_name", "top" (see ``top_classes``), "peak" (x, y)
    of the map's maximum, "warning" (``out_of_distribution``, or None), "pixels" (what the
    network saw, float RGB (H, W, 3)), "notes" (what the image reader did)}.
    Raises ImageReadError for an unreadable file and ExplainError for NaN or inf in the
    scores or the map.
    """
    if isinstance(image, (str, Path)):
        truth = ground_truth(image)
        if truth is not None:
            true_label = truth["label"] if true_label is None else true_label
            box = truth["box"] if box is None else box
        name = _shown(Path(image).name) if name is None else name
    prep = Preprocess.from_meta(model.meta)
    _, x, size, notes = _load(model, image)
    warning = None if size is None else out_of_distribution(model, size)
    scores, targets, results = saliency.attribute(                   # one forward pass
        model, x, [method], target, {method: method_options(method, progress, layer)})
    _check_finite(name or "image", "the model's scores", scores)
    _check_finite(name or "image", f"the {method} map", results[method])
    result = results[method][0]                                      # (C, H, W) or (h, w)
    smap = saliency.to_map(results[method], x.shape[2:])[0]          # (H, W)
    scores, t = scores[0], int(targets[0])
    pred = int(np.argmax(scores))
    title = _title(model, name or "image", scores, t, f"{viz.METHOD_WORDS.get(method, (method,))[0]}"
                   f" of the score", true_label)
    if np.ndim(result) == 2 and layer is None:
        layer = saliency.default_cam_layer(model)
    shown = to_pixels(x, prep)[0]                                    # (H, W, 3) in [0, 1]
    fig = viz.method_figure(method, shown, result, smap, title, box, layer, cmap=cmap,
                            upscale=upscale, warning=warning)
    iy, ix = np.unravel_index(np.argmax(smap), smap.shape)
    return {"fig": fig, "result": result, "saliency": smap, "scores": scores,
            "predicted": pred, "target": t, "true_label": true_label,
            "predicted_name": _name_of(model, pred), "target_name": _name_of(model, t),
            "true_name": None if true_label is None else _name_of(model, true_label),
            "top": top_classes(model, scores), "peak": (int(ix), int(iy)),
            "warning": warning, "pixels": shown, "notes": notes}


def show(model, image, method: str = "gradient", target=None, **options):
    """``explain``'s figure alone: one call, one matplotlib Figure (in a notebook, make it
    the cell's last line to see it). Options as ``explain``."""
    return explain(model, image, method, target, **options)["fig"]


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


def explain_file(model, path, method: str = "gradient", target=None, out_dir="saliency_out",
                 box=None, progress: bool = True, stem=None, true_label=None,
                 cmap: str = viz.CMAP, upscale: str = "blocks", dpi: int = viz.DPI,
                 layer=None) -> dict:
    """``explain`` for one image file, written to ``out_dir``:

    - ``<stem>_<method>_<class>.png``: the figure (``dpi`` dots per inch);
    - ``<stem>_<method>_<class>.npy``: the (H, W) map, float32 (max |.| over channels, or
      Grad-CAM resized), at the network's input size;
    - ``<stem>_<method>_<class>_overlay.png``: the map over the picture at the file's own
      resolution, where the network's crop lies (``viz.overlay_picture``).
    ``<class>`` is the explained class (``slug``); ``stem`` defaults to the file's stem.
    Returns ``explain``'s dict without the figure object, plus "path", "suffix" (the
    method), "figure", "map", "overlay" (the three paths).
    Raises as ``explain``, and a WriteError if the files cannot be written (then none is).
    """
    r = explain(model, path, method, target, box=box, true_label=true_label, cmap=cmap,
                upscale=upscale, progress=progress, layer=layer)
    base = f"{stem or Path(path).stem}_{method}_{slug(r['target_name'])}"
    out = Path(out_dir)
    fig_path, npy_path, overlay_path = (out / f"{base}.png", out / f"{base}.npy",
                                        out / f"{base}_overlay.png")
    smap = r["saliency"]
    pixels, full = _full_resolution_map(path, smap, Preprocess.from_meta(model.meta))
    picture = viz.overlay_picture(pixels, full, cmap)
    from PIL import Image
    viz.save_together({fig_path: r.pop("fig"),                       # all three or none
                       npy_path: lambda tmp: np.save(tmp, smap.astype(np.float32)),
                       overlay_path: lambda tmp: Image.fromarray(picture).save(tmp, format="PNG")},
                      dpi=dpi)
    r.update(path=str(path), suffix=method, figure=str(fig_path), map=str(npy_path),
             overlay=str(overlay_path))
    return r


def compare_file(model, path, target=None, out_dir="saliency_out", progress: bool = True,
                 stem=None, cmap: str = viz.CMAP, upscale: str = "blocks",
                 dpi: int = viz.DPI) -> dict:
    """Every method of the registry on one image, as a grid of overlays in
    ``<stem>_compare_<class>.png``; each panel says how its map was made.

    Returns {"path", "predicted", "target", "predicted_name", "target_name", "true_name",
    "methods" (names), "figure", "warning", "notes"}; raises as ``explain_file``."""
    prep = Preprocess.from_meta(model.meta)
    _, x, size, notes = _load(model, path)
    name = _shown(Path(path).name)
    truth = ground_truth(path) or {}
    methods = list(saliency.METHODS)
    options = {m: method_options(m, progress) for m in methods}
    scores, targets = saliency.in_chunks(model, x, target)  # before the slow methods
    _check_finite(name, "the model's scores", scores)
    scores, targets, results = saliency.attribute(model, x, methods, targets, options)
    maps = {}
    for m, r in results.items():
        _check_finite(name, f"the {m} map", r)
        if r.ndim == 3:
            how = "upsampled bilinearly, / its max"
        elif viz.same_in_every_channel(r[0]):
            how = "|.| (same in every channel), / its max"
        else:
            how = "max over channels of |.|, / its max"
        maps[m] = (saliency.to_map(r, x.shape[2:])[0], how)            # (H, W) each
    pred, t = int(np.argmax(scores[0])), int(targets[0])
    warning = out_of_distribution(model, size)
    title = _title(model, name, scores[0], t, f"{len(methods)} methods' maps",
                   truth.get("label"))
    fig = viz.comparison_figure(to_pixels(x, prep)[0], maps, title, box=truth.get("box"),
                                cmap=cmap, upscale=upscale, warning=warning)
    fig_path = Path(out_dir) / f"{stem or Path(path).stem}_compare_{slug(_name_of(model, t))}.png"
    viz.save_figure(fig, fig_path, dpi=dpi)
    return {"path": str(path), "predicted": pred, "target": t, "methods": methods,
            "figure": str(fig_path), "predicted_name": _name_of(model, pred),
            "target_name": _name_of(model, t), "warning": warning, "notes": notes,
            "true_name": None if "label" not in truth else _name_of(model, truth["label"])}


def trace_file(model, path, target=None, out_dir="saliency_out", reduce: str = "sum",
               stem=None, cmap: str = viz.CMAP, dpi: int = viz.DPI) -> dict:
    """The gradient of the class score at every layer, from the score back to the pixels
    (``experiments.trace``), drawn beside each layer's activation in
    ``<stem>_trace_<class>.png``.

    Returns {"path", "target", "target_name", "predicted_name", "layers" (names, score
    first), "figure", "warning", "trace" (the computed dict)}."""
    prep = Preprocess.from_meta(model.meta)
    _, x, size, notes = _load(model, path)
    truth = ground_truth(path) or {}
    result = trace(model, x, target, reduce)
    scores, t = result["scores"], result["target"]
    _check_finite(_shown(Path(path).name), "the model's scores", scores)
    title = _title(model, _shown(Path(path).name), scores, t,
                   "the backward pass, layer by layer, of the score", truth.get("label"))
    warning = out_of_distribution(model, size)
    if warning:
        title += f"\nWARNING: {warning}"
    fig = viz.trace_figure(result, title, class_names(model), image=to_pixels(x, prep)[0],
                           reduce=reduce, cmap=cmap)
    fig_path = Path(out_dir) / f"{stem or Path(path).stem}_trace_{slug(_name_of(model, t))}.png"
    viz.save_figure(fig, fig_path, dpi=dpi)
    return {"path": str(path), "target": t, "target_name": _name_of(model, t),
            "predicted_name": _name_of(model, int(np.argmax(scores))),
            "layers": [s["name"] for s in result["steps"]], "figure": str(fig_path),
            "warning": warning, "trace": result, "notes": notes}


def run_demo(model, images_dir=SAMPLES_DIR, out_dir="saliency_out", jobs=None,
             **options) -> list[dict]:
    """``explain_file`` (the gradient) for every sample of ``images_dir`` with its true box.

    - jobs: processes drawing the figures side by side (None: one per CPU this process may
      use, at most 4; 1: all in this process). Drawing and writing a figure costs five times
      what computing its map does here, and matplotlib draws on one core, so the demo shares
      the samples out over forked copies of this process, which have the model already.
      Where ``fork`` is missing (Windows, macOS's default) it runs in this process.
    Returns one dict per sample, in the index's order: ``explain_file``'s, plus "name",
    "true_class", "correct" (the prediction is the label) and "inside" (the map's maximum
    lies in the true box); or {"name", "error"} for a sample that could not be read or
    explained (the others go on). options (cmap, upscale, dpi) go to ``explain_file``.
    Raises SampleIndexError for a missing or broken samples.json, before any work."""
    samples = list(load_sample_index(images_dir).items())
    work = [(model, Path(images_dir) / name, name, info, out_dir, options)
            for name, info in samples]
    jobs = _demo_jobs(jobs, len(work))
    if jobs == 1:
        return [_demo_sample(*w) for w in work]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    global _FORKED_WORK
    _FORKED_WORK = work            # the children inherit it: the model is not pickled
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_demo_forked, range(len(work))))
    finally:
        _FORKED_WORK = None


_FORKED_WORK = None  # run_demo's work list, while its forked children run


def _demo_jobs(jobs, count: int) -> int:
    import multiprocessing
    import os
    if jobs is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        jobs = min(4, cpus or 1)
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(int(jobs), count))


def _demo_forked(k: int) -> dict:
    return _demo_sample(*_FORKED_WORK[k])


def _demo_sample(model, path, name, info, out_dir, options) -> dict:
    try:
        r = explain_file(model, path, out_dir=out_dir, box=info["box"],
                         true_label=info["label"], **options)
    except (ImageReadError, ExplainError) as e:
        return {"name": name, "error": str(e)}
    x0, y0, x1, y1 = info["box"]
    r.update(name=name, true_class=info["class"], correct=r["predicted"] == info["label"],
             inside=bool(x0 <= r["peak"][0] < x1 and y0 <= r["peak"][1] < y1))
    return r


def localize_file(model, path, method: str = "threshold", target=None,
                  out_dir="localize_out", stem=None, cmap: str = viz.CMAP,
                  dpi: int = viz.DPI) -> dict:
    """The paper's weakly supervised localisation (§3.1) of one image file: its gradient map,
    a box from it by ``method`` ("threshold" or "graphcut"), and a figure
    ``<stem>_localize-<method>_<class>.png`` with the true box and the IoU when the file's
    samples.json knows them.

    Returns {"path", "box" (x0, y0, x1, y1), "true_box", "iou" (or None), "figure",
    "target_name", "warning", "notes"}. Raises ExplainError (and writes nothing) when the
    map holds NaN or inf or nothing was segmented from it, besides ``explain``'s errors."""
    pixels, x, size, notes = _load(model, path)
    name = _shown(Path(path).name)
    truth = ground_truth(path) or {}
    scores, targets, results = saliency.attribute(model, x, ["gradient"], target)
    _check_finite(name, "the model's scores", scores)
    _check_finite(name, "the gradient map", results["gradient"])
    smap = saliency.to_map(results["gradient"], x.shape[2:])[0]     # (H, W)
    loc = localize(pixels, smap, method)
    if loc.box is None:
        why = " (the map is zero everywhere)" if not smap.any() else ""
        raise ExplainError(f"{name}: {method} localisation found no object: nothing was "
                           f"segmented from the saliency map{why}")
    box = tuple(int(v) for v in loc.box)
    true_box = truth.get("box")
    iou = None if true_box is None else float(box_iou(box, true_box))
    t = int(targets[0])
    warning = out_of_distribution(model, size)
    title = _title(model, name, scores[0], t,
                   f"a {method} box from the gradient map of the score", truth.get("label"))
    fig = localization_figure(pixels, smap, {method: loc}, true_box=true_box, title=title,
                              ious=None if iou is None else {method: iou}, warning=warning,
                              cmap=cmap)
    fig_path = (Path(out_dir) / f"{stem or Path(path).stem}_localize-{method}_"
                f"{slug(_name_of(model, t))}.png")
    viz.save_figure(fig, fig_path, dpi=dpi)
    return {"path": str(path), "box": box, "true_box": None if true_box is None
            else tuple(true_box), "iou": iou, "figure": str(fig_path),
            "target_name": _name_of(model, t), "warning": warning, "notes": notes}
