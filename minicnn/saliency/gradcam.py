"""Grad-CAM and Guided Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391): a coarse class map
from a conv layer's activations weighted by their mean gradient, and its product with guided
backpropagation. Re-exported by ``minicnn.saliency``.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_images
from minicnn.engine.layers import Activation, AdaptiveAvgPool2d, Conv2d
from minicnn.engine.model import INPUT
from minicnn.saliency.gradient import guided_backprop, in_chunks, one_hot
from minicnn.saliency.maps import upsample_bilinear

__all__ = ["grad_cam", "guided_grad_cam", "default_cam_layer", "cam_from_last_forward"]


# ============================================================================ Grad-CAM

def default_cam_layer(model) -> str:
    """The layer Grad-CAM uses by default, the last convolutional block's rectified maps:

    - ``model.meta["cam_layer"]`` if the model names one: torchvision's ResNets "layer4" (the
      last block's output) and SqueezeNets "features.12" (the last Fire module), as
      pytorch-grad-cam's examples use (``minicnn.io.zoo.ARCH_META``);
    - else, in a graph, the node the last global average pool reads (the maps the classifier
      averages);
    - else the activation right after the last Conv2d (VGG's and AlexNet's ReLU, the shipped
      model's, a MobileNet-style ReLU6), or that Conv2d if none follows it.
    ValueError if there is none of these."""
    named = model.meta.get("cam_layer")
    if named is not None:
        return named
    pools = [i for i, layer in enumerate(model.layers) if isinstance(layer, AdaptiveAvgPool2d)
             and layer.output_size == (1, 1) and len(model.inputs[i]) == 1]
    if pools and model.inputs[pools[-1]][0] != INPUT:
        return model.inputs[pools[-1]][0]
    convs = model.find(Conv2d)
    if not convs:
        raise ValueError(f"grad_cam: the model has no Conv2d layer to default to; pass layer= "
                         f"a layer with (N, C, h, w) output; layers are {model.names}")
    after = model.consumers(convs[-1])
    if len(after) == 1 and isinstance(model[after[0]], Activation):
        return after[0]
    return convs[-1]


def _cam_layer_index(model, layer) -> int:
    """layer=None, a name or an index -> the layer's position, or a ValueError naming all."""
    if layer is None:
        layer = default_cam_layer(model)
    try:
        return model.index(layer)
    except (KeyError, IndexError):
        raise ValueError(f"grad_cam: no layer {layer!r} in the model; layers are "
                         f"{model.names} (or an index 0..{len(model) - 1})") from None


def _spatial_activation(model, i) -> np.ndarray:
    """The activation of layer i from the last forward, which must be (N, F, h, w)."""
    acts = model.activation(i)
    if acts.ndim != 4:
        spatial = [name for k, name in enumerate(model.names) if model.activation(k).ndim == 4]
        raise ValueError(f"grad_cam: layer {model.names[i]!r} ({type(model.layers[i]).__name__})"
                         f" has output shape {acts.shape}, not (N, C, h, w); Grad-CAM needs "
                         f"a spatial layer, one of {spatial}")
    return acts


def grad_cam(model, x, target=None, layer=None, upsample=False) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): where a conv layer's maps speak for the class.

    With A = the layer's output (N, F, h, w) and G = dS_c/dA:
    weights a_f = mean over (h, w) of G_f (global-average-pooled gradient), and
    cam = ReLU(sum_f a_f A_f).

    - layer: a node's name or index, or a block's name ("layer4": its output); None picks
      ``default_cam_layer(model)`` (the last convolutional block's rectified maps). It must
      have a spatial (N, F, h, w) output.
    - upsample: False returns (N, h, w) at the layer's resolution; True resizes it to x's
      (H, W) with ``upsample_bilinear`` (torch's bilinear, align_corners=False).
    Matches Captum's LayerGradCam(...).attribute(..., relu_attributions=True).
    """
    x = check_images(x)
    _cam_layer_index(model, layer)                                # a bad layer fails first

    def cam(xc, scores, targets):                                 # after each chunk's forward
        seed = one_hot(targets, scores.shape[1], scores.dtype)    # (B, K)
        return (cam_from_last_forward(model, seed, layer, x.shape[2:] if upsample else None),)
    return in_chunks(model, x, target, cam)[2]


def cam_from_last_forward(model, seed, layer=None, size=None) -> np.ndarray:
    """Grad-CAM from the forward pass the model has just run: the layer's activations A,
    a backward pass of ``seed`` (N, K) stopped at the layer for G = dS/dA, then
    ReLU(sum_f mean(G_f) A_f). -> (N, h, w), or (N, H, W) resized to ``size`` if given."""
    i = _cam_layer_index(model, layer)
    acts = _spatial_activation(model, i)                          # (N, F, h, w)
    grads = model.backward(seed, stop_at=i)                       # (N, F, h, w)
    weights = grads.mean(axis=(2, 3))                             # (N, F)
    cam = np.maximum(np.einsum("nf,nfhw->nhw", weights, acts), 0)  # (N, h, w)
    return cam if size is None else upsample_bilinear(cam, size)


def guided_grad_cam(model, x, target=None, layer=None) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the upsampled Grad-CAM.

    (N, C, H, W): ``guided_backprop(x)`` * ``grad_cam(x, layer, upsample=True)``[:, None],
    fine detail from the one, class-discriminative location from the other. Matches Captum's
    GuidedGradCam(...).attribute(..., interpolate_mode="bilinear") (Captum's default mode is
    "nearest").
    """
    cam = grad_cam(model, x, target, layer, upsample=True)        # (N, H, W)
    return guided_backprop(model, x, target) * cam[:, None]       # (N, C, H, W)
