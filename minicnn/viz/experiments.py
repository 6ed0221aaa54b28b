"""Figures for the paper's other experiments: class models, localisation, evaluation, sanity
checks and fooling images (matplotlib, no screen needed).

Like ``minicnn.viz`` this module only draws arrays computed elsewhere (``classviz``,
``localize``, ``evaluate``, ``sanity``, ``fooling``); every function returns a matplotlib
Figure, to be written with ``viz.save_figure`` (atomic PNG).
"""
from __future__ import annotations

import math

import numpy as np

from minicnn.io.images import Preprocess, to_pixels

__all__ = [
    "class_model_grid",
    "localization_figure",
    "evaluation_bars",
    "evaluation_curves",
    "sanity_maps_figure",
    "sanity_curves",
    "fooling_figure",
]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _unit(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def class_model_grid(images, class_names, prep: Preprocess = Preprocess(), cols: int = 5,
                     stretch: bool = True):
    """One class model image per panel: images (K, C, H, W) in normalised input space.

    stretch=True min-max scales each image to [0, 1] for display (class models are faint
    around the mean colour); False shows them through ``to_pixels`` (clipped to [0, 1]).
    """
    plt = _pyplot()
    images = np.asarray(images)
    K = len(images)
    rows = math.ceil(K / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= K:
            continue
        if stretch:
            pixels = _unit(images[k].transpose(1, 2, 0))                    # (H, W, C)
        else:
            pixels = to_pixels(images[k], prep)[0]                          # (H, W, C)
        ax.imshow(pixels, interpolation="nearest")
        ax.set_title(class_names[k] if k < len(class_names) else str(k), fontsize=9)
    fig.suptitle("class models: argmax_I S_c(I) - lambda ||I||^2", fontsize=10)
    fig.tight_layout()
    return fig


def localization_figure(image, saliency_map, results: dict, true_box=None, title: str = ""):
    """image uint8 (H, W, 3) | saliency map | one panel per Localization in `results`
    ({"threshold": loc, "graphcut": loc}) with its mask and box; the true box in green."""
    from minicnn.viz.saliency import draw_box
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 + len(results), figsize=(2.6 * (2 + len(results)), 2.9))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(saliency_map, cmap="hot")
    axes[1].set_title("saliency map", fontsize=9)
    for ax, (name, loc) in zip(axes[2:], results.items()):
        ax.imshow(image)
        ax.imshow(np.ma.masked_where(~loc.mask, loc.mask), cmap="cool", alpha=0.5,
                  vmin=0, vmax=1)
        if loc.box is not None:
            draw_box(ax, loc.box, colour="red")
        ax.set_title(name, fontsize=9)
    for ax in axes:
        if true_box is not None:
            draw_box(ax, true_box, colour="lime")
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def evaluation_bars(result):
    """Pointing game and IoU >= 0.5 rates (threshold, graph cut) per method."""
    plt = _pyplot()
    rows = result["rows"]
    series = [("pointing game", "pointing_game"), ("IoU≥0.5, threshold", "threshold_iou50"),
              ("IoU≥0.5, graph cut", "graphcut_iou50")]
    y = np.arange(len(rows))
    h = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for k, (label, key) in enumerate(series):
        values = [r[key] for r in rows]
        ax.barh(y + (k - 1) * h, np.nan_to_num(values), height=h, label=label)
    ax.set_yticks(y)
    # the slow methods may have run on fewer images than the others: say how many
    ax.set_yticklabels([f"{r['method']} ({r['n_images']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of images")
    ax.legend(fontsize=8, loc="lower right")
    n_graphcut = max((r["n_graphcut"] for r in rows), default=0)
    ax.set_title(f"localisation, first {result['settings']['n_images']} test images (images per "
                 f"method in brackets; graph cut on the first {n_graphcut})", fontsize=9)
    fig.tight_layout()
    return fig


def evaluation_curves(result):
    """Mean deletion (left) and insertion (right) curves per method."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in result["curves"].items():
        dashed = name in ("random", "center_gaussian", "sobel")
        style = "--" if dashed else "-"
        axes[0].plot(c["fractions"], c["deletion"], style, label=name)
        axes[1].plot(c["fractions"], c["insertion"], style, label=name)
    for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("probability of the class")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def sanity_maps_figure(result, image_index: int = 0, image=None):
    """Rows: methods; columns: the cascade steps (original, then layers randomised from the
    top). Each map min-max scaled on its own."""
    plt = _pyplot()
    methods, steps = list(result["maps"]), result["steps"]
    extra = 1 if image is not None else 0
    fig, axes = plt.subplots(len(methods), len(steps) + extra,
                             figsize=(1.4 * (len(steps) + extra), 1.5 * len(methods)),
                             squeeze=False)
    for i, method in enumerate(methods):
        if extra:
            axes[i, 0].imshow(image)
        for s in range(len(steps)):
            axes[i, s + extra].imshow(_unit(result["maps"][method][s, image_index]), cmap="gray")
        axes[i, 0].set_ylabel(method, fontsize=7)
    for s, name in enumerate(steps):
        axes[0, s + extra].set_title(name, fontsize=6, rotation=45)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("cascading randomisation (top layer first)", fontsize=9)
    fig.tight_layout()
    return fig


def sanity_curves(result):
    """Mean Spearman rank correlation and SSIM with the original map, per cascade step."""
    plt = _pyplot()
    steps = result["steps"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("spearman", "ssim")):
        for method, values in result[key].items():
            ax.plot(range(len(steps)), np.nanmean(values, axis=1), marker="o", label=method)
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels(steps, rotation=60, fontsize=7, ha="right")
        ax.set_ylabel(key)
        ax.set_ylim(-0.2, 1.05)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].set_title("Spearman rank correlation with the original map", fontsize=9)
    axes[1].set_title("SSIM with the original map", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def fooling_figure(original, perturbation, fooled, titles, magnify: float = 10.0,
                   prep: Preprocess = Preprocess()):
    """original | perturbation x magnify (around grey) | fooled, all (C, H, W) normalised.

    titles: three strings (e.g. the classes and the number of steps)."""
    plt = _pyplot()
    std = np.asarray(prep.std)[:, None, None]
    shown = np.clip(0.5 + magnify * np.asarray(perturbation) * std, 0, 1)    # (C, H, W)
    shown = shown.transpose(1, 2, 0)                                          # (H, W, C)
    panels = [to_pixels(original, prep)[0], shown, to_pixels(fooled, prep)[0]]
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    for ax, picture, title in zip(axes, panels, titles):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
