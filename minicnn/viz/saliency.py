"""Figures of saliency maps (matplotlib), made to be read without this file open.

Kept apart from the maths in ``minicnn.saliency``: every function here takes arrays that are
already computed and only draws them; ``plotting.save_figure`` writes a figure atomically.
Each map panel has a colorbar and says how its picture was made from the attribution: summed
or maxed over the colour channels, signed or |.|, scaled how. A figure's title is the
caller's (``minicnn.explain`` puts the true class, the prediction, its score and probability
there); its footer says how the pixels were upscaled, what the boxes are, and any warning.

- ``saliency_figure``: an attribution shaped like the image (the gradient and its kin);
- ``heatmap_figure``: a coarse map at a layer's resolution (Grad-CAM);
- ``method_figure``: whichever of the two a method's result needs;
- ``comparison_figure``: several methods on one image, as a grid of overlays;
- ``overlay_picture``: a map over a photo at the photo's own resolution, as an RGB array
  (like pytorch-grad-cam's ``show_cam_on_image``), for those who want the picture, not the
  figure.
"""
from __future__ import annotations

import math

import numpy as np

from minicnn.viz.plotting import (CMAP, add_note, colored_gradient, draw_box, draw_image,
                                  draw_map, grayscale_gradient, new_figure, scale_to_max,
                                  upscale_note)

__all__ = ["saliency_figure", "heatmap_figure", "comparison_figure", "method_figure",
           "overlay_picture", "METHOD_WORDS", "same_in_every_channel"]

# How each method's values are called on a panel: (its name in a title, the colorbar's unit)
METHOD_WORDS = {
    "gradient": ("gradient", "dS_c/dI"),
    "guided_backprop": ("guided backprop", "guided dS_c/dI"),
    "deconvnet": ("deconvnet", "deconvnet signal"),
    "input_x_gradient": ("input x gradient", "I * dS_c/dI"),
    "smoothgrad": ("SmoothGrad", "mean dS_c/dI, noisy copies"),
    "integrated_gradients": ("integrated gradients", "share of S_c(I) - S_c(0)"),
    "grad_cam": ("Grad-CAM", "Grad-CAM value"),
    "guided_grad_cam": ("guided Grad-CAM", "guided grad x Grad-CAM"),
    "occlusion": ("occlusion", "score drop when hidden"),
    "lrp": ("LRP", "relevance (share of S_c)"),
    "deeplift": ("DeepLIFT", "share of S_c(I) - S_c(0)"),
}


def _words(method):
    return METHOD_WORDS.get(method, (method.replace("_", " "), method))


def same_in_every_channel(attribution) -> bool:
    """True when an attribution (C, H, W) carries no colour information (occlusion hides
    all channels at once): then a per-channel picture would only be grey."""
    a = np.asarray(attribution)
    return bool(a.shape[0] > 1 and all(np.array_equal(a[0], a[c]) for c in range(1, len(a))))


def _peak(ax, m):
    """Mark a map's maximum (first in row-major order, as np.argmax) with a white cross."""
    iy, ix = np.unravel_index(np.argmax(m), np.shape(m))
    ax.plot(ix, iy, marker="+", color="white", markersize=10, mew=2)


def _footer(fig, size, upscale, box, warning, extra=""):
    notes = [upscale_note(size, upscale) + "."]
    if box is not None:
        notes.append("Green box: where the object truly is.")
    if extra:
        notes.append(extra)
    text = " ".join(notes)
    if warning:
        add_note(fig, f"WARNING: {warning}\n{text}", colour="darkred", width=120)
    else:
        add_note(fig, text)


