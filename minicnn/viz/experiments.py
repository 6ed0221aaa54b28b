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
from minicnn.viz.plotting import (CMAP, add_note, draw_box, draw_image, draw_map,
                                  new_figure, save_figure, save_together, unit_range)

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


def _grid_shape(K: int, cols: int) -> tuple[int, int]:
    """(rows, cols) for K panels with no empty cell where K allows: up to ``cols`` per row,
    preferring a column count that divides K (10 -> 2 x 5, 6 -> 2 x 3, 7 -> 1 x 7)."""
    if K <= cols:
        return 1, max(K, 1)
    for c in range(cols, 1, -1):
        if K % c == 0 and c >= cols // 2:
            return K // c, c
    return math.ceil(K / cols), cols


def class_model_grid(pictures, class_names, cols: int = 5):
    """One class model image per panel: pictures (K, H, W, 3) in [0, 1] (``stretch`` makes
    them from the class model images, ``io.images.to_pixels`` shows them clipped instead).
    No grid cell is left empty (``_grid_shape``; a remainder's cells are removed)."""
    pictures = np.asarray(pictures)
    K = len(pictures)
    rows, cols = _grid_shape(K, cols)
    fig, axes = new_figure(rows, cols, figsize=(2.1 * cols, 2.35 * rows + 0.5))
    for k, ax in enumerate(axes.ravel()):
        if k >= K:
            fig.delaxes(ax)
            continue
        draw_image(ax, pictures[k])
        ax.set_title(class_names[k] if k < len(class_names) else str(k), fontsize=9)
    fig.suptitle("class models (paper section 2): the image I that maximises S_c(I) - "
                 "lambda ||I||^2,\nfound by gradient ascent from the mean image", fontsize=9)
    add_note(fig, "Each image is min-max stretched on its own (class models are faint around "
             "the mean colour).")
    return fig


