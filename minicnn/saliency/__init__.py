"""Saliency by backpropagation: the vanilla gradient and the methods that came after it.

The vanilla recipe (Simonyan, Vedaldi & Zisserman 2013, arXiv:1312.6034, §3), one function
per step:

1. ``gradient``: forward the image, take the class score S_c *before* the softmax, and
   backpropagate a one-hot gradient on S_c down to the pixels: w = dS_c/dI, shaped like I.
2. ``saliency_map``: M(i, j) = max over colour channels of |w(c, i, j)|   (paper, top of p. 4).
3. Show M as an image (``minicnn.viz``).

Why the score and not the probability: the softmax couples the classes, so the probability of
c can rise by *lowering* the other scores; its gradient mixes in every other class's gradient
(see ``examples/teach_softmax_vs_score.py``). dS_c/dI asks only "what makes c score higher".

The later methods, each checked against Captum (Kokhlikyan et al. 2020) in the tests:

- ``deconvnet`` (Zeiler & Fergus 2014) and ``guided_backprop`` (Springenberg et al. 2014,
  arXiv:1412.6806): the same backward pass with a different rule at every ReLU (and
  at the other rectifiers: ``minicnn.engine.layers.activations``);
- ``input_x_gradient`` (Shrikumar et al. 2016, arXiv:1605.01713): x * dS_c/dx;
- ``smoothgrad`` (Smilkov et al. 2017, arXiv:1706.03825): any of these averaged over noisy
  copies of the image; also SmoothGrad-squared and VarGrad (Adebayo et al. 2018);
- ``integrated_gradients`` (Sundararajan, Taly & Yan 2017, arXiv:1703.01365): gradients
  along the straight path from a baseline to the image, times (image - baseline);
- ``grad_cam`` and ``guided_grad_cam`` (Selvaraju et al. 2017, arXiv:1610.02391): a coarse
  class map from a conv layer's activations weighted by their mean gradient;
- ``occlusion`` (Zeiler & Fergus 2014, §4.2): how much the score drops when a window of the
  image is replaced by a baseline; no gradient at all;
- ``lrp`` (Bach et al. 2015; Montavon et al. 2019): layer-wise relevance propagation, the
  score itself shared out layer by layer by a rule chosen per layer (``rule="epsilon-plus"``,
  zennit's composites, or your own mapping), checked against zennit; ``lrp_ledger`` says
  where the relevance that did not reach the pixels went;
- ``deeplift`` (Shrikumar et al. 2017, arXiv:1704.02685): DeepLIFT's Rescale rule, the
  difference from a reference image shared out by difference quotients.
The backward rules themselves are written in each layer's backward, beside its chain rule
(``minicnn.engine.layers.rules``); ``lrp.py`` and ``deeplift.py`` only choose them.

Every method takes a batch: ``method(model, x, target=None, **options)`` with x (N, C, H, W),
``target`` None (each image's predicted class), an int, or a sequence of N ints; the result is
per image. A batch of any size, 0 included, runs CHUNK_SIZE (50) images per pass
(``in_chunks``, the one place a batch is split), so memory does not grow with the batch; a
target out of range, of any integer size, is a ValueError naming the valid range.
``METHODS`` is the registry: for each name, the function and what a caller needs to know about
it (what it returns, its cost in passes, its options), so that the command line and the
evaluation read it instead of keeping lists of their own. ``attribute`` runs several methods
on one batch, sharing the passes they have in common; ``to_map`` turns any result into an
(H, W) map per image.

The code lives one idea per module: ``gradient.py`` (the class to explain, the vanilla
gradient, the rule variants, and the batching the other methods share: ``in_chunks``,
``row_batches``, ``accumulate_per_image``), ``smoothgrad.py``, ``integrated.py``,
``baselines.py`` (what "absent" means: zeros, a blurred image), ``gradcam.py``,
``occlusion.py``, ``lrp.py`` (rule names, zennit's composites), ``deeplift.py``, ``maps.py``
(attribution -> map). These modules use the engine only; the
registry is here.

Adding a method, the checklist:
1. one module ``saliency/<name>.py`` with ``<name>(model, x, target=None, **options)``, its
   docstring citing the paper and giving the shapes; check arguments with ``minicnn._checks``;
2. one line in ``METHODS`` below (what it returns, its passes per image, its options);
3. its tests in ``tests/saliency/``: against Captum (float64, a random net) where Captum has
   the method, against central finite differences or a property it must satisfy otherwise,
   and its bad-input messages.
The command line (``--method``), ``compare``, ``evaluate`` and the sanity checks pick it up
from the registry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from minicnn._checks import check_images
from minicnn.engine.layers.rules import (AlphaBeta, Composite, Epsilon, Flat, Gamma, Pass,
                                         Rescale, WSquare, ZBox, ZPlus)
from minicnn.saliency.baselines import BASELINES, BLUR_SIGMA, baseline_like, blur
from minicnn.saliency.deeplift import deeplift
from minicnn.saliency.gradcam import (cam_from_last_forward, default_cam_layer, grad_cam,
                                      guided_grad_cam)
from minicnn.saliency.gradient import (CHUNK_SIZE, accumulate_per_image, backprop,
                                       check_targets, deconvnet, gradient, guided_backprop,
                                       in_chunks, input_x_gradient, one_hot,
                                       probability_gradient, resolve_targets, row_batches,
                                       softmax)
from minicnn.saliency.integrated import IG_METHODS, integrated_gradients, integration_points
from minicnn.saliency.lrp import (COMPOSITES, DEFAULT_RULE, RULES, EpsilonAlpha2Beta1,
                                  EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat, describe_rule,
                                  input_bounds, lrp, lrp_ledger, relevance_seed, resolve_rule,
                                  rule_names)
from minicnn.saliency.maps import saliency_map, to_map, upsample_bilinear
from minicnn.saliency.occlusion import occlusion, occlusion_windows
from minicnn.saliency.smoothgrad import DEFAULT_SAMPLES, SMOOTHGRAD_KINDS, smoothgrad

__all__ = [
    "gradient", "saliency_map", "to_map", "upsample_bilinear",
    "resolve_targets", "check_targets", "one_hot", "backprop", "softmax",
    "in_chunks", "CHUNK_SIZE", "row_batches", "accumulate_per_image",
    "probability_gradient", "guided_backprop", "deconvnet", "input_x_gradient",
    "smoothgrad", "SMOOTHGRAD_KINDS", "integrated_gradients", "integration_points",
    "IG_METHODS", "blur", "baseline_like", "BASELINES", "BLUR_SIGMA",
    "grad_cam", "default_cam_layer", "guided_grad_cam", "occlusion",
    "lrp", "lrp_ledger", "relevance_seed", "resolve_rule", "input_bounds", "rule_names",
    "describe_rule",
    "COMPOSITES", "RULES", "DEFAULT_RULE", "EpsilonPlus", "EpsilonGammaBox",
    "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox",
    "Flat", "WSquare", "Pass", "Rescale", "Composite", "deeplift",
    "Method", "METHODS", "get_method", "attribute",
]


# ============================================================================ the registry

@dataclass(frozen=True)
class Method:
    """An attribution method and what a caller needs to know about it.

    - name: the registry key (also the command line's ``--method``)
    - function: (model, x, target=None, **options) -> the result, per image
    - returns: "attribution", an array shaped like x (N, C, H, W), one value per input
      element; or "coarse", one map per image at a layer's resolution (N, h, w), which
      ``to_map`` upsamples to the image
    - passes: the cost of one image at the default options, in forward + backward passes (a
      forward pass alone counts 1/3); a number, or a function of the image size (H, W)
    - options: the keyword options the function takes besides (model, x, target)
    - summary: one line on what it computes, for help texts
    Calling a Method calls its function.
    """

    name: str
    function: Callable
    returns: str
    passes: float | Callable
    options: tuple = ()
    summary: str = field(default="", compare=False)

    def __call__(self, model, x, target=None, **options):
        return self.function(model, x, target, **options)

    def cost(self, size=(64, 64)) -> float:
        """Forward + backward passes per image at the defaults, for images of ``size``."""
        return float(self.passes(tuple(size)) if callable(self.passes) else self.passes)

    @property
    def slow(self) -> bool:
        """Runs the model many times per image (progress bars, evaluated on fewer images)."""
        return self.cost() > 2


def _occlusion_passes(size):
    """One forward pass (1/3 of a forward + backward) per window, plus the clean one."""
    return (len(occlusion_windows(size)) + 1) / 3


_PROGRESS = ("batch_size", "progress")
METHODS = {m.name: m for m in [
    Method("gradient", gradient, "attribution", 1,
           summary="dS_c/dx, the paper's vanilla gradient"),
    Method("guided_backprop", guided_backprop, "attribution", 1,
           summary="the gradient, with only positive signals passed back through each ReLU"),
    Method("deconvnet", deconvnet, "attribution", 1,
           summary="ReLUs pass back the positive part of the signal, whatever their input"),
    Method("input_x_gradient", input_x_gradient, "attribution", 1,
           summary="x * dS_c/dx"),
    Method("smoothgrad", smoothgrad, "attribution", DEFAULT_SAMPLES,
           ("method", "n_samples", "noise_level", "seed", "noise", "kind") + _PROGRESS,
           summary=f"the gradient averaged over {DEFAULT_SAMPLES} noisy copies"),
    Method("integrated_gradients", integrated_gradients, "attribution", 51,
           ("baseline", "steps", "method", "return_gap") + _PROGRESS,
           summary="gradients along the path from a black image, times (x - baseline)"),
    Method("grad_cam", grad_cam, "coarse", 1, ("layer", "upsample"),
           summary="a conv layer's maps weighted by their mean gradient"),
    Method("guided_grad_cam", guided_grad_cam, "attribution", 5 / 3, ("layer",),
           summary="guided backprop times the upsampled Grad-CAM"),
    Method("occlusion", occlusion, "attribution", _occlusion_passes,
           ("window", "stride", "baseline") + _PROGRESS,
           summary="the score drop when an 8x8 window is hidden"),
    Method("lrp", lrp, "attribution", 1, ("rule",),
           summary=f"the score shared out layer by layer by relevance rules ({DEFAULT_RULE}: "
                   f"z+ in convolutions, epsilon in dense layers)"),
    Method("deeplift", deeplift, "attribution", 2, ("baseline", "return_gap"),
           summary="the difference from a black image, shared out by difference quotients "
                   "(DeepLIFT-Rescale)"),
]}


def get_method(name: str) -> Method:
    """METHODS[name], or a ValueError naming the valid methods."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[name]


# ============================================================================ shared passes

# Methods whose result is one backward pass from the same forward pass, by their definitions
# above: the activations' rule of that backward pass, and whether x multiplies the result.
_ONE_BACKWARD = {"gradient": "gradient", "input_x_gradient": "gradient",
                 "guided_backprop": "guided", "guided_grad_cam": "guided",
                 "deconvnet": "deconvnet"}


def attribute(model, x, methods, target=None, options=None):
    """Several methods on one batch, sharing the passes they have in common.

    - x: (N, C, H, W); target: None (each image's predicted class), an int or N ints
    - methods: names in METHODS
    - options: {name: {option: value}} for the methods that take options
    Returns (scores (N, K) before the softmax, targets (N,), {name: result}).

    One forward pass serves gradient, guided_backprop, deconvnet, input_x_gradient,
    grad_cam, guided_grad_cam and lrp: ``model.backward`` may run any number of times after
    one forward, with any rule, and the results equal the functions' own (tested). The other
    methods run as themselves, for the targets resolved here (so SmoothGrad explains the
    clean image's class). Grad-CAM is returned as its method does, at the layer's resolution
    unless options say ``upsample``.
    """
    x = check_images(x)
    names = [get_method(name).name for name in methods]
    options = {name: dict(opts) for name, opts in (options or {}).items()}
    for name in options:
        get_method(name)
    shared = [n for n in names if n in _ONE_BACKWARD or n in ("grad_cam", "lrp")]
    if "lrp" in shared:                                  # a bad rule fails before any pass
        lrp_rule = resolve_rule(options.get("lrp", {}).get("rule", DEFAULT_RULE), model)

    def from_one_forward(xc, scores, targets):                     # per chunk of images
        seed = one_hot(targets, scores.shape[1], scores.dtype)     # (B, K)
        out = {}
        for rule in dict.fromkeys(_ONE_BACKWARD[n] for n in shared if n in _ONE_BACKWARD):
            grad = model.backward(seed, rule=rule)                 # (B, C, H, W)
            for name in shared:
                if _ONE_BACKWARD.get(name) == rule:
                    out[name] = xc * grad if name == "input_x_gradient" else grad
        for name in (n for n in ("grad_cam", "guided_grad_cam") if n in shared):
            # the same forward pass's activations, a backward stopped at the layer
            cam_options = options.get(name, {})
            upsample = name == "guided_grad_cam" or cam_options.get("upsample", False)
            cam = cam_from_last_forward(model, seed, cam_options.get("layer"),
                                        xc.shape[2:] if upsample else None)  # (B, h, w)
            out[name] = out[name] * cam[:, None] if name == "guided_grad_cam" else cam
        if "lrp" in shared:                                        # relevance, from S_c itself
            out["lrp"] = model.backward(relevance_seed(scores, targets), rule=lrp_rule)
        return tuple(out[name] for name in shared)

    scores, targets, *arrays = in_chunks(model, x, target, from_one_forward)
    out = dict(zip(shared, arrays))
    for name in names:
        if name not in out:
            out[name] = METHODS[name](model, x, targets, **options.get(name, {}))
    return scores, targets, {name: out[name] for name in names}
