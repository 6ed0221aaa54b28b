"""From an image file to a saliency figure on disk: the whole path of one image in one place.

    file  --read_image-->  pixels (H, W, 3) uint8  --to_input-->  x (1, 3, H, W), normalised
          --model.forward-->  scores (1, K), before the softmax
          --one-hot on class c, model.backward-->  dS_c/dx, shaped like x     (saliency.attribute)
          --max over channels of |.|-->  the map M (H, W)                     (saliency.to_map)
          --viz-->  a figure (PNG) and the map (.npy), each written atomically

``explain_file`` does it for one file and one method, ``compare_file`` for every method of
the registry, ``run_demo`` for the shipped sample images and ``localize_file`` adds the
paper's weakly supervised localisation. Each runs every image forward once, returns what it
found as a dict, and prints nothing: the command line (``minicnn saliency``, ``compare``,
``demo``, ``localize``) prints.

Nothing half-done reaches disk: a figure and its map are written together or not at all
(``viz.save_together``), and an image whose scores or map hold NaN or inf (an overflow in the
model) is an ``ExplainError``, with nothing written for it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minicnn import saliency, viz
from minicnn.experiments.localize import localize
from minicnn.io.images import ImageReadError, Preprocess, read_image, to_input, to_pixels
from minicnn.io.samples import SAMPLES_DIR, load_sample_index
from minicnn.viz.experiments import localization_figure

__all__ = ["explain_file", "compare_file", "run_demo", "localize_file", "class_names",
           "top_classes", "method_options", "SEED", "ExplainError"]

SEED = 0  # SmoothGrad's noise: the same command gives the same map


class ExplainError(ValueError):
    """An image was read but cannot be explained: its scores or map hold NaN or inf, or
    localisation found no object. The message names the file."""


def _check_finite(path, what: str, values) -> None:
    if not np.isfinite(values).all():
        raise ExplainError(f"{path}: NaN or inf in {what} (an overflow in the model?); "
                           "nothing written for it")


def _shown(name) -> str:
    """A file name as text to draw: bytes that are not UTF-8 shown as \\xNN."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def class_names(model) -> list[str]:
    """The model's class names from its metadata, or [] if it has none."""
    return list(model.meta.get("class_names") or [])


def _name_of(model, c: int) -> str:
    names = class_names(model)
    return names[c] if c < len(names) else str(c)


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


def _read(model, path):
    """-> (prep, pixels (H, W, 3) uint8, x (1, 3, H, W), notes); ImageReadError for a bad
    file; the notes say what the reader did (e.g. took the first of several frames)."""
    prep = Preprocess.from_meta(model.meta)
    pixels, notes = read_image(path, prep, return_notes=True)        # (H, W, 3) uint8
    return prep, pixels, to_input(pixels, prep), notes               # (1, 3, H, W)


def explain_file(model, path, method: str = "gradient", target=None, out_dir="saliency_out",
                 box=None, progress: bool = True, layer=None) -> dict:
    """Classify one image file, compute its map with ``method``, write figure + map.

    - target: None (the predicted class) or a class index
    - layer: the node or block Grad-CAM (and guided Grad-CAM) uses; None: its default
    - box: the object's true box (x0, y0, x1, y1), drawn on the figure if given
    Files: ``<stem>_saliency.png/.npy`` for the gradient, ``<stem>_<method>.png/.npy``
    otherwise; the .npy is the (H, W) map (max |.| over channels, or Grad-CAM resized).
    Returns {"path", "scores" (K,), "predicted", "target" (class indices), "predicted_name",
    "target_name", "top" (see ``top_classes``), "suffix", "figure", "map", "peak" (x, y) of
    the map's maximum, "notes" (what the image reader did, e.g. took the first frame)}.
    Raises minicnn.io.images.ImageReadError for an unreadable image, ExplainError for NaN or
    inf in the scores or the map (nothing is written then), and a WriteError if the files
    cannot be written (then neither is).
    """
    prep, pixels, x, notes = _read(model, path)
    scores, targets, results = saliency.attribute(                   # one forward pass
        model, x, [method], target, {method: method_options(method, progress, layer)})
    _check_finite(path, "the model's scores", scores)
    _check_finite(path, f"the {method} map", results[method])
    result = results[method][0]                                      # (C, H, W) or (h, w)
    smap = saliency.to_map(results[method], x.shape[2:])[0]          # (H, W)
    scores, t = scores[0], int(targets[0])
    pred = int(np.argmax(scores))

    stem, suffix = Path(path).stem, ("saliency" if method == "gradient" else method)
    fig_path = Path(out_dir) / f"{stem}_{suffix}.png"
    npy_path = Path(out_dir) / f"{stem}_{suffix}.npy"
    title = (f"{_shown(Path(path).name)}: predicted {_name_of(model, pred)} "
             f"({scores[pred]:.2f}); {method} for {_name_of(model, t)} (score {scores[t]:.2f})")
    if np.ndim(result) == 2 and layer is None:
        layer = saliency.default_cam_layer(model)
    fig = viz.method_figure(method, to_pixels(x, prep)[0], result, smap, title, box, layer)
    viz.save_together({fig_path: fig,                               # both or neither
                       npy_path: lambda tmp: np.save(tmp, smap.astype(np.float32))})
    iy, ix = np.unravel_index(np.argmax(smap), smap.shape)
    return {"path": str(path), "scores": scores, "predicted": pred, "target": t,
            "predicted_name": _name_of(model, pred), "target_name": _name_of(model, t),
            "top": top_classes(model, scores), "suffix": suffix, "figure": str(fig_path),
            "map": str(npy_path), "peak": (int(ix), int(iy)), "notes": notes}


