"""Honest evaluation of saliency methods on cluttered Fashion-MNIST, where the object is known.

For N test images of ``minicnn.io.datasets.make_cluttered`` (generated with the model's
recorded dataset seed, so they are the images its test accuracy was measured on) and every
method of the registry ``saliency.METHODS`` plus baselines that know nothing about the
model (``metrics.BASELINE_MAPS``: random, centred Gaussian, Sobel edges, and OpenCV's two
static saliency detectors, spectral residual and fine-grained, when its contrib build is
installed), this measures

- the pointing game (``metrics.pointing_hit``);
- weakly supervised localisation (Simonyan et al. 2013, §3.1) by both ways of
  ``minicnn.experiments.localize``: threshold (top 10% of pixels, about the mean object area
  of the TRAINING split, 10.1%) and the paper's graph cut; the rate of box IoU >= 0.5 and the
  mean mask precision and recall against the object's pixels;
- deletion and insertion areas (``metrics.deletion_curve`` / ``insertion_curve``, RISE).

Choices, stated once:
- every map explains the TRUE class (the usual choice for localisation: a wrong prediction
  should not excuse a map for pointing elsewhere); ``target="predicted"`` is offered;
- a method's output becomes a map by ``saliency.to_map`` (the paper's max over channels of
  |.|; a Grad-CAM map upsampled bilinearly);
- costs differ by orders of magnitude, so the slow parts run on the first images only: the
  registry's slow methods (``Method.slow``: SmoothGrad, integrated gradients, occlusion) on
  ``slow_limit`` images, graph cut on ``graphcut_limit``, deletion/insertion (2 x 17 forward
  passes per image and map) on ``curve_limit``. Each number in the outputs says over how many
  images it was computed.
Everything is seeded: the same call gives the same numbers.

Why the limits, measured on an idle 2-core machine with the shipped model: the six one-pass
methods (computed together by ``saliency.attribute``) and the three baselines with pointing
game and threshold localisation take 161 s for all 10,000 images, while adding SmoothGrad,
integrated gradients and occlusion, deletion/insertion on the first 1,000 images and graph cut
on the first 2,000 takes 31 minutes, most of it in those first 1,000 images. The progress bar weighs
each image and method by its cost in passes (``Method.cost``), so that its estimate of the
time left holds although the first images are the slow ones.

``run_evaluation`` computes and returns the result dict; ``minicnn.viz.report`` writes it
(``results.md``, ``results.csv``, ``results.json``, ``localization.png``, ``curves.png``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from minicnn import saliency
from minicnn._checks import check_choice, check_int
from minicnn._progress import progress_bar
from minicnn.experiments import metrics
from minicnn.experiments.localize import GRAPHCUT_INSTALL_HINT, localize
from minicnn.io.datasets import load_fashion_mnist, make_cluttered
from minicnn.io.images import Preprocess, to_input

__all__ = ["run_evaluation", "plan_evaluation", "evaluate_range", "finish_evaluation",
           "EvaluationPlan", "check_methods", "baseline_maps", "available_baselines",
           "opencv_saliency_available", "TARGETS"]

# Rough cost of scoring one image, in forward + backward passes, beside each method's own
# (``Method.cost``), so that the progress bar's estimate of the time left holds although the
# first images carry the slow parts: deletion + insertion (2 x 17 forward passes, a forward ~
# 1/3 of a pass), one graph cut. The baseline maps need no pass at all.
CURVE_COST = 11
GRAPHCUT_COST = 1
TARGETS = ("true", "predicted")
THRESHOLD_QUANTILE = 0.9  # keep the top 10%: the mean object mask is 10.1% of the image


def baseline_maps(name: str, images, indices, seed: int = 0) -> np.ndarray:
    """A baseline map per image: images uint8 (N, H, W, 3), their dataset indices (N,).

    "random": uniform noise from default_rng([seed, index]) (so per image, not per batch);
    "center_gaussian": ``metrics.center_gaussian_map``; "sobel": ``metrics.sobel_map``;
    "spectral_residual", "fine_grained": OpenCV's detectors (``metrics.spectral_residual_map``,
    ``metrics.fine_grained_map``).
    """
    shape = images.shape[1:3]
    if name == "random":
        return np.stack([metrics.random_map(shape, [seed, int(i)]) for i in indices])
    if name == "center_gaussian":
        return np.broadcast_to(metrics.center_gaussian_map(shape), (len(images),) + shape)
    if name == "sobel":
        return np.stack([metrics.sobel_map(im) for im in images])
    if name == "spectral_residual":
        return np.stack([metrics.spectral_residual_map(im) for im in images])
    if name == "fine_grained":
        return np.stack([metrics.fine_grained_map(im) for im in images])
    raise ValueError(f"unknown baseline map {name!r}; valid ones are "
                     f"{', '.join(metrics.BASELINE_MAPS)}")


def opencv_saliency_available() -> bool:
    """Whether OpenCV's static saliency detectors (its contrib build) can be imported."""
    try:
        import cv2
        return hasattr(cv2, "saliency")
    except ImportError:
        return False


