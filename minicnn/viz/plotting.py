"""The plotting helpers every figure shares: how a map is scaled and upscaled for display,
the blog post's two pictures of a gradient, colorbars, boxes, and the one way a figure
reaches disk (``save_figure``, or ``save_together`` for a figure and the files that belong
with it).

Scaling for display is a choice, written once here:

- ``unit_range``: min-max to [0, 1] (each image on its own);
- ``scale_to_max``: divided by its maximum, so 0 stays 0 (for maps that are >= 0);
- ``symmetric_limits``: -max|m| .. +max|m|, so that a diverging colormap puts 0 at its centre
  (for signed maps: red pushes the score up, blue pushes it down);
- ``colored_gradient`` and ``grayscale_gradient``: the two pictures of the blog post "Saliency
  Maps for Deep Learning" (its figure came from a popular PyTorch visualisation repository);
  they normalise differently from the paper's map ``minicnn.saliency.saliency_map``, as their
  docstrings say.

Upscaling is a choice too (``UPSCALE``): a 64x64 image drawn into a few hundred screen pixels
either as equal square blocks, one per input pixel ("blocks": repeated by an integer factor,
then resampled with antialiasing, so no block is wider than its neighbour), or smoothly
("smooth": bilinear). Figures are saved at ``DPI`` (150) by default.

Figures are made with ``matplotlib.figure.Figure``, not pyplot: nothing here chooses
matplotlib's backend or keeps a figure alive in pyplot's list. In a notebook a returned
figure shows as the cell's value (``display(fig)`` elsewhere in a cell); a script saves it
with ``save_figure`` (or ``fig.savefig``).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from minicnn._checks import check_array, check_choice
from minicnn.io.atomic import atomic_write_all

__all__ = ["new_figure", "save_figure", "save_together", "DPI", "UPSCALE", "CMAP", "DIVERGING",
           "draw_image", "draw_map", "draw_box", "upscale_note", "add_note",
           "unit_range", "scale_to_max", "symmetric_limits", "colored_gradient",
           "grayscale_gradient"]

DPI = 150                      # figures are saved at this resolution unless told otherwise
UPSCALE = ("blocks", "smooth")  # how a small image is drawn large, see the module docstring
CMAP = "inferno"               # maps that are >= 0 (the paper's M, Grad-CAM, ...)
DIVERGING = "RdBu_r"           # signed maps, centred on 0: red > 0, white 0, blue < 0
_BLOCK_PIXELS = 512            # "blocks": repeat each pixel until the image is this large


def new_figure(rows: int = 1, cols: int = 1, figsize=None):
    """A matplotlib Figure (constrained layout, so titles and colorbars never overlap) and
    its axes as a (rows, cols) array. Not registered with pyplot (see the module docstring)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def save_figure(fig, path, dpi: int = DPI) -> Path:
    """Save a matplotlib Figure as PNG atomically (whole or not at all) at ``dpi``; returns
    the path. The figure stays usable (pyplot never held it)."""
    return save_together({path: fig}, dpi)[0]


def save_together(outputs: dict, dpi: int = DPI) -> list[Path]:
    """Write several files all or none (``atomic_write_all``), e.g. a figure and its map.

    - outputs: {path: a matplotlib Figure (saved as PNG) or a function write(tmp_path)}
    Returns the paths. On any error (a full disk: ``WriteError``) none of them is written
    and no temporary file is left."""
    def writer(item):
        return item if callable(item) else (lambda tmp: _savefig(item, tmp, dpi))
    return atomic_write_all([(path, writer(item)) for path, item in outputs.items()])


def _savefig(fig, path, dpi):
    """PNG at ``dpi``. A figure with a layout engine (``new_figure``'s constrained layout)
    already fits its page, so it is drawn once, not measured by a first draw for
    bbox_inches="tight" (0.43 -> 0.33 s for the demo's figure, measured); zlib level 3
    instead of 6 writes the file faster for ~10% more bytes."""
    tight = None if fig.get_layout_engine() is not None else "tight"
    fig.savefig(path, dpi=dpi, format="png", bbox_inches=tight,
                pil_kwargs={"compress_level": 3})


