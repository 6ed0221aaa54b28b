"""Pictures of saliency maps (matplotlib, no screen needed).

Kept apart from the maths in ``minicnn.saliency``: every function here takes arrays that are
already computed and only draws them. Files are written under a temporary name and renamed,
so a PNG on disk is always whole.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["saliency_figure", "save_figure", "atomic_write", "draw_box"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")          # files only; never needs a display
    import matplotlib.pyplot as plt
    return plt


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` then rename tmp_path to `path`: `path` is whole or untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig, path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    plt = _pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png",
                                                          bbox_inches="tight"))
    finally:
        plt.close(fig)


def draw_box(ax, box, colour="lime", label=None):
    """Draw (x0, y0, x1, y1) (x1, y1 exclusive) on an imshow axis with pixel centres at ints."""
    from matplotlib.patches import Rectangle
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                           edgecolor=colour, linewidth=1.5, label=label))


def saliency_figure(image, colored, grayscale, smap, title: str, box=None):
    """One row like the post's figure: original | colored gradient | grayscale | heat map.

    - image: float RGB (H, W, 3) in [0, 1], what the network saw
    - colored: (H, W, 3) in [0, 1]  (saliency.colored_gradient)
    - grayscale: (H, W) in [0, 1]   (saliency.grayscale_gradient)
    - smap: (H, W), the paper's map (saliency.saliency_map), drawn over the image
    - box: optional ground-truth (x0, y0, x1, y1) drawn on the first and last panels
    Returns the matplotlib Figure.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    panels = [
        ("image", image, {}),
        ("colored gradient", colored, {}),
        ("grayscale saliency", grayscale, {"cmap": "gray", "vmin": 0, "vmax": 1}),
        ("max |grad| over image", image, {}),
    ]
    for ax, (name, data, kw) in zip(axes, panels):
        ax.imshow(data, interpolation="nearest", **kw)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    m = np.asarray(smap, dtype=np.float64)
    m = m / m.max() if m.max() > 0 else m
    axes[3].imshow(m, cmap="jet", alpha=0.5, interpolation="bilinear")
    iy, ix = np.unravel_index(np.argmax(m), m.shape)
    axes[3].plot(ix, iy, marker="+", color="white", markersize=10, mew=2)
    if box is not None:
        draw_box(axes[0], box)
        draw_box(axes[3], box)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