def available_baselines(baselines=True) -> list[str]:
    """The baseline maps to evaluate: True -> all of ``metrics.BASELINE_MAPS`` that can run
    here (OpenCV's only with its contrib build); False -> none; a list -> those names (an
    OpenCV one without OpenCV is an ImportError naming the install)."""
    if baselines is True:
        return [n for n in metrics.BASELINE_MAPS
                if n not in metrics.OPENCV_BASELINES or opencv_saliency_available()]
    if not baselines:
        return []
    names = list(baselines)
    for name in names:
        if name not in metrics.BASELINE_MAPS:
            raise ValueError(f"unknown baseline map {name!r}; valid ones are "
                             f"{', '.join(metrics.BASELINE_MAPS)}")
        if name in metrics.OPENCV_BASELINES and not opencv_saliency_available():
            raise ImportError(metrics.OPENCV_SALIENCY_HINT)
    return names


class _Tally:
    """Per-image numbers of one method, appended batch by batch."""

    def __init__(self):
        self.values = {k: [] for k in ("hit", "t_iou", "t_prec", "t_rec", "g_iou", "g_prec",
                                       "g_rec", "deletion", "insertion")}
        self.del_curves, self.ins_curves = [], []

    def extend(self, other: "_Tally") -> None:
        """Append another tally's images after this one's (the next range of images)."""
        for key, values in other.values.items():
            self.values[key].extend(values)
        self.del_curves.extend(other.del_curves)
        self.ins_curves.extend(other.ins_curves)
        if hasattr(other, "fractions"):
            self.fractions = other.fractions

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


def check_methods(methods) -> list[str]:
    """None (every method of the registry) or names (a list, or a comma-separated string)
    -> the method names; baseline names are accepted and left out (see ``baselines``)."""
    if methods is None:
        return list(saliency.METHODS)
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    for name in methods:
        if name not in saliency.METHODS and name not in metrics.BASELINE_MAPS:
            raise ValueError(f"unknown method {name!r}; valid methods are "
                             f"{', '.join(list(saliency.METHODS) + list(metrics.BASELINE_MAPS))}")
    return [name for name in methods if name in saliency.METHODS]


@dataclass(frozen=True)
class EvaluationPlan:
    """What an evaluation will do, checked and resolved before any work: which images, which
    methods, which limits. ``run_evaluation`` makes one and runs it over all the images;
    ``minicnn.cluster`` runs it over ranges of them on several processes."""

    n_images: int
    seed: int                 # the dataset seed
    prep: Preprocess
    target: str               # "true" or "predicted"
    batch_size: int
    fast: tuple               # one-pass methods, computed together by saliency.attribute
    slow: tuple               # Method.slow ones, on the first slow_limit images
    names: tuple              # every method and baseline, in the order of the result's rows
    slow_limit: int
    graphcut_limit: int
    curve_limit: int
    curve_step: int
    random_seed: int
    data_dir: object = None

    def cost(self, name: str, indices) -> float:
        """Of scoring these images with this method, in passes (for the progress bar)."""
        indices = np.asarray(indices)
        passes = saliency.METHODS[name].cost() if name in saliency.METHODS else 0.0
        return (len(indices) * passes + CURVE_COST * int((indices < self.curve_limit).sum())
                + GRAPHCUT_COST * int((indices < self.graphcut_limit).sum()))

    def work(self, start: int = 0, stop: int | None = None) -> float:
        """The cost of images start..stop-1 with every method."""
        stop = self.n_images if stop is None else stop
        return sum(self.cost(name, np.arange(start, min(stop, self.slow_limit)
                                             if name in self.slow else stop))
                   for name in self.names)

    def ranges(self, batches: int = 1) -> list[tuple[int, int]]:
        """[start, stop) ranges of ``batches`` whole batches each, covering the images in
        order. A range starts on a batch boundary, so that it forms exactly the batches of
        the single-process run and every number comes out bit for bit the same."""
        step = check_int(batches, "batches", 1) * self.batch_size
        return [(a, min(a + step, self.n_images)) for a in range(0, self.n_images, step)]