def _blocks(data) -> np.ndarray:
    """Each pixel repeated k x k times, k the integer that makes the image ~_BLOCK_PIXELS."""
    k = max(1, _BLOCK_PIXELS // max(data.shape[:2]))
    return np.repeat(np.repeat(data, k, axis=0), k, axis=1)             # (k*H, k*W, ...)


def draw_image(ax, data, upscale: str = "blocks", **imshow):
    """imshow an (H, W) or (H, W, 3) array upscaled as ``upscale`` says, in the array's own
    pixel coordinates (pixel (i, j) is centred at x=j, y=i, as boxes and markers expect).
    Returns the AxesImage. Axis ticks are turned off."""
    check_choice(upscale, UPSCALE, "upscale")
    data = np.asarray(data)
    H, W = data.shape[:2]
    extent = (-0.5, W - 0.5, H - 0.5, -0.5)
    if upscale == "blocks":
        im = ax.imshow(_blocks(data), interpolation="antialiased", extent=extent, **imshow)
    else:
        im = ax.imshow(data, interpolation="bilinear", extent=extent, **imshow)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def draw_map(ax, m, title: str, cmap=CMAP, signed: bool = False, label: str = "",
             upscale: str = "blocks", vmin=None, vmax=None, alpha=None, under=None):
    """One map panel: ``m`` (H, W) in ``cmap`` with its colorbar, titled.

    - signed: a diverging colormap (``DIVERGING`` unless cmap says otherwise) with limits
      +-max|m|, so 0 is its central colour; else limits 0 .. max m (or vmin, vmax)
    - label: the colorbar's label (what the numbers are)
    - under: an RGB image (H, W, 3) drawn first, the map over it with ``alpha`` (0.5)
    Returns the colorbar.
    """
    m = np.asarray(m, dtype=np.float64)
    if signed:
        lo, hi = symmetric_limits(m)
        cmap = DIVERGING if cmap in (None, CMAP) else cmap
    else:
        lo = 0.0 if vmin is None else vmin
        hi = (float(m.max()) if m.size else 1.0) if vmax is None else vmax
        hi = hi if hi > lo else lo + 1.0                 # a flat map still gets a colorbar
    if under is not None:
        draw_image(ax, under, upscale)
        alpha = 0.5 if alpha is None else alpha
    im = draw_image(ax, m, upscale, cmap=cmap, vmin=lo, vmax=hi, alpha=alpha)
    ax.set_title(title, fontsize=8)
    bar = ax.figure.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
    bar.solids.set_alpha(1)                  # the bar in full colour, even under an overlay
    bar.ax.tick_params(labelsize=6)
    if label:
        bar.set_label(label, fontsize=7)
    return bar


def draw_box(ax, box, colour="lime", label=None, linestyle="-"):
    """Draw (x0, y0, x1, y1) (x1, y1 exclusive) on an imshow axis with pixel centres at ints."""
    from matplotlib.patches import Rectangle
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                           edgecolor=colour, linewidth=1.5, label=label, linestyle=linestyle))


def upscale_note(size, upscale: str) -> str:
    """What a reader needs to know about how the pixels were drawn, e.g. for a footer."""
    H, W = size
    if upscale == "blocks":
        return f"Each of the {W}x{H} input pixels is drawn as one square block"
    return f"The {W}x{H} input is upscaled smoothly (bilinear) for display"


def add_note(fig, text: str, colour="dimgray", width: int = 140):
    """Text under the panels (each paragraph wrapped at ``width`` characters), e.g. a footer
    or a warning."""
    lines = [line for paragraph in text.split("\n") for line in textwrap.wrap(paragraph, width)]
    fig.supxlabel("\n".join(lines), fontsize=7, color=colour)


def unit_range(m, axis=None) -> np.ndarray:
    """Min-max scale to [0, 1] (over ``axis``, e.g. (1, 2, 3) for each image of a batch);
    a constant array becomes 0."""
    m = np.asarray(m, dtype=np.float64)
    lo = m.min(axis=axis, keepdims=True)
    hi = m.max(axis=axis, keepdims=True)
    return (m - lo) / np.where(hi > lo, hi - lo, 1.0)


def scale_to_max(m) -> np.ndarray:
    """A map >= 0 divided by its maximum, so 0 stays 0 and the peak is 1; all zeros stay 0."""
    m = np.asarray(m, dtype=np.float64)
    top = m.max(initial=0.0)
    return m / top if top > 0 else m


def symmetric_limits(m) -> tuple[float, float]:
    """(-a, a) with a = max |m| (1 for an all-zero map): colour limits centred on zero."""
    a = float(np.abs(np.asarray(m, dtype=np.float64)).max(initial=0.0))
    a = a if a > 0 else 1.0
    return -a, a


def colored_gradient(grad) -> np.ndarray:
    """The signed gradient as an RGB picture: (N, 3, H, W) -> (N, H, W, 3) in [0, 1].

    Each image is min-max normalised on its own, so 0.5-ish grey is "no gradient" only
    roughly: the zero maps to -min / (max - min). Unlike the paper's map this keeps the sign
    and the colour channel, which is why it looks like a ghost of the object in colours.
    """
    g = check_array(grad, "grad", 4, "(N, C, H, W)")
    return unit_range(g, axis=(1, 2, 3)).transpose(0, 2, 3, 1)     # (N, H, W, 3)


def grayscale_gradient(grad, percentile: float = 99.0) -> np.ndarray:
    """The post's grayscale picture: (N, C, H, W) -> (N, H, W) in [0, 1].

    Sums |grad| over channels (the paper takes the max), then maps the image's minimum to 0
    and its ``percentile``-th percentile to 1, clipping above, so a few extreme pixels do not
    leave the rest black. ``minicnn.saliency.saliency_map`` is the paper's exact definition.
    """
    g = np.abs(check_array(grad, "grad", 4, "(N, C, H, W)").astype(np.float64)).sum(axis=1)
    lo = g.min(axis=(1, 2), keepdims=True)                          # (N, 1, 1)
    hi = np.percentile(g, percentile, axis=(1, 2), keepdims=True)   # (N, 1, 1)
    return np.clip((g - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)   # (N, H, W)
