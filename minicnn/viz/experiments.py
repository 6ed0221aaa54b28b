"""Figures for the paper's other experiments: class models, localisation, evaluation, sanity
checks and fooling images (matplotlib, no screen needed).

Like the saliency figures these only draw arrays computed elsewhere (``minicnn.experiments``:
classviz, localize, evaluate, sanity, fooling); images come as float RGB (H, W, 3) in [0, 1]
(``minicnn.io.images.to_pixels`` turns a model input into one). Every function returns a
matplotlib Figure, to be written with ``viz.save_figure`` (atomic PNG).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from minicnn.io.images import to_pixels
from minicnn.viz.plotting import draw_box, pyplot, save_together, unit_range

__all__ = [
    "class_model_grid",
    "localization_figure",
    "evaluation_bars",
    "evaluation_curves",
    "sanity_maps_figure",
    "sanity_curves",
    "fooling_figure",
    "stretch",
    "write_class_models",
]


def stretch(images) -> np.ndarray:
    """Class model images (K, C, H, W) in normalised input space -> (K, H, W, C) in [0, 1],
    each min-max scaled on its own (class models are faint around the mean colour)."""
    return unit_range(np.asarray(images), axis=(1, 2, 3)).transpose(0, 2, 3, 1)  # (K, H, W, C)


def class_model_grid(pictures, class_names, cols: int = 5):
    """One class model image per panel: pictures (K, H, W, 3) in [0, 1] (``stretch`` makes
    them from the class model images, ``io.images.to_pixels`` shows them clipped instead)."""
    plt = pyplot()
    pictures = np.asarray(pictures)
    K = len(pictures)
    rows = math.ceil(K / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= K:
            continue
        ax.imshow(pictures[k], interpolation="nearest")
        ax.set_title(class_names[k] if k < len(class_names) else str(k), fontsize=9)
    fig.suptitle("class models: argmax_I S_c(I) - lambda ||I||^2", fontsize=10)
    fig.tight_layout()
    return fig


def localization_figure(image, saliency_map, results: dict, true_box=None, title: str = ""):
    """image uint8 (H, W, 3) | saliency map | one panel per Localization in `results`
    ({"threshold": loc, "graphcut": loc}) with its mask and box; the true box in green."""
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
    methods, steps = list(result["maps"]), result["steps"]
    extra = 1 if image is not None else 0
    fig, axes = plt.subplots(len(methods), len(steps) + extra,
                             figsize=(1.4 * (len(steps) + extra), 1.5 * len(methods)),
                             squeeze=False)
    for i, method in enumerate(methods):
        if extra:
            axes[i, 0].imshow(image)
        for s in range(len(steps)):
            axes[i, s + extra].imshow(unit_range(result["maps"][method][s, image_index]), cmap="gray")
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
    plt = pyplot()
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


def fooling_figure(original, perturbation, fooled, titles, magnify: float = 10.0):
    """original | perturbation x magnify (around grey) | fooled.

    - original, fooled: float RGB (H, W, 3) in [0, 1]
    - perturbation: (H, W, 3), fooled - original in pixel units (before clipping)
    - titles: three strings (e.g. the classes and the number of steps)."""
    plt = pyplot()
    shown = np.clip(0.5 + magnify * np.asarray(perturbation), 0, 1)          # (H, W, 3)
    panels = [original, shown, fooled]
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    for ax, picture, title in zip(axes, panels, titles):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def write_class_models(images, classes, names, prep, out_dir):
    """Write each class model image as a PNG (``class_<index>_<name>.png``, clipped to the
    pixel range by ``to_pixels``) and the grid of all of them (``class_models.png``, each
    image stretched) into out_dir; returns the grid's path.

    - images: (K, C, H, W) in normalised input space; classes: K class indices; names: K names
    - prep: the model's Preprocess (mean and std, to turn the images into pixels)
    """
    out = Path(out_dir)
    outputs = {}                                   # written all or none (save_together)
    for c, name, picture in zip(classes, names, to_pixels(images, prep)):   # (H, W, 3) each
        path = out / f"class_{c:03d}_{name.split('/')[0].replace(' ', '-').lower()}.png"
        pixels = np.round(picture * 255).astype(np.uint8)
        outputs[path] = lambda tmp, pixels=pixels: Image.fromarray(pixels).save(tmp, format="PNG")
    grid = out / "class_models.png"
    outputs[grid] = class_model_grid(stretch(images), names)
    save_together(outputs)
    return grid
