"""Figures of saliency maps (matplotlib).

Kept apart from the maths in ``minicnn.saliency``: every function here takes arrays that are
already computed and only draws them; ``plotting.save_figure`` writes a figure atomically.
"""
from __future__ import annotations

import numpy as np

from minicnn.viz.plotting import (colored_gradient, draw_box, grayscale_gradient, pyplot,
                                  scale_to_max)

__all__ = ["saliency_figure", "heatmap_figure", "comparison_figure", "method_figure",
           "SALIENCY_LABELS"]


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


def saliency_figure(image, grad, smap, title: str, box=None, labels=SALIENCY_LABELS):
    """One row like the post's figure: original | colored gradient | grayscale | heat map.

    - image: float RGB (H, W, 3) in [0, 1], what the network saw
    - grad: (C, H, W), the attribution (e.g. dS_c/dx), shown by ``colored_gradient`` and
      ``grayscale_gradient``
    - smap: (H, W), the paper's map (saliency.saliency_map), drawn over the image
    - box: optional ground-truth (x0, y0, x1, y1) drawn on the first and last panels
    - labels: the four panel titles (other methods than the gradient name their own)
    Returns the matplotlib Figure.
    """
    fig, axes = pyplot().subplots(1, 4, figsize=(10, 2.9))
    panels = [
        (labels[0], image, {}),
        (labels[1], colored_gradient(grad[None])[0], {}),
        (labels[2], grayscale_gradient(grad[None])[0], {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (labels[3], image, {}),
    ]
    for ax, (name, data, kw) in zip(axes, panels):
        ax.imshow(data, interpolation="nearest", **kw)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    m = scale_to_max(smap)
    axes[3].imshow(m, cmap="jet", alpha=0.5, interpolation="bilinear")
    return _finish(fig, axes, 3, m, box, title)


def heatmap_figure(image, cam, cam_upsampled, title: str, layer: str, box=None):
    """Grad-CAM as a heat map: image | the map at the layer's resolution | map over image.

    - image: float RGB (H, W, 3) in [0, 1]
    - cam: (h, w), the map at the layer's resolution (saliency.grad_cam)
    - cam_upsampled: (H, W), the same map resized to the image (upsample=True)
    - layer: the layer's name, for the panel title
    Returns the matplotlib Figure.
    """
    fig, axes = pyplot().subplots(1, 3, figsize=(7.8, 2.9))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=9)
    h, w = np.shape(cam)
    axes[1].imshow(scale_to_max(cam), cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"Grad-CAM at {layer!r} ({h}x{w})", fontsize=9)
    axes[2].imshow(image, interpolation="nearest")
    m = scale_to_max(cam_upsampled)
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
    fig, axes = pyplot().subplots(1, len(maps) + 1, figsize=(1.9 * (len(maps) + 1), 2.4))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=8)
    for ax, (name, m) in zip(axes[1:], maps.items()):
        ax.imshow(scale_to_max(m), cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name.replace("_", " "), fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def method_figure(method: str, image, result, smap, title: str, box=None, layer=None):
    """The figure for one method's result on one image.

    - method: the method's name (it titles the panels)
    - image: float RGB (H, W, 3) in [0, 1]
    - result: the method's output for this image: an attribution (C, H, W), shown by
      ``saliency_figure``; or a coarse map (h, w) (Grad-CAM), shown by ``heatmap_figure``
    - smap: (H, W), the result as a map at the image's size (``saliency.to_map``)
    - layer: the layer a coarse map comes from, for its panel title
    """
    if np.ndim(result) == 2:
        return heatmap_figure(image, result, smap, title, layer, box=box)
    labels = SALIENCY_LABELS if method == "gradient" else (
        "image", f"{method} (signed, RGB)", f"{method} grayscale", f"max |{method}| over image")
    return saliency_figure(image, result, smap, title, box=box, labels=labels)
