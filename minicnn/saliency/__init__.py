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

``colored_gradient`` and ``grayscale_gradient`` are the two pictures of the blog post in
``shared/seed`` (its figure came from a popular PyTorch visualisation repository); they
normalise differently from the paper's map, as their docstrings say.

The later methods, each checked against Captum (Kokhlikyan et al. 2020) in tests/test_methods.py:

- ``deconvnet`` (Zeiler & Fergus 2014) and ``guided_backprop`` (Springenberg et al. 2014,
  arXiv:1412.6806): the same backward pass with a different rule at every ReLU;
- ``input_x_gradient`` (Shrikumar et al. 2016, arXiv:1605.01713): x * dS_c/dx;
- ``smoothgrad`` (Smilkov et al. 2017, arXiv:1706.03825): any of these averaged over noisy
  copies of the image; also SmoothGrad-squared and VarGrad (Adebayo et al. 2018);
- ``integrated_gradients`` (Sundararajan, Taly & Yan 2017, arXiv:1703.01365): gradients
  along the straight path from a baseline to the image, times (image - baseline);
- ``grad_cam`` and ``guided_grad_cam`` (Selvaraju et al. 2017, arXiv:1610.02391): a coarse
  class map from a conv layer's activations weighted by their mean gradient;
- ``occlusion`` (Zeiler & Fergus 2014, §4.2): how much the score drops when a window of the
  image is replaced by a baseline; no gradient at all.

``METHODS`` maps each name to its function. Every function takes a batch: x is (N, C, H, W),
``target`` is None (each image's predicted class), an int, or a sequence of N ints, and the
result is per image.

This module is the one to import; the code lives one idea per module: ``gradients.py`` (the
class to explain, the vanilla gradient and the ReLU-rule variants), ``smoothing.py``
(SmoothGrad), ``integrated.py`` (integrated gradients, baselines, blur), ``cam.py`` (Grad-CAM),
``occlusion.py``; the paper's maps and the registry are below.
"""
from __future__ import annotations

import numpy as np

from minicnn.saliency.gradcam import default_cam_layer, grad_cam, guided_grad_cam, upsample_bilinear
from minicnn.saliency.gradient import (backprop, check_targets, deconvnet, gradient, guided_backprop,
                               input_x_gradient, one_hot, probability_gradient, resolve_targets,
                               softmax)
from minicnn.saliency.integrated import IG_METHODS, blur, integrated_gradients, integration_points
from minicnn.saliency.occlusion import occlusion
from minicnn.saliency.smoothgrad import SMOOTHGRAD_KINDS, smoothgrad

__all__ = [
    "gradient",
    "saliency_map",
    "colored_gradient",
    "grayscale_gradient",
    "resolve_targets",
    "check_targets",
    "one_hot",
    "backprop",
    "softmax",
    "probability_gradient",
    "guided_backprop",
    "deconvnet",
    "input_x_gradient",
    "smoothgrad",
    "SMOOTHGRAD_KINDS",
    "integrated_gradients",
    "integration_points",
    "IG_METHODS",
    "blur",
    "grad_cam",
    "default_cam_layer",
    "upsample_bilinear",
    "guided_grad_cam",
    "occlusion",
    "METHODS",
    "get_method",
]

# ============================================================================ the paper's maps

def _check_grad(grad) -> np.ndarray:
    grad = np.asarray(grad)
    if grad.ndim != 4:
        raise ValueError(f"expected a gradient shaped (N, C, H, W), got shape {grad.shape}")
    if grad.dtype.kind != "f":
        raise TypeError(f"expected a floating-point gradient, got dtype {grad.dtype}")
    return grad


def saliency_map(grad) -> np.ndarray:
    """The paper's saliency map: (N, C, H, W) -> (N, H, W), max over channels of |grad|."""
    return np.abs(_check_grad(grad)).max(axis=1)


def colored_gradient(grad) -> np.ndarray:
    """The signed gradient as an RGB picture: (N, 3, H, W) -> (N, H, W, 3) in [0, 1].

    Each image is min-max normalised on its own, so 0.5-ish grey is "no gradient" only
    roughly: the zero maps to -min / (max - min). Unlike the paper's map this keeps the sign
    and the colour channel, which is why it looks like a ghost of the object in colours.
    """
    g = _check_grad(grad).astype(np.float64)
    lo = g.min(axis=(1, 2, 3), keepdims=True)
    hi = g.max(axis=(1, 2, 3), keepdims=True)
    g = (g - lo) / np.where(hi > lo, hi - lo, 1.0)
    return g.transpose(0, 2, 3, 1)                           # (N, H, W, 3)


def grayscale_gradient(grad, percentile: float = 99.0) -> np.ndarray:
    """The post's grayscale picture: (N, C, H, W) -> (N, H, W) in [0, 1].

    Sums |grad| over channels (the paper takes the max), then maps the image's minimum to 0
    and its `percentile`-th percentile to 1, clipping above, so a few extreme pixels do not
    leave the rest black. Use `saliency_map` for the paper's exact definition.
    """
    g = np.abs(_check_grad(grad).astype(np.float64)).sum(axis=1)        # (N, H, W)
    lo = g.min(axis=(1, 2), keepdims=True)
    hi = np.percentile(g, percentile, axis=(1, 2), keepdims=True)
    return np.clip((g - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)


# ============================================================================ the registry

METHODS = {
    "gradient": gradient,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "input_x_gradient": input_x_gradient,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
    "occlusion": occlusion,
}


def get_method(name: str):
    """METHODS[name], or a ValueError naming the valid methods."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods are {', '.join(METHODS)}")
    return METHODS[name]
