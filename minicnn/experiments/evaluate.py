"""Honest evaluation of saliency methods on cluttered Fashion-MNIST, where the object is known.

For N test images of ``minicnn.io.datasets.make_cluttered`` (generated with the model's recorded
dataset seed, so they are the images its test accuracy was measured on) and every saliency
method of ``saliency.METHODS`` plus three baselines that know nothing about the model
(``metrics.BASELINE_MAPS``: random, centred Gaussian, Sobel edges), this measures

- the pointing game (``metrics.pointing_hit``);
- weakly supervised localisation (Simonyan et al. 2013, §3.1) by both ways of
  ``minicnn.experiments.localize``: threshold (top 10% of pixels, about the mean object area of the
  TRAINING split, 10.1%) and the paper's graph cut; the rate of box IoU >= 0.5 and the mean
  mask precision and recall against the object's pixels;
- deletion and insertion areas (``metrics.deletion_curve`` / ``insertion_curve``, RISE).

Choices, stated once:
- every map explains the TRUE class (the usual choice for localisation: a wrong prediction
  should not excuse a map for pointing elsewhere); ``target="predicted"`` is offered;
- an attribution (N, C, H, W) becomes a map by the paper's max over channels of |.|; a
  Grad-CAM map (N, h, w) is upsampled bilinearly to (H, W) (``attribution_maps``);
- costs differ by orders of magnitude, so the slow parts run on the first images only:
  methods in ``SLOW_METHODS`` on ``slow_limit`` images, graph cut on ``graphcut_limit``,
  deletion/insertion (2 x 17 forward passes per image and map) on ``curve_limit``. Each
  number in the outputs says over how many images it was computed.
Everything is seeded: the same call writes the same numbers.

Cost, measured on the project's idle 2-core machine with the shipped model (2026-11-27): the
six one-pass methods (``shared_pass_attributions``) and the three baselines with pointing game
and threshold localisation: 10,000 images in 161 s. With SmoothGrad, integrated gradients and
occlusion, deletion/insertion on the first 1,000 images and graph cut on the first 2,000:
31 minutes, most of it in those first 1,000 images (the progress bar weighs each image and
method by its cost, ``PASS_COST``, so that its estimate of the time left holds).

``run_evaluation`` writes into ``out_dir``: ``results.md`` (a Markdown table and the
settings), ``results.csv``, ``results.json`` (also the mean curves), ``localization.png``
(pointing game and IoU >= 0.5 rate per method) and ``curves.png`` (mean deletion and
insertion curves), each written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np

from minicnn.experiments import metrics
from minicnn import saliency
from minicnn.io.datasets import make_cluttered
from minicnn.io.images import Preprocess, to_input
from minicnn.experiments.localize import GRAPHCUT_INSTALL_HINT, localize
from minicnn._progress import Progress

__all__ = [
    "run_evaluation",
    "available_methods",
    "attribution_maps",
    "shared_pass_attributions",
    "baseline_maps",
    "SLOW_METHODS",
    "TARGETS",
    "COLUMNS",
]

SLOW_METHODS = ("smoothgrad", "integrated_gradients", "occlusion")
# Rough cost of scoring one image with one method, in forward + backward passes, so that the
# progress bar's estimate of the time left holds although the first images carry the slow
# parts: the slow methods' defaults (50 samples, 50 steps, 225 occlusion windows ~ 75 passes),
# deletion + insertion (2 x 17 forward passes, a forward ~ 1/3 of a pass), one graph cut.
# The baseline maps need no pass at all.
PASS_COST = {"smoothgrad": 50, "integrated_gradients": 50, "occlusion": 75,
             **{name: 0 for name in metrics.BASELINE_MAPS}}
CURVE_COST = 11
GRAPHCUT_COST = 1
TARGETS = ("true", "predicted")
THRESHOLD_QUANTILE = 0.9  # keep the top 10%: the mean object mask is 10.1% of the image
COLUMNS = ("method", "n_images", "pointing_game",
           "threshold_iou50", "threshold_mean_iou", "threshold_precision", "threshold_recall",
           "n_graphcut", "graphcut_iou50", "graphcut_mean_iou", "graphcut_precision",
           "graphcut_recall", "n_curves", "deletion_auc", "insertion_auc")


def available_methods() -> dict:
    """``saliency.METHODS`` if the module has it, else {"gradient": saliency.gradient}."""
    return dict(getattr(saliency, "METHODS", None) or {"gradient": saliency.gradient})


def attribution_maps(attributions, x) -> np.ndarray:
    """A method's output -> (N, H, W) maps at x's resolution, float64.

    (N, C, H, W): the paper's max over channels of |.|; (N, h, w) (Grad-CAM): bilinear
    upsampling to (H, W) if needed (``saliency.upsample_bilinear``).
    """
    a = np.asarray(attributions)
    H, W = x.shape[2:]
    if a.ndim == 4 and a.shape[2:] == (H, W):
        return np.abs(a).max(axis=1).astype(np.float64)            # (N, H, W)
    if a.ndim == 3:
        if a.shape[1:] != (H, W):
            a = saliency.upsample_bilinear(a.astype(np.float64), (H, W))   # (N, H, W)
        return a.astype(np.float64)
    raise ValueError(f"attribution of shape {a.shape} is neither (N, C, {H}, {W}) nor "
                     f"(N, h, w)")


def shared_pass_attributions(model, x, targets, methods) -> dict:
    """The one-pass methods of ``methods`` computed with shared passes -> {name: attribution}.

    gradient, guided_backprop and deconvnet differ only in the ReLU rule of the backward
    pass, so one forward pass serves all three (``model.backward`` may run any number of
    times after a forward); input_x_gradient is x * gradient and guided_grad_cam is
    guided_backprop * the upsampled Grad-CAM, by their definitions in ``minicnn.saliency``.
    Only entries that ARE the saliency module's functions are handled here (a replaced
    registry entry runs as given); the results equal the functions' own outputs (tested).
    """
    def wanted(name):
        return methods.get(name) is getattr(saliency, name, None)

    names = [n for n in ("gradient", "guided_backprop", "deconvnet", "input_x_gradient",
                         "grad_cam", "guided_grad_cam") if wanted(n)]
    if not names:
        return {}
    out = {}
    scores = model.forward(x)                                      # (N, K)
    seed = saliency.one_hot(saliency.resolve_targets(targets, scores), scores.shape[1],
                            scores.dtype)                          # (N, K)
    rules = {"gradient": "gradient", "input_x_gradient": "gradient",
             "guided_backprop": "guided", "guided_grad_cam": "guided", "deconvnet": "deconvnet"}
    for rule in dict.fromkeys(rules[n] for n in names if n in rules):
        grad = model.backward(seed, relu_rule=rule)                # (N, C, H, W)
        for name in names:
            if rules.get(name) == rule:
                out[name] = grad
    if "input_x_gradient" in out:
        out["input_x_gradient"] = x * out["input_x_gradient"]
    if "grad_cam" in names or "guided_grad_cam" in names:
        cam = saliency.grad_cam(model, x, targets, upsample=True)  # (N, H, W)
        if "grad_cam" in names:
            out["grad_cam"] = cam
        if "guided_grad_cam" in names:
            out["guided_grad_cam"] = out["guided_grad_cam"] * cam[:, None]   # (N, C, H, W)
    return out


def baseline_maps(name: str, images, indices, seed: int = 0) -> np.ndarray:
    """A baseline map per image: images uint8 (N, H, W, 3), their dataset indices (N,).

    "random": uniform noise from default_rng([seed, index]) (so per image, not per batch);
    "center_gaussian": ``metrics.center_gaussian_map``; "sobel": ``metrics.sobel_map``.
    """
    shape = images.shape[1:3]
    if name == "random":
        return np.stack([metrics.random_map(shape, [seed, int(i)]) for i in indices])
    if name == "center_gaussian":
        return np.broadcast_to(metrics.center_gaussian_map(shape), (len(images),) + shape)
    if name == "sobel":
        return np.stack([metrics.sobel_map(im) for im in images])
    raise ValueError(f"unknown baseline map {name!r}; valid ones are "
                     f"{', '.join(metrics.BASELINE_MAPS)}")


class _Tally:
    """Per-image numbers of one method, appended batch by batch."""

    def __init__(self):
        self.values = {k: [] for k in ("hit", "t_iou", "t_prec", "t_rec", "g_iou", "g_prec",
                                       "g_rec", "deletion", "insertion")}
        self.del_curves, self.ins_curves = [], []

    def summary(self, name: str) -> dict:
        v = {k: np.asarray(x, dtype=np.float64) for k, x in self.values.items()}

        def mean(a):
            return float(a.mean()) if a.size else float("nan")

        return {"method": name, "n_images": int(v["hit"].size),
                "pointing_game": mean(v["hit"]),
                "threshold_iou50": metrics.iou_rate(v["t_iou"]),
                "threshold_mean_iou": mean(v["t_iou"]),
                "threshold_precision": mean(v["t_prec"]), "threshold_recall": mean(v["t_rec"]),
                "n_graphcut": int(v["g_iou"].size),
                "graphcut_iou50": metrics.iou_rate(v["g_iou"]),
                "graphcut_mean_iou": mean(v["g_iou"]),
                "graphcut_precision": mean(v["g_prec"]), "graphcut_recall": mean(v["g_rec"]),
                "n_curves": int(v["deletion"].size),
                "deletion_auc": mean(v["deletion"]), "insertion_auc": mean(v["insertion"])}


def _check_methods(methods, registry) -> dict:
    if methods is None:
        return registry
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    chosen = {}
    for name in methods:
        if name in registry:
            chosen[name] = registry[name]
        elif name not in metrics.BASELINE_MAPS:
            raise ValueError(f"unknown method {name!r}; valid methods are "
                             f"{', '.join(list(registry) + list(metrics.BASELINE_MAPS))}")
    return chosen


def run_evaluation(model, n_images: int = 10_000, methods=None, out_dir="evaluation",
                   progress: bool = True, seed=None, target: str = "true",
                   batch_size: int = 100, slow_limit: int = 100, graphcut_limit: int = 1000,
                   curve_limit: int = 100, curve_step: int = 256, baselines=True,
                   random_seed: int = 0, data_dir=None) -> dict:
    """Evaluate saliency methods and baselines on the cluttered test split; write the outputs.

    - model: a Sequential for (N, 3, 64, 64) inputs; its ``meta`` gives the preprocessing and
      the dataset seed
    - n_images: the first n_images of the test split (at most 10,000 distinct items)
    - methods: None (every method of ``available_methods()``), or names (a list or a
      comma-separated string); baseline names in it are accepted and ignored (see baselines)
    - out_dir: output folder (created); None writes nothing
    - progress: a progress bar on stderr
    - seed: the DATASET seed; None reads model.meta["dataset"]["seed"] (0 if absent)
    - target: "true" (the label, default) or "predicted" (the model's answer)
    - batch_size: images per batch (the maps of a batch are computed together)
    - slow_limit: images for the methods in SLOW_METHODS (0: skip them)
    - graphcut_limit: images for graph-cut localisation (0: skip; else needs OpenCV, and
      its absence is an ImportError before any work)
    - curve_limit: images for deletion/insertion (0: skip); curve_step pixels per point
    - baselines: include the three baseline maps
    - random_seed: seeds the random baseline map
    Returns {"settings": {...}, "accuracy": float, "rows": [summary per method, in COLUMNS],
    "curves": {method: {"fractions", "deletion", "insertion"}}}.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid choices are {', '.join(TARGETS)}")
    for name, value in (("n_images", n_images), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if graphcut_limit > 0:
        try:
            import cv2  # noqa: F401  (fail now, not after an hour of maps)
        except ImportError:
            raise ImportError(f"{GRAPHCUT_INSTALL_HINT}; or pass graphcut_limit=0 to skip "
                              f"graph-cut localisation") from None
    meta = getattr(model, "meta", {}) or {}
    if seed is None:
        seed = int(meta.get("dataset", {}).get("seed", 0))
    prep = Preprocess.from_meta(meta)
    chosen = _check_methods(methods, available_methods())
    names = list(chosen) + (list(metrics.BASELINE_MAPS) if baselines else [])
    tallies = {name: _Tally() for name in names}
    correct = 0
    started = time.perf_counter()
    def cost(name, indices):  # of scoring these images with this method (see PASS_COST)
        return (len(indices) * PASS_COST.get(name, 1)
                + CURVE_COST * int((indices < curve_limit).sum())
                + GRAPHCUT_COST * int((indices < graphcut_limit).sum()))
    work = sum(cost(name, np.arange(min(slow_limit, n_images) if name in SLOW_METHODS
                                    else n_images)) for name in names)
    with Progress(work, "evaluate", enabled=progress, percent=True) as bar:
        for start in range(0, n_images, batch_size):
            indices = np.arange(start, min(start + batch_size, n_images))
            batch = make_cluttered(indices, "test", seed, data_dir)
            x = to_input(batch.images, prep)                       # (B, 3, H, W) float32
            predicted = model.forward(x).argmax(axis=1)
            correct += int((predicted == batch.labels).sum())
            targets = batch.labels if target == "true" else predicted
            shared = shared_pass_attributions(model, x, targets, chosen)
            for name in names:
                rows = indices < (slow_limit if name in SLOW_METHODS else n_images)
                if not rows.any():
                    continue
                if name in shared:
                    maps = attribution_maps(shared[name], x)
                elif name in chosen:
                    maps = attribution_maps(chosen[name](model, x[rows], targets[rows]), x[rows])
                else:
                    maps = baseline_maps(name, batch.images[rows], indices[rows], random_seed)
                _score_maps(tallies[name], model, x[rows], targets[rows], maps,
                            _subset(batch, rows), indices[rows], graphcut_limit, curve_limit,
                            curve_step)
                bar.update(cost(name, indices[rows]))
    seconds = time.perf_counter() - started
    result = {
        "settings": {"n_images": n_images, "dataset_seed": seed, "split": "test",
                     "target": target, "threshold_quantile": THRESHOLD_QUANTILE,
                     "graphcut": {"fg_quantile": 0.95, "bg_quantile": 0.30, "iterations": 1},
                     "slow_methods": [m for m in SLOW_METHODS if m in chosen],
                     "slow_limit": slow_limit, "graphcut_limit": graphcut_limit,
                     "curve_limit": curve_limit, "curve_step": curve_step,
                     "deletion_baseline": "0 in normalised input (the dataset mean colour)",
                     "insertion_start": "saliency.blur(x, 5.0)",
                     "batch_size": batch_size, "random_seed": random_seed,
                     "seconds": round(seconds, 1)},
        "accuracy": correct / n_images,
        "rows": [tallies[name].summary(name) for name in names],
        "curves": {},
    }
    for name in names:
        t = tallies[name]
        if t.del_curves:
            result["curves"][name] = {
                "fractions": t.fractions.tolist(),
                "deletion": np.concatenate(t.del_curves).mean(axis=0).tolist(),
                "insertion": np.concatenate(t.ins_curves).mean(axis=0).tolist()}
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


def _subset(batch, rows):
    return type(batch)(batch.images[rows], batch.labels[rows], batch.boxes[rows],
                       batch.masks[rows])


def _score_maps(tally, model, x, targets, maps, batch, indices, graphcut_limit, curve_limit,
                curve_step):
    """Every metric of one method on one batch, appended to its tally."""
    v = tally.values
    for n in range(len(maps)):
        box = batch.boxes[n]
        v["hit"].append(metrics.pointing_hit(maps[n], box))
        loc = localize(None, maps[n], "threshold", quantile=THRESHOLD_QUANTILE)
        v["t_iou"].append(metrics.box_iou(loc.box, box))
        p, r = metrics.mask_precision_recall(loc.mask, batch.masks[n])
        v["t_prec"].append(p)
        v["t_rec"].append(r)
        if indices[n] < graphcut_limit:
            loc = localize(batch.images[n], maps[n], "graphcut")
            v["g_iou"].append(metrics.box_iou(loc.box, box))
            p, r = metrics.mask_precision_recall(loc.mask, batch.masks[n])
            v["g_prec"].append(p)
            v["g_rec"].append(r)
    rows = indices < curve_limit
    if rows.any():
        f, deletion = metrics.deletion_curve(model, x[rows], maps[rows], targets[rows],
                                             curve_step)
        _, insertion = metrics.insertion_curve(model, x[rows], maps[rows], targets[rows],
                                               curve_step)
        tally.fractions = f
        tally.del_curves.append(deletion)
        tally.ins_curves.append(insertion)
        v["deletion"].extend(metrics.curve_auc(f, deletion))
        v["insertion"].extend(metrics.curve_auc(f, insertion))


# ============================================================================ outputs

def _fmt(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(result) -> str:
    """The results as Markdown: a table (one row per method) and the settings."""
    s = result["settings"]
    heads = ["method", "pointing", "IoU≥0.5 thr", "P / R thr",
             "IoU≥0.5 graphcut (n)", "P / R graphcut", "deletion ↓ (n)", "insertion ↑"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in result["rows"]:
        lines.append("| " + " | ".join([
            r["method"], f"{_fmt(r['pointing_game'])} ({r['n_images']})",
            _fmt(r["threshold_iou50"]),
            f"{_fmt(r['threshold_precision'])} / {_fmt(r['threshold_recall'])}",
            f"{_fmt(r['graphcut_iou50'])} ({r['n_graphcut']})",
            f"{_fmt(r['graphcut_precision'])} / {_fmt(r['graphcut_recall'])}",
            f"{_fmt(r['deletion_auc'])} ({r['n_curves']})", _fmt(r["insertion_auc"])]) + " |")
    notes = [
        "",
        f"Cluttered Fashion-MNIST test split, first {s['n_images']} images, dataset seed "
        f"{s['dataset_seed']}; model accuracy on them {result['accuracy']:.3f}. Maps explain "
        f"the {s['target']} class.",
        f"Threshold localisation: top {100 * (1 - s['threshold_quantile']):.0f}% of pixels, "
        f"largest 8-connected component. Graph cut: colour models from the saliency "
        f"quantiles above {s['graphcut']['fg_quantile']} and below "
        f"{s['graphcut']['bg_quantile']}, one cut (cv2.grabCut).",
        f"Deletion: pixels become {s['deletion_baseline']}; insertion starts from "
        f"{s['insertion_start']}; {s['curve_step']} pixels per step, area by the trapezoid "
        f"rule over the fraction of pixels.",
        f"Slow methods ({', '.join(s['slow_methods']) or 'none'}) on the first "
        f"{s['slow_limit']} images. (n) = images per number. Took {s['seconds']} s.",
    ]
    return "\n".join(lines + notes) + "\n"


def csv_text(result) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def write_outputs(result, out_dir) -> list[Path]:
    """results.md, results.csv, results.json, localization.png, curves.png in out_dir."""
    from minicnn.viz.experiments import evaluation_bars, evaluation_curves
    from minicnn.viz import atomic_write, save_figure
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def text_writer(text):
        return lambda tmp: Path(tmp).write_text(text)

    paths = [atomic_write(out / "results.md", text_writer(markdown_table(result))),
             atomic_write(out / "results.csv", text_writer(csv_text(result))),
             atomic_write(out / "results.json",
                          text_writer(json.dumps(result, indent=1, allow_nan=True) + "\n")),
             save_figure(evaluation_bars(result), out / "localization.png")]
    if result["curves"]:
        paths.append(save_figure(evaluation_curves(result), out / "curves.png"))
    return paths
