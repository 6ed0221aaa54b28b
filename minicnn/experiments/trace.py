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

With ``method="lrp"`` the same backward pass carries relevance instead (layer-wise relevance
propagation, ``saliency.lrp``): it starts as the score itself on the explained class, and at
every layer the relevance of that layer's output is a map whose total is what is left of the
score there; the trace then also holds the model's relevance ledger (``Graph.ledger``): how
much each layer passed on, and what its bias, its stabiliser or a BatchNorm took.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_choice, check_images
from minicnn.saliency import (DEFAULT_RULE, describe_rule, one_hot, relevance_seed,
                              resolve_rule, resolve_targets)

__all__ = ["trace", "reduce_channels", "REDUCTIONS", "TRACE_METHODS"]

REDUCTIONS = ("sum", "max")
TRACE_METHODS = ("gradient", "lrp")


def reduce_channels(a, how: str = "sum", signed: bool = False) -> np.ndarray:
    """|a| summed or maxed over channels, for one image: (C, h, w) -> (h, w); a vector (F,)
    (a dense layer's output) -> |a| (F,). signed=True: a itself, summed over channels (how
    is then ignored): relevance, whose sum is what matters."""
    check_choice(how, REDUCTIONS, "reduction")
    a = np.asarray(a, dtype=np.float64)
    if signed:
        return a if a.ndim == 1 else a.sum(axis=0)                 # (h, w)
    a = np.abs(a)
    if a.ndim == 1:
        return a
    return a.sum(axis=0) if how == "sum" else a.max(axis=0)          # (h, w)


def trace(model, x, target=None, reduce: str = "sum", method: str = "gradient",
          rule=DEFAULT_RULE) -> dict:
    """One image's forward pass and the backward pass of its class score, kept at every layer.

    - x: (1, C, H, W), one image as the model's input
    - target: None (the predicted class) or a class index
    - reduce: "sum" or "max": how |.| over a layer's channels becomes one map per layer
      (relevance is summed over channels with its sign, whatever reduce says)
    - method: "gradient" (dS_c/d(output) at every layer) or "lrp" (the relevance there, by
      ``rule``: a name, an LRP rule, a Composite or a dict, as ``saliency.lrp`` takes it)
    Returns {"scores" (K,), "target": int, "method", "rule" (its name, "" for the gradient),
    "steps": [...], "ledger": the relevance ledger for this image (lrp; else None)}, where
    steps run from the score back to the pixels, one dict per layer and a last one for the
    input:
        {"name": the layer's name ("input" for the pixels),
         "shape": the shape of that layer's output for one image, e.g. (64, 16, 16),
         "activation": that output (the layer's forward result; the image for "input"),
         "gradient": dS_c/d(that output), from the backward pass (model.gradient_at); for
             lrp the relevance of that output,
         "total": the sum of "gradient" (for lrp: the relevance left at that layer),
         "activation_map", "gradient_map": both reduced by ``reduce_channels``}
    The ledger is a list of dicts from the score's node back to "input" with the numbers of
    ``Graph.ledger`` for this image (floats).
    """
    check_choice(reduce, REDUCTIONS, "reduce")
    check_choice(method, TRACE_METHODS, "trace method")
    x = check_images(x)
    if len(x) != 1:
        raise ValueError(f"trace: one image at a time, got a batch of {len(x)}")
    relevance = method == "lrp"
    rule = resolve_rule(rule, model) if relevance else None     # a bad rule fails first
    scores = model.forward(x)                                        # (1, K)
    t = int(resolve_targets(target, scores)[0])
    if relevance:
        grad_x = model.backward(relevance_seed(scores, [t]), rule=rule)   # (1, C, H, W)
        ledger = [{key: (float(value[0]) if isinstance(value, np.ndarray) else value)
                   for key, value in entry.items()} for entry in model.ledger()]
    else:
        grad_x = model.backward(one_hot([t], scores.shape[1], scores.dtype))   # (1, C, H, W)
        ledger = None
    steps = []
    for name in reversed(list(model.names)):                         # score first
        a, g = model.activation(name)[0], model.gradient_at(name)[0]
        steps.append(_step(name, a, g, reduce, relevance))
    steps.append(_step("input", x[0], grad_x[0], reduce, relevance))
    return {"scores": scores[0], "target": t, "method": method,
            "rule": describe_rule(rule) if relevance else "", "steps": steps, "ledger": ledger}


def _step(name, activation, gradient, reduce, signed=False):
    return {"name": name, "shape": tuple(activation.shape), "activation": activation,
            "gradient": gradient, "total": float(np.sum(gradient, dtype=np.float64)),
            "activation_map": reduce_channels(activation, reduce),
            "gradient_map": reduce_channels(gradient, reduce, signed)}
