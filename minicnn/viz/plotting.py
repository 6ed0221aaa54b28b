"""The plotting helpers every figure shares: how a map is scaled for display, the blog post's
two pictures of a gradient, boxes, and the one way a figure reaches disk (``save_figure``,
or ``save_together`` for a figure and the files that belong with it).

Scaling for display is a choice, written once here:

- ``unit_range``: min-max to [0, 1] (each image on its own);
- ``scale_to_max``: divided by its maximum, so 0 stays 0 (for maps that are >= 0);
- ``colored_gradient`` and ``grayscale_gradient``: the two pictures of the blog post "Saliency
  Maps for Deep Learning" (its figure came from a popular PyTorch visualisation repository);
  they normalise differently from the paper's map ``minicnn.saliency.saliency_map``, as their
  docstrings say.

Nothing here chooses matplotlib's backend: a script gets matplotlib's default (Agg when there
is no display), a notebook keeps its inline backend, and the command line picks Agg itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minicnn._checks import check_array
from minicnn.io.atomic import atomic_write_all

__all__ = ["pyplot", "save_figure", "save_together", "draw_box", "unit_range", "scale_to_max",
           "colored_gradient", "grayscale_gradient"]


def pyplot():
    """matplotlib.pyplot, imported on first use (importing minicnn.viz stays cheap)."""
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically (whole or not at all) and close it."""
    return save_together({path: fig}, dpi)[0]


def save_together(outputs: dict, dpi: int = 100) -> list[Path]:
    """Write several files all or none (``atomic_write_all``), e.g. a figure and its map.

    - outputs: {path: a matplotlib Figure (saved as PNG, then closed) or a function
      write(tmp_path)}
    Returns the paths. On any error (a full disk: ``WriteError``) none of them is written
    and no temporary file is left; every figure is closed either way."""
    def writer(item):
        if callable(item):
            return item
        return lambda tmp: item.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    try:
        return atomic_write_all([(path, writer(item)) for path, item in outputs.items()])
    finally:
        for item in outputs.values():
            if not callable(item):
                pyplot().close(item)


def draw_box(ax, box, colour="lime", label=None):
    """Draw (x0, y0, x1, y1) (x1, y1 exclusive) on an imshow axis with pixel centres at ints."""
    from matplotlib.patches import Rectangle
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                           edgecolor=colour, linewidth=1.5, label=label))


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