def saliency_figure(image, grad, smap, title: str, box=None, method: str = "gradient",
                    cmap: str = CMAP, upscale: str = "blocks", warning: str | None = None):
    """The picture of an attribution shaped like the image, in six panels (two rows):

        input             | signed, sum over channels (diverging, 0 = white) | colored (post)
        grayscale (post)  | M = max over channels of |.| (the paper)         | M over the input

    - image: float RGB (H, W, 3) in [0, 1], what the network saw
    - grad: (C, H, W), the attribution (e.g. dS_c/dI)
    - smap: (H, W), the paper's map M = max over channels of |grad| (``saliency.to_map``)
    - title: the figure's title; box: the true box (x0, y0, x1, y1), drawn on the input and
      on the overlay; method: names the panels and units (``METHOD_WORDS``); cmap: the
      colormap of M; upscale: "blocks" or "smooth"; warning: a line in red under the panels
    An attribution that is the same in every channel (occlusion) has nothing to sum, max or
    colour over channels: it gets three panels, input | signed | |.| over the input.
    Returns the matplotlib Figure.
    """
    name, unit = _words(method)
    if same_in_every_channel(grad):
        fig, axes = new_figure(1, 3, figsize=(10.5, 3.6))
        axes = axes[0]
        draw_image(axes[0], image, upscale)
        axes[0].set_title("input (what the network saw)", fontsize=8)
        draw_map(axes[1], grad[0], f"signed {name}\n(the same in every channel)", cmap,
                 signed=True, label=unit, upscale=upscale)
        draw_map(axes[2], smap, f"|{name}| over the input\n+ marks its maximum", cmap,
                 label=f"|{unit}|", upscale=upscale, under=image)
        overlay = axes[2]
    else:
        fig, axes = new_figure(2, 3, figsize=(10.5, 6.6))
        draw_image(axes[0, 0], image, upscale)
        axes[0, 0].set_title("input (what the network saw)", fontsize=8)
        draw_map(axes[0, 1], grad.sum(axis=0), f"signed {name}, summed over channels\n"
                 "red raises the score, blue lowers it", signed=True, label=unit,
                 upscale=upscale)
        draw_image(axes[0, 2], colored_gradient(grad[None])[0], upscale)
        axes[0, 2].set_title(f"colored {name} (blog post)\neach channel signed, min-max "
                             "scaled: grey ~ 0", fontsize=8)
        draw_map(axes[1, 0], grayscale_gradient(grad[None])[0],
                 f"grayscale {name} (blog post)\n|.| summed over channels, 99th pct = 1",
                 "gray", label="fraction of the 99th percentile", upscale=upscale, vmax=1)
        draw_map(axes[1, 1], smap, f"M = max over channels of |{name}|\n(the paper's "
                 "saliency map)", cmap, label=f"|{unit}|", upscale=upscale)
        draw_map(axes[1, 2], smap, "M over the input\n+ marks its maximum", cmap,
                 label=f"|{unit}|", upscale=upscale, under=image)
        overlay = axes[1, 2]
        axes = axes.ravel()
    _peak(overlay, smap)
    if box is not None:
        draw_box(axes[0], box)
        draw_box(overlay, box)
    fig.suptitle(title, fontsize=9)
    _footer(fig, np.shape(image)[:2], upscale, box, warning)
    return fig


def heatmap_figure(image, cam, cam_upsampled, title: str, layer: str, box=None,
                   cmap: str = CMAP, upscale: str = "blocks", warning: str | None = None):
    """Grad-CAM as a heat map: input | the map at the layer's resolution | map over input.

    - image: float RGB (H, W, 3) in [0, 1]
    - cam: (h, w), the map at the layer's resolution (saliency.grad_cam)
    - cam_upsampled: (H, W), the same map resized to the image bilinearly (upsample=True)
    - layer: the layer's name, for the panel title; the rest as ``saliency_figure``
    Returns the matplotlib Figure.
    """
    fig, axes = new_figure(1, 3, figsize=(10.5, 3.6))
    axes = axes[0]
    draw_image(axes[0], image, upscale)
    axes[0].set_title("input (what the network saw)", fontsize=8)
    h, w = np.shape(cam)
    draw_map(axes[1], cam, f"Grad-CAM at {layer!r}, its own {h}x{w} grid\n"
             "ReLU(sum over channels k of alpha_k A^k)", cmap, label="Grad-CAM value",
             upscale="blocks")
    draw_map(axes[2], cam_upsampled, "Grad-CAM upsampled bilinearly over the input\n"
             "+ marks its maximum", cmap, label="Grad-CAM value", upscale=upscale,
             under=image)
    _peak(axes[2], cam_upsampled)
    if box is not None:
        draw_box(axes[0], box)
        draw_box(axes[2], box)
    fig.suptitle(title, fontsize=9)
    _footer(fig, np.shape(image)[:2], upscale, box, warning,
            f"A: the output of {layer!r}; alpha_k: the mean of dS_c/dA over channel k.")
    return fig


