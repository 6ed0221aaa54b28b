"""Pictures of saliency maps (matplotlib, no screen needed).

Kept apart from the maths in ``minicnn.saliency``: every function here takes arrays that are
already computed and only draws them. Files are written under a temporary name and renamed,
so a PNG on disk is always whole.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minicnn.io.atomic import atomic_write

__all__ = ["saliency_figure", "heatmap_figure", "comparison_figure", "save_figure", "atomic_write",
           "draw_box"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")          # files only; never needs a display
    import matplotlib.pyplot as plt
    return plt


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


SALIENCY_LABELS = ("image", "colored gradient", "grayscale saliency", "max |grad| over image")


def _finish(fig, axes, overlay, m, box, title):
    """Mark the map's maximum on the overlay panel, draw the true box on the first and the
    overlay panels, and title the figure."""
    iy, ix = np.unravel_index(np.argmax(m), m.shape)
    axes[overlay].plot(ix, iy, marker="+", color="white", markersize=10, mew=2)
    if box is not None:
        draw_box(axes[0], box)
        draw_box(axes[overlay], box)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def saliency_figure(image, colored, grayscale, smap, title: str, box=None,
                    labels=SALIENCY_LABELS):
    """One row like the post's figure: original | colored gradient | grayscale | heat map.

    - image: float RGB (H, W, 3) in [0, 1], what the network saw
    - colored: (H, W, 3) in [0, 1]  (saliency.colored_gradient)
    - grayscale: (H, W) in [0, 1]   (saliency.grayscale_gradient)
    - smap: (H, W), the paper's map (saliency.saliency_map), drawn over the image
    - box: optional ground-truth (x0, y0, x1, y1) drawn on the first and last panels
    - labels: the four panel titles (other methods than the gradient name their own)
    Returns the matplotlib Figure.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    panels = [
        (labels[0], image, {}),
        (labels[1], colored, {}),
        (labels[2], grayscale, {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (labels[3], image, {}),
    ]
    for ax, (name, data, kw) in zip(axes, panels):
        ax.imshow(data, interpolation="nearest", **kw)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    m = np.asarray(smap, dtype=np.float64)
    m = m / m.max() if m.max() > 0 else m
    axes[3].imshow(m, cmap="jet", alpha=0.5, interpolation="bilinear")
    return _finish(fig, axes, 3, m, box, title)


def _normalised(m) -> np.ndarray:
    """A map scaled to [0, 1] by its maximum (an all-zero map stays zero)."""
    m = np.asarray(m, dtype=np.float64)
    return m / m.max() if m.max() > 0 else m


def heatmap_figure(image, cam, cam_upsampled, title: str, layer: str, box=None):
    """Grad-CAM as a heat map: image | the map at the layer's resolution | map over image.

    - image: float RGB (H, W, 3) in [0, 1]
    - cam: (h, w), the map at the layer's resolution (saliency.grad_cam)
    - cam_upsampled: (H, W), the same map resized to the image (upsample=True)
    - layer: the layer's name, for the panel title
    Returns the matplotlib Figure.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.8, 2.9))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=9)
    h, w = np.shape(cam)
    axes[1].imshow(_normalised(cam), cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"Grad-CAM at {layer!r} ({h}x{w})", fontsize=9)
    axes[2].imshow(image, interpolation="nearest")
    m = _normalised(cam_upsampled)
    axes[2].imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="nearest")
    axes[2].set_title("Grad-CAM over image", fontsize=9)
    for ax in axes:
        ax.axis("off")
    return _finish(fig, axes, 2, m, box, title)


def comparison_figure(image, maps: dict, title: str):
    """One row: the image, then one (H, W) map per method, each scaled to its own maximum.

    - image: float RGB (H, W, 3) in [0, 1]
    - maps: {method name: (H, W) non-negative map} in display order
    Returns the matplotlib Figure.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(1.9 * (len(maps) + 1), 2.4))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=8)
    for ax, (name, m) in zip(axes[1:], maps.items()):
        ax.imshow(_normalised(m), cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name.replace("_", " "), fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
