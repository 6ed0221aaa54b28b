"""The figure of ``minicnn.experiments.trace``: the gradient of the class score at every layer,
from the score back to the pixels, each beside that layer's activation; or, for a trace of
layer-wise relevance propagation, the relevance at every layer, and its ledger.

Read it like the backward pass runs: the first panel is the one-hot at the scores, then each
layer's output gradient at that layer's own resolution, then dS_c/dI at the pixels (whose max
over channels is the paper's saliency map). Under each gradient is what flowed forward
through the same layer. A vector (a dense layer's output) is drawn as bars when it is short
(the scores) and as a grid of cells otherwise; a map as |.| summed or maxed over channels,
as the panel says. Relevance is drawn with its sign (summed over channels, red > 0, blue <
0), each panel titled with its total: the score, less what the layers on the way absorbed.

``ledger_table`` writes the relevance ledger as a text table (the command line prints it);
``ledger_figure`` draws it: the relevance left at each layer, and what each one absorbed.
"""
from __future__ import annotations

import math

import numpy as np

from minicnn.viz.plotting import CMAP, add_note, draw_image, draw_map, new_figure, unit_range

__all__ = ["trace_figure", "ledger_table", "ledger_figure", "LEDGER_TERMS"]

# The ledger's columns of what a layer absorbed, as the ledger names them
LEDGER_TERMS = ("bias", "stabiliser", "batchnorm")

_BARS = 32  # vectors up to this length are drawn as bars


def _vector_panel(ax, v, title, names, signed_label, highlight=None):
    v = np.asarray(v, dtype=np.float64)
    colours = ["tab:blue"] * len(v)
    if highlight is not None:
        colours[highlight] = "tab:red"
    ax.bar(np.arange(len(v)), v, color=colours)
    ax.axhline(0, color="grey", lw=0.5)
    if names and len(names) == len(v):
        ax.set_xticks(np.arange(len(v)), [n.split("/")[0][:8] for n in names], rotation=90,
                      fontsize=5)
    else:
        ax.set_xticks(np.arange(len(v)))
        ax.tick_params(axis="x", labelsize=5)
    ax.tick_params(axis="y", labelsize=5)
    ax.set_ylabel(signed_label, fontsize=6)
    ax.set_title(title, fontsize=7)


def _as_grid(v):
    """A long vector (F,) as a near-square (rows, cols) grid, padded with NaN (drawn blank)."""
    cols = math.ceil(math.sqrt(len(v)))
    rows = math.ceil(len(v) / cols)
    grid = np.full(rows * cols, np.nan)
    grid[:len(v)] = v
    return grid.reshape(rows, cols)                                  # (rows, cols)


def _panel(ax, step, kind, reduce, cmap, class_names, target, relevance=False):
    """One panel: kind "gradient" or "activation" of one step of the trace, titled with the
    layer's name, its output's shape and how it was reduced to a picture (relevance: with
    its sign, and its total)."""
    shape = "x".join(str(s) for s in step["shape"])
    raw = step[kind]
    signed = relevance and kind == "gradient"
    if raw.ndim == 1 and len(raw) <= _BARS:
        names = class_names if len(raw) == len(class_names) else []
        title = f"{step['name']}\n({shape}), signed"
        if kind == "gradient" and names and np.count_nonzero(raw) == 1:
            title = (f"{step['name']} ({shape})\nR = S_c on {names[target]}" if relevance
                     else f"{step['name']} ({shape})\none-hot on {names[target]}")
        _vector_panel(ax, raw, title, names, "value", target if names else None)
        return
    m = step[f"{kind}_map"]
    if signed:
        draw_map(ax, _as_grid(m) if raw.ndim == 1 else m,
                 f"{step['name']}\n{shape}: sum R {step['total']:.4g}", signed=True,
                 upscale="blocks")
        return
    if raw.ndim == 1:
        how = "|.| as a grid"
        m = _as_grid(m)
    else:
        how = f"|.| {reduce} of {raw.shape[0]} ch"
    if kind == "activation" and step["name"] == "input":
        draw_image(ax, unit_range(raw).transpose(1, 2, 0) if raw.shape[0] == 3 else m)
        ax.set_title(f"input\n({shape}), min-max", fontsize=7)
        return
    draw_map(ax, np.nan_to_num(m), f"{step['name']}\n({shape}), {how}",
             cmap if kind == "gradient" else "viridis", upscale="blocks")