def method_figure(method: str, image, result, smap, title: str, box=None, layer=None,
                  cmap: str = CMAP, upscale: str = "blocks", warning: str | None = None):
    """The figure for one method's result on one image.

    - method: the method's name (it titles the panels)
    - image: float RGB (H, W, 3) in [0, 1]
    - result: the method's output for this image: an attribution (C, H, W), shown by
      ``saliency_figure``; or a coarse map (h, w) (Grad-CAM), shown by ``heatmap_figure``
    - smap: (H, W), the result as a map at the image's size (``saliency.to_map``)
    - layer: the layer a coarse map comes from, for its panel title
    """
    if np.ndim(result) == 2:
        return heatmap_figure(image, result, smap, title, layer, box=box, cmap=cmap,
                              upscale=upscale, warning=warning)
    return saliency_figure(image, result, smap, title, box=box, method=method, cmap=cmap,
                           upscale=upscale, warning=warning)


def comparison_figure(image, maps: dict, title: str, box=None, cmap: str = CMAP,
                      upscale: str = "blocks", cols: int = 5, warning: str | None = None):
    """A grid: the image, then one overlay per method, each map divided by its own maximum
    (one shared colorbar, 0 .. 1 of each map's maximum).

    - image: float RGB (H, W, 3) in [0, 1]
    - maps: {method name: ((H, W) map >= 0, how it was made from the method's output, e.g.
      "max over channels of |.|")} in display order
    - cols: panels per row (fewer if there are fewer panels); cells left over at the end
      of the last row are removed, not left empty
    Returns the matplotlib Figure.
    """
    n = len(maps) + 1
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = new_figure(rows, cols, figsize=(2.3 * cols + 0.8, 2.45 * rows + 0.5))
    axes = axes.ravel()
    draw_image(axes[0], image, upscale)
    axes[0].set_title("input\n(what the network saw)", fontsize=8)
    if box is not None:
        draw_box(axes[0], box)
    shown = None
    for ax, (name, (m, how)) in zip(axes[1:], maps.items()):
        draw_image(ax, image, upscale)
        shown = draw_image(ax, scale_to_max(m), upscale, cmap=cmap, vmin=0, vmax=1, alpha=0.55)
        _peak(ax, m)
        ax.set_title(f"{_words(name)[0]}\n{how}", fontsize=7)
        if box is not None:
            draw_box(ax, box)
    for ax in axes[n:]:
        fig.delaxes(ax)
    if shown is not None:
        bar = fig.colorbar(shown, ax=list(axes[1:n]), shrink=0.8, pad=0.01)
        bar.solids.set_alpha(1)
        bar.set_label("fraction of each map's own maximum", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    _footer(fig, np.shape(image)[:2], upscale, box, warning,
            "Each map is drawn over the input at half opacity; + marks its maximum.")
    return fig


def overlay_picture(pixels, smap, cmap: str = CMAP, alpha: float = 0.5) -> np.ndarray:
    """A map over a picture, blended as pytorch-grad-cam's ``show_cam_on_image``:
    (1 - alpha) * picture + alpha * cmap(map / max map).

    - pixels: uint8 RGB (H, W, 3), e.g. the photo at its full resolution
    - smap: (H, W) map >= 0 at the same resolution; NaN where there is no map (e.g. outside
      the centre crop the network saw): there the picture is shown as it is
    Returns uint8 RGB (H, W, 3).
    """
    import matplotlib
    pixels = np.asarray(pixels)
    smap = np.asarray(smap, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or smap.shape != pixels.shape[:2]:
        raise ValueError(f"overlay_picture: pixels (H, W, 3) and a map (H, W) of the same size "
                         f"are needed, got {pixels.shape} and {smap.shape}")
    known = np.isfinite(smap)
    heat = matplotlib.colormaps[cmap](scale_to_max(np.where(known, smap, 0.0)))[..., :3]
    picture = pixels.astype(np.float64) / 255.0                           # (H, W, 3)
    blend = np.where(known[..., None], (1 - alpha) * picture + alpha * heat, picture)
    return np.round(np.clip(blend, 0, 1) * 255).astype(np.uint8)