def plan_evaluation(model, n_images: int = 10_000, methods=None, seed=None,
                    target: str = "true", batch_size: int = 100, slow_limit: int = 100,
                    graphcut_limit: int = 1000, curve_limit: int = 100, curve_step: int = 256,
                    baselines=True, random_seed: int = 0, data_dir=None) -> EvaluationPlan:
    """Check the arguments of ``run_evaluation`` (which documents them) and resolve them
    against the model's metadata -> an EvaluationPlan. Raises what run_evaluation raises
    before any work."""
    check_choice(target, TARGETS, "target")
    n_images = check_int(n_images, "n_images", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    for name, value in (("slow_limit", slow_limit), ("graphcut_limit", graphcut_limit),
                        ("curve_limit", curve_limit)):
        check_int(value, name, 0)
    if graphcut_limit > 0:
        try:
            import cv2  # noqa: F401  (fail now, not after an hour of maps)
        except ImportError:
            raise ImportError(f"{GRAPHCUT_INSTALL_HINT}; or pass graphcut_limit=0 to skip "
                              f"graph-cut localisation") from None
    items = len(load_fashion_mnist("test", data_dir)[1])           # the files must be there
    if n_images > items:
        raise ValueError(f"n_images is {n_images:,}, but the test split has {items:,} images; "
                         f"ask for at most {items:,}")
    meta = model.meta
    if seed is None:
        seed = int(meta.get("dataset", {}).get("seed", 0))
    chosen = check_methods(methods)
    return EvaluationPlan(
        n_images=n_images, seed=seed, prep=Preprocess.from_meta(meta), target=target,
        batch_size=batch_size,
        fast=tuple(name for name in chosen if not saliency.METHODS[name].slow),
        slow=tuple(name for name in chosen if saliency.METHODS[name].slow),
        names=tuple(chosen + available_baselines(baselines)),
        slow_limit=slow_limit, graphcut_limit=graphcut_limit, curve_limit=curve_limit,
        curve_step=curve_step, random_seed=random_seed, data_dir=data_dir)


def run_evaluation(model, n_images: int = 10_000, methods=None, progress: bool = True,
                   seed=None, target: str = "true", batch_size: int = 100,
                   slow_limit: int = 100, graphcut_limit: int = 1000, curve_limit: int = 100,
                   curve_step: int = 256, baselines=True, random_seed: int = 0,
                   data_dir=None) -> dict:
    """Evaluate saliency methods and baselines on the cluttered test split.

    - model: a Sequential for (N, 3, 64, 64) inputs; its ``meta`` gives the preprocessing and
      the dataset seed
    - n_images: the first n_images of the test split, at most its size (10,000)
    - methods: None (every method of ``saliency.METHODS``), or names (a list or a
      comma-separated string); baseline names in it are accepted and ignored (see baselines)
    - progress: a progress bar on stderr
    - seed: the DATASET seed; None reads model.meta["dataset"]["seed"] (0 if absent)
    - target: "true" (the label, default) or "predicted" (the model's answer)
    - batch_size: images per batch (the maps of a batch are computed together)
    - slow_limit: images for the slow methods (``Method.slow``; 0: skip them)
    - graphcut_limit: images for graph-cut localisation (0: skip; else needs OpenCV, and
      its absence is an ImportError before any work)
    - curve_limit: images for deletion/insertion (0: skip); curve_step pixels per point
    - baselines: True (every baseline map; OpenCV's two only when its contrib build is
      installed), False (none), or a list of names in ``metrics.BASELINE_MAPS``
    - random_seed: seeds the random baseline map and the noise of SmoothGrad
    Raises, before any work: DatasetNotFoundError without the Fashion-MNIST files,
    ValueError or TypeError for a bad argument (n_images beyond the split included),
    ImportError for graph cut without OpenCV; and ValueError if the model's scores for a
    batch hold NaN or inf.
    Returns {"settings": {...}, "accuracy": float, "rows": [summary per method, in
    ``viz.report.COLUMNS``], "curves": {method: {"fractions", "deletion", "insertion"}}};
    ``minicnn.viz.report.write_evaluation`` writes it to a folder.

    The work is three steps, which ``minicnn.cluster`` runs on several processes:
    ``plan_evaluation`` (the checks), ``evaluate_range`` (the images of a range) and
    ``finish_evaluation`` (the tallies of the ranges, in order -> this dict).
    """
    plan = plan_evaluation(model, n_images, methods, seed, target, batch_size, slow_limit,
                           graphcut_limit, curve_limit, curve_step, baselines, random_seed,
                           data_dir)
    started = time.perf_counter()
    with progress_bar(plan.work(), "evaluate", progress, percent=True) as bar:
        part = evaluate_range(model, plan, 0, plan.n_images, bar)
    return finish_evaluation(plan, [part], time.perf_counter() - started)


def evaluate_range(model, plan: EvaluationPlan, start: int, stop: int, bar=None) -> tuple:
    """Test images start..stop-1 in batches of plan.batch_size from ``start`` -> (correct
    predictions, {method: _Tally}). ``bar`` (a progress bar) is updated by the cost done."""
    tallies = {name: _Tally() for name in plan.names}
    correct = 0
    for first in range(start, stop, plan.batch_size):
        indices = np.arange(first, min(first + plan.batch_size, stop))
        batch = make_cluttered(indices, "test", plan.seed, plan.data_dir)
        x = to_input(batch.images, plan.prep)                      # (B, 3, H, W) float32
        # one forward pass: the predictions, and every one-pass method's maps
        scores, targets, results = saliency.attribute(
            model, x, list(plan.fast), batch.labels if plan.target == "true" else None)
        if not np.isfinite(scores).all():
            raise ValueError(f"the model's scores for test images {indices[0]}.."
                             f"{indices[-1]} hold NaN or inf (an overflow in the model?)")
        correct += int((scores.argmax(axis=1) == batch.labels).sum())
        for name in plan.names:
            rows = indices < (plan.slow_limit if name in plan.slow else plan.n_images)
            if not rows.any():
                continue
            if name in results:
                maps = saliency.to_map(results[name], x.shape[2:])
            elif name in plan.slow:
                method = saliency.METHODS[name]
                # a method that draws noise (SmoothGrad) is seeded by its batch's first
                # image, so the numbers do not depend on which process ran the batch
                seeded = ({"seed": [plan.random_seed, int(indices[0])]}
                          if "seed" in method.options else {})
                maps = saliency.to_map(method(model, x[rows], targets[rows], **seeded),
                                       x.shape[2:])
            else:
                maps = baseline_maps(name, batch.images[rows], indices[rows], plan.random_seed)
            _score_maps(tallies[name], model, x[rows], targets[rows], maps,
                        _subset(batch, rows), indices[rows], plan.graphcut_limit,
                        plan.curve_limit, plan.curve_step)
            if bar is not None:
                bar.update(plan.cost(name, indices[rows]))
    return correct, tallies


def finish_evaluation(plan: EvaluationPlan, parts, seconds: float) -> dict:
    """The result dict of ``run_evaluation`` from the ``evaluate_range`` results of ranges
    that cover the images, given in image order: each method's per-image numbers are joined
    in that order before any mean is taken, so the means are those of one single run."""
    tallies = {name: _Tally() for name in plan.names}
    correct = 0
    for part_correct, part in parts:
        correct += part_correct
        for name in plan.names:
            tallies[name].extend(part[name])
    result = {
        "settings": {"n_images": plan.n_images, "dataset_seed": plan.seed, "split": "test",
                     "target": plan.target, "threshold_quantile": THRESHOLD_QUANTILE,
                     "graphcut": {"fg_quantile": 0.95, "bg_quantile": 0.30, "iterations": 1},
                     "slow_methods": list(plan.slow),
                     "slow_limit": plan.slow_limit, "graphcut_limit": plan.graphcut_limit,
                     "curve_limit": plan.curve_limit, "curve_step": plan.curve_step,
                     "deletion_baseline": "0 in normalised input (the dataset mean colour)",
                     "insertion_start": "saliency.blur(x, 5.0)",
                     "batch_size": plan.batch_size, "random_seed": plan.random_seed,
                     "baselines": [n for n in plan.names if n in metrics.BASELINE_MAPS],
                     "seconds": round(seconds, 1)},
        "accuracy": correct / plan.n_images,
        "rows": [tallies[name].summary(name) for name in plan.names],
        "curves": {},
    }
    for name in plan.names:
        t = tallies[name]
        if t.del_curves:
            result["curves"][name] = {
                "fractions": t.fractions.tolist(),
                "deletion": np.concatenate(t.del_curves).mean(axis=0).tolist(),
                "insertion": np.concatenate(t.ins_curves).mean(axis=0).tolist()}
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