def trace_figure(result, title: str, class_names=(), image=None, reduce: str = "sum",
                 cmap: str = CMAP, per_row: int = 8):
    """Gradient (top of each band) and activation (below it) for every step of a trace.

    - result: ``experiments.trace.trace``'s dict (steps from the score back to the input)
    - title: the figure's title; class_names: to label the score bars
    - image: float RGB (H, W, 3) in [0, 1] to show for the input's activation (else the
      normalised input is shown min-max scaled)
    - reduce: the reduction the trace used ("sum" or "max"), for the panel titles
    - per_row: layers per band; bands are stacked, and unused cells of the last band removed
    Returns the matplotlib Figure.
    """
    steps = result["steps"]
    relevance = result.get("method") == "lrp"
    n = len(steps)
    per_row = min(per_row, n)
    bands = math.ceil(n / per_row)
    fig, axes = new_figure(2 * bands, per_row, figsize=(2.15 * per_row, 4.3 * bands + 0.6))
    target = int(result["target"])
    for k, step in enumerate(steps):
        band, col = divmod(k, per_row)
        _panel(axes[2 * band, col], step, "gradient", reduce, cmap, list(class_names), target,
               relevance)
        if step["name"] == "input" and image is not None:
            draw_image(axes[2 * band + 1, col], image)
            axes[2 * band + 1, col].set_title(
                f"input\n({'x'.join(map(str, step['shape']))}), the image", fontsize=7)
        else:
            _panel(axes[2 * band + 1, col], step, "activation", reduce, cmap,
                   list(class_names), target)
    for band in range(bands):
        axes[2 * band, 0].set_ylabel("relevance R" if relevance else "dS_c / d(output)",
                                     fontsize=8)
        axes[2 * band + 1, 0].set_ylabel("output (forward)", fontsize=8)
    for k in range(n, bands * per_row):
        band, col = divmod(k, per_row)
        fig.delaxes(axes[2 * band, col])
        fig.delaxes(axes[2 * band + 1, col])
    fig.suptitle(title, fontsize=10)
    if relevance:
        add_note(fig, "Read left to right, band by band: layer-wise relevance propagation "
                 f"({result.get('rule', '')}) starts with the score itself on the explained "
                 "class and shares it out, layer by layer, down to the pixels. Top row of each "
                 "band: the relevance of that layer's output, summed over channels with its "
                 "sign (red > 0, blue < 0; a dense layer's as a grid of cells), titled with its "
                 "total (sum R), which is the score less what "
                 "the layers above absorbed (biases, stabilisers: the ledger); below it, what "
                 "that layer output in the forward pass.", width=170)
        return fig
    add_note(fig, "Read left to right, band by band: the backward pass starts with a one-hot "
             "on the explained class at the scores and ends with dS_c/dI at the pixels "
             "(max over its channels is the paper's saliency map). Top row of each band: the "
             "gradient of the score with respect to that layer's output, at the layer's own "
             f"resolution, |.| {'summed' if reduce == 'sum' else 'maxed'} over channels (ch); "
             "below it, what that layer output in the forward pass. Vectors (dense layers) "
             "are drawn as a grid of cells, the scores as bars.", width=170)
    return fig


# ============================================================================ the ledger

def ledger_table(ledger, image: int = 0) -> str:
    """The relevance ledger (``Graph.ledger``, ``saliency.lrp_ledger`` or a trace's
    "ledger") of one image as a text table, from the score back to the input:

        node  layer  rule  relevance in  passed on  bias  stabiliser  batchnorm  residual

    then a last line: the score, the input's total, and the sums of the absorbed columns
    and of the residuals (score - input = their sum)."""
    def value(entry, key):
        v = entry.get(key, 0.0)
        return float(np.ravel(v)[image]) if np.ndim(v) else float(v)

    head = ("node", "layer", "rule", "relevance out", "passed on", *LEDGER_TERMS, "residual")
    rows = []
    for entry in ledger:
        if entry["name"] == "input":
            continue
        rows.append((entry["name"], entry["layer"], entry["rule"],
                     *(f"{value(entry, k):.6g}" for k in ("relevance_out", "relevance_in")),
                     *(f"{value(entry, k):.3g}" for k in (*LEDGER_TERMS, "residual"))))
    score = value(ledger[0], "relevance_out")
    pixels = value(ledger[-1], "relevance_out")
    sums = [sum(value(e, k) for e in ledger[:-1]) for k in (*LEDGER_TERMS, "residual")]
    rows.append(("input", "", "", f"{pixels:.6g}", "", *(f"{v:.3g}" for v in sums)))
    widths = [max(len(str(r[c])) for r in (head, *rows)) for c in range(len(head))]
    line = "  ".join
    out = [line(h.ljust(w) if c < 3 else h.rjust(w) for c, (h, w) in enumerate(zip(head, widths)))]
    out.append(line("-" * w for w in widths))
    for r in rows:
        out.append(line(str(v).ljust(w) if c < 3 else str(v).rjust(w)
                        for c, (v, w) in enumerate(zip(r, widths))))
    out.append(f"score {score:.6g} = input {pixels:.6g} + absorbed "
               f"{sum(sums[:-1]):.6g} + residual {sums[-1]:.3g}")
    return "\n".join(out)


def ledger_figure(ledger, title: str = "", image: int = 0):
    """The ledger of one image drawn: the relevance left at each layer's output, from the
    score (left) to the input (right), with what each layer's bias, stabiliser and
    BatchNorm absorbed as bars below. Returns the matplotlib Figure."""
    entries = ledger
    names = [e["name"] for e in entries]

    def value(e, key):
        v = e.get(key, 0.0)
        return float(np.ravel(v)[image]) if np.ndim(v) else float(v)
    left = [value(e, "relevance_out") for e in entries]
    fig, axes = new_figure(2, 1, figsize=(max(6.0, 0.32 * len(entries) + 2), 5.6))
    top, bottom = axes[0, 0], axes[1, 0]
    x = np.arange(len(entries))
    top.plot(x, left, marker="o", color="tab:red")
    top.axhline(left[0], color="grey", lw=0.5, ls="--")
    top.set_ylabel("relevance left", fontsize=8)
    top.set_xticks(x, [])
    top.set_title(title or "where the score's relevance goes, layer by layer", fontsize=9)
    bottom_base = np.zeros(len(entries))
    for term, colour in zip((*LEDGER_TERMS, "residual"),
                            ("tab:blue", "tab:orange", "tab:green", "tab:grey")):
        v = np.array([value(e, term) for e in entries])
        if np.any(v):
            bottom.bar(x, v, bottom=bottom_base, color=colour, label=term)
            bottom_base = bottom_base + v
    bottom.axhline(0, color="grey", lw=0.5)
    bottom.set_ylabel("absorbed (< 0: created)", fontsize=8)
    bottom.set_xticks(x, names, rotation=90, fontsize=6)
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(fontsize=7)
    return fig