def localization_figure(image, saliency_map, results: dict, true_box=None, title: str = "",
                        ious: dict | None = None, warning: str | None = None,
                        cmap: str = CMAP):
    """image uint8 (H, W, 3) | saliency map (with its colorbar) | one panel per Localization
    in ``results`` ({"threshold": loc, "graphcut": loc}) with its mask and box; the true box
    in green when known, ``ious`` ({name: IoU with the true box}) in the panel titles, and a
    legend that says which outline is which."""
    from matplotlib.patches import Patch
    n = 2 + len(results)
    fig, axes = new_figure(1, n, figsize=(2.9 * n, 3.4))
    axes = axes[0]
    draw_image(axes[0], image)
    axes[0].set_title("input", fontsize=8)
    draw_map(axes[1], saliency_map, "saliency map M\n(max over channels of |dS_c/dI|)", cmap,
             label="|dS_c/dI|")
    for ax, (name, loc) in zip(axes[2:], results.items()):
        draw_image(ax, image)
        ax.imshow(np.ma.masked_where(~loc.mask, loc.mask), cmap="cool", alpha=0.5,
                  vmin=0, vmax=1, interpolation="nearest")
        if loc.box is not None:
            draw_box(ax, loc.box, colour="red")
        found = "nothing found" if loc.box is None else f"box {tuple(int(v) for v in loc.box)}"
        iou = "" if not ious or name not in ious else f"\nIoU with the true box {ious[name]:.2f}"
        ax.set_title(f"{name}: {found}{iou}", fontsize=8)
    for ax in (axes[0], *axes[2:]):
        if true_box is not None:
            draw_box(ax, true_box, colour="lime")
    handles = [Patch(facecolor="magenta", alpha=0.5, label="mask (largest component)"),
               Patch(fill=False, edgecolor="red", label="its box")]
    if true_box is not None:
        handles.append(Patch(fill=False, edgecolor="lime", label="true box"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7,
               frameon=False)
    fig.suptitle(title, fontsize=9)
    if warning:
        add_note(fig, f"WARNING: {warning}", colour="darkred")
    return fig


def evaluation_bars(result):
    """Pointing game and IoU >= 0.5 rates (threshold, graph cut) per method."""
    rows = result["rows"]
    series = [("pointing game", "pointing_game"), ("IoU≥0.5, threshold", "threshold_iou50"),
              ("IoU≥0.5, graph cut", "graphcut_iou50")]
    y = np.arange(len(rows))
    h = 0.8 / len(series)
    fig, axes = new_figure(figsize=(7.5, 0.45 * len(rows) + 1.4))
    ax = axes[0, 0]
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
    return fig


def evaluation_curves(result):
    """Mean deletion (left) and insertion (right) curves per method; the baseline maps
    (``result["settings"]["baselines"]``) dashed."""
    fig, axes = new_figure(1, 2, figsize=(10, 4))
    axes = axes[0]
    baselines = set(result["settings"].get("baselines", ()))
    for name, c in result["curves"].items():
        style = "--" if name in baselines else "-"
        axes[0].plot(c["fractions"], c["deletion"], style, label=name)
        axes[1].plot(c["fractions"], c["insertion"], style, label=name)
    for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
        ax.set_xlabel("fraction of pixels, most salient first")
        ax.set_ylabel("probability of the class")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
    axes[1].legend(fontsize=7)
    return fig


def _step_label(step: str) -> str:
    return step if step == "original" else f"down to\n{step}"


def sanity_maps_figure(result, image_index: int = 0, image=None):
    """Rows: methods; columns: the cascade steps (the original model, then its weights
    re-initialised from the top layer down to the named one). Each map min-max scaled on
    its own; the image in the first column when given."""
    methods, steps = list(result["maps"]), result["steps"]
    extra = 1 if image is not None else 0
    cols = len(steps) + extra
    fig, axes = new_figure(len(methods), cols, figsize=(1.25 * cols + 0.6,
                                                         1.35 * len(methods) + 1.3))
    for i, method in enumerate(methods):
        if extra:
            draw_image(axes[i, 0], image)
        for s in range(len(steps)):
            draw_image(axes[i, s + extra], unit_range(result["maps"][method][s, image_index]),
                       cmap="gray")
        axes[i, 0].set_ylabel(method.replace("_", " "), fontsize=8)
    if extra:
        axes[0, 0].set_title("image", fontsize=7)
    for s, name in enumerate(steps):
        axes[0, s + extra].set_title(_step_label(name), fontsize=7)
    fig.suptitle(f"cascading randomisation (Adebayo et al. 2018): the maps of image {image_index}",
                 fontsize=9)
    add_note(fig, "Column 'down to L': the weights of layer L and of every layer above it "
             "(nearer the scores) are re-initialised at random; 'original' is the trained "
             "model. Each map is the method's |.| map, min-max scaled on its own. A map that "
             "explains the model should change as soon as its weights do.", width=110)
    return fig


def sanity_curves(result):
    """Mean Spearman rank correlation and SSIM with the original map, per cascade step."""
    steps = result["steps"]
    fig, axes = new_figure(1, 2, figsize=(10.5, 4.4))
    axes = axes[0]
    n = next(iter(result["spearman"].values())).shape[1] if result["spearman"] else 0
    for ax, key in zip(axes, ("spearman", "ssim")):
        for method, values in result[key].items():
            ax.plot(range(len(steps)), np.nanmean(values, axis=1), marker="o",
                    label=method.replace("_", " "))
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels(steps, rotation=60, fontsize=7, ha="right")
        ax.set_xlabel("re-initialised from the top down to this layer", fontsize=8)
        ax.set_ylabel(f"mean {'Spearman rho' if key == 'spearman' else 'SSIM'} over "
                      f"n = {n} images", fontsize=8)
        ax.set_ylim(-0.2, 1.05)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].set_title("rank correlation (Spearman) with the original map", fontsize=9)
    axes[1].set_title("structural similarity (SSIM) with the original map", fontsize=9)
    axes[1].legend(fontsize=7)
    return fig


def fooling_figure(original, perturbation, fooled, titles, magnify: float = 10.0):
    """original | perturbation x magnify (around grey) | fooled.

    - original, fooled: float RGB (H, W, 3) in [0, 1]
    - perturbation: (H, W, 3), fooled - original in pixel units (before clipping)
    - titles: three strings: the true class and its probability before, how the
      perturbation is shown, the fooled class and the probabilities after."""
    shown = np.clip(0.5 + magnify * np.asarray(perturbation), 0, 1)          # (H, W, 3)
    panels = [original, shown, fooled]
    fig, axes = new_figure(1, 3, figsize=(8.4, 3.4))
    for ax, picture, title in zip(axes[0], panels, titles):
        draw_image(ax, picture)
        ax.set_title(title, fontsize=8)
    add_note(fig, f"Middle: the change, x{magnify:g} around mid-grey (grey = no change); at "
             "its real size it is invisible.")
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