def compare_file(model, path, target=None, out_dir="saliency_out",
                 progress: bool = True) -> dict:
    """Every method of the registry on one image, side by side in ``<stem>_compare.png``.

    Returns {"path", "predicted", "target", "predicted_name", "target_name", "methods"
    (names), "figure", "notes"}; raises as ``explain_file``."""
    prep, pixels, x, notes = _read(model, path)
    methods = list(saliency.METHODS)
    options = {m: method_options(m, progress) for m in methods}
    scores, targets = saliency.scores_and_targets(model, x, target)  # before the slow methods
    _check_finite(path, "the model's scores", scores)
    scores, targets, results = saliency.attribute(model, x, methods, targets, options)
    for m, r in results.items():
        _check_finite(path, f"the {m} map", r)
    maps = {m: saliency.to_map(r, x.shape[2:])[0] for m, r in results.items()}   # (H, W) each
    pred, t = int(np.argmax(scores[0])), int(targets[0])
    title = (f"{_shown(Path(path).name)}: predicted {_name_of(model, pred)} ({scores[0, pred]:.2f}); "
             f"maps for {_name_of(model, t)}")
    fig_path = Path(out_dir) / f"{Path(path).stem}_compare.png"
    viz.save_figure(viz.comparison_figure(to_pixels(x, prep)[0], maps, title), fig_path)
    return {"path": str(path), "predicted": pred, "target": t, "methods": methods,
            "figure": str(fig_path), "predicted_name": _name_of(model, pred),
            "target_name": _name_of(model, t), "notes": notes}


def run_demo(model, images_dir=SAMPLES_DIR, out_dir="saliency_out") -> list[dict]:
    """``explain_file`` (the gradient) for every sample of ``images_dir`` with its true box.

    Returns one dict per sample: ``explain_file``'s, plus "name", "true_class", "correct"
    (the prediction is the label) and "inside" (the map's maximum lies in the true box); or
    {"name", "error"} for a sample that could not be read or explained (the others go on).
    Raises SampleIndexError for a missing or broken samples.json, before any work."""
    rows = []
    for name, info in load_sample_index(images_dir).items():
        try:
            r = explain_file(model, Path(images_dir) / name, out_dir=out_dir, box=info["box"])
        except (ImageReadError, ExplainError) as e:
            rows.append({"name": name, "error": str(e)})
            continue
        x0, y0, x1, y1 = info["box"]
        r.update(name=name, true_class=info["class"], correct=r["predicted"] == info["label"],
                 inside=bool(x0 <= r["peak"][0] < x1 and y0 <= r["peak"][1] < y1))
        rows.append(r)
    return rows


def localize_file(model, path, method: str = "threshold", target=None,
                  out_dir="localize_out") -> dict:
    """The paper's weakly supervised localisation (§3.1) of one image file: its gradient map,
    a box from it by ``method`` ("threshold" or "graphcut"), and a figure
    ``<stem>_localize.png``. Returns {"path", "box" (x0, y0, x1, y1), "figure", "notes"}.
    Raises ExplainError (and writes nothing) when the map holds NaN or inf or nothing was
    segmented from it, besides ``explain_file``'s errors."""
    prep, pixels, x, notes = _read(model, path)
    grad, scores, _ = saliency.backprop(model, x, target)            # (1, 3, H, W), (1, K)
    _check_finite(path, "the model's scores", scores)
    _check_finite(path, "the gradient map", grad)
    smap = saliency.saliency_map(grad)[0]                            # (H, W)
    loc = localize(pixels, smap, method)
    if loc.box is None:
        why = " (the map is zero everywhere)" if not smap.any() else ""
        raise ExplainError(f"{path}: {method} localisation found no object: nothing was "
                           f"segmented from the saliency map{why}")
    fig_path = Path(out_dir) / f"{Path(path).stem}_localize.png"
    box = tuple(int(v) for v in loc.box)
    fig = localization_figure(pixels, smap, {method: loc},
                              title=f"{_shown(Path(path).name)}: {method} box {box}")
    viz.save_figure(fig, fig_path)
    return {"path": str(path), "box": box, "figure": str(fig_path), "notes": notes}
