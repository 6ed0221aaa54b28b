"""The evaluation's report files: a Markdown table, a CSV file, the whole result as JSON, and
two plots, written into one folder all or none.

``minicnn.experiments.evaluate.run_evaluation`` computes the result dict; this module only
formats and writes it (``write_evaluation``).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from minicnn.viz.experiments import evaluation_bars, evaluation_curves
from minicnn.viz.plotting import save_together

__all__ = ["markdown_table", "csv_text", "write_evaluation", "COLUMNS"]

COLUMNS = ("method", "n_images", "pointing_game",
           "threshold_iou50", "threshold_mean_iou", "threshold_precision", "threshold_recall",
           "n_graphcut", "graphcut_iou50", "graphcut_mean_iou", "graphcut_precision",
           "graphcut_recall", "n_curves", "deletion_auc", "insertion_auc")


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


def write_evaluation(result, out_dir) -> list[Path]:
    """results.md, results.csv, results.json, localization.png, curves.png in out_dir, all
    or none (``save_together``: a full disk leaves no half of a report)."""
    out = Path(out_dir)

    def text_writer(text):
        return lambda tmp: Path(tmp).write_text(text)

    outputs = {out / "results.md": text_writer(markdown_table(result)),
               out / "results.csv": text_writer(csv_text(result)),
               out / "results.json": text_writer(json.dumps(result, indent=1, allow_nan=True)
                                                 + "\n"),
               out / "localization.png": evaluation_bars(result)}
    if result["curves"]:
        outputs[out / "curves.png"] = evaluation_curves(result)
    return save_together(outputs)
