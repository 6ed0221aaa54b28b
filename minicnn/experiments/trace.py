"""The gradient flowing back, layer by layer: what backpropagation carries from the class score
to the pixels.

A saliency map (Simonyan, Vedaldi & Zisserman 2013, arXiv:1312.6034, §3) is the last step of
one backward pass. The pass starts at the scores with a one-hot vector (1 on class c, 0
elsewhere: dS_c/dS), and each layer turns the gradient with respect to its output into the
gradient with respect to its input, until it reaches the image: dS_c/dI. ``trace`` keeps
every step of that pass, so a learner can watch the one-hot spread into a map:

    scores (K,)  <-  ...  <-  conv output (C, h, w)  <-  ...  <-  pixels (3, H, W)
    one-hot          gradient at every layer's output, at that layer's resolution   dS_c/dI

It uses only what every model offers (``model.names``, ``model.forward``,
``model.backward``, ``model.activation(name)``, ``model.gradient_at(name)``), so it works
on a chain of layers and on a graph of named nodes alike. Compute only; ``minicnn.viz``
draws it (``viz.trace_figure``).
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_choice, check_images
from minicnn.saliency import one_hot, resolve_targets

__all__ = ["trace", "reduce_channels", "REDUCTIONS"]

REDUCTIONS = ("sum", "max")


def reduce_channels(a, how: str = "sum") -> np.ndarray:
    """|a| summed or maxed over channels, for one image: (C, h, w) -> (h, w); a vector (F,)
    (a dense layer's output) -> |a| (F,)."""
    check_choice(how, REDUCTIONS, "reduction")
    a = np.abs(np.asarray(a, dtype=np.float64))
    if a.ndim == 1:
        return a
    return a.sum(axis=0) if how == "sum" else a.max(axis=0)          # (h, w)


def trace(model, x, target=None, reduce: str = "sum") -> dict:
    """One image's forward pass and the backward pass of its class score, kept at every layer.

    - x: (1, C, H, W), one image as the model's input
    - target: None (the predicted class) or a class index
    - reduce: "sum" or "max": how |.| over a layer's channels becomes one map per layer
    Returns {"scores" (K,), "target": int, "steps": [...]}, where steps run from the score
    back to the pixels, one dict per layer and a last one for the input:
        {"name": the layer's name ("input" for the pixels),
         "shape": the shape of that layer's output for one image, e.g. (64, 16, 16),
         "activation": that output (the layer's forward result; the image for "input"),
         "gradient": dS_c/d(that output), from the backward pass (model.gradient_at),
         "activation_map", "gradient_map": both reduced by ``reduce_channels``}
    """
    check_choice(reduce, REDUCTIONS, "reduce")
    x = check_images(x)
    if len(x) != 1:
        raise ValueError(f"trace: one image at a time, got a batch of {len(x)}")
    scores = model.forward(x)                                        # (1, K)
    t = int(resolve_targets(target, scores)[0])
    grad_x = model.backward(one_hot([t], scores.shape[1], scores.dtype))   # (1, C, H, W)
    steps = []
    for name in reversed(list(model.names)):                         # score first
        a, g = model.activation(name)[0], model.gradient_at(name)[0]
        steps.append(_step(name, a, g, reduce))
    steps.append(_step("input", x[0], grad_x[0], reduce))
    return {"scores": scores[0], "target": t, "steps": steps}


def _step(name, activation, gradient, reduce):
    return {"name": name, "shape": tuple(activation.shape), "activation": activation,
            "gradient": gradient, "activation_map": reduce_channels(activation, reduce),
            "gradient_map": reduce_channels(gradient, reduce)}
