"""ImageNet architectures laid out exactly as torchvision's, one family per module:

- ``classic``: VGG 11/13/16/19 (+ _bn), AlexNet, ResNet-18/34/50, SqueezeNet 1.0/1.1;
- ``mobilenet``: MobileNetV2, MobileNetV3 small and large;
- ``efficientnet``: EfficientNet-B0, and EfficientNet-Lite0 in the key names of its PyTorch port;
- ``densenet``: DenseNet-121;
- ``googlenet``: GoogLeNet (Inception v1);
- ``shufflenet``: ShuffleNet V2 x1.0.

"Exactly" means the same node names and state_dict keys (``features.0.weight``,
``layer1.0.conv1.weight``, ``features.3.conv.1.0.weight``, ...), so a torchvision checkpoint
loads by name with no renaming, and the same order of operations as torchvision's forward:
``minicnn.from_torch`` of torchvision's own model gives the same nodes (tested). Only the
layer *configuration* is reproduced here (a fact about the published networks); the layers
themselves are minicnn's, built directly (with ``init=False`` nothing is drawn).

Every BatchNorm that follows a convolution is folded into it (``minicnn.fold_batchnorm``): the
network computes the same function, its convolutions keep their torchvision names and gain a
bias, and the BatchNorm nodes are absent. A BatchNorm that reads something else (DenseNet's,
after a concatenation) stays a layer. ``checkpoint_shapes`` lists what the *unfolded*
torchvision checkpoint holds, BatchNorm statistics included; ``batchnorm_pairs`` says which
BatchNorm folds into which convolution and ``batchnorm_eps`` with which eps (torchvision's
default 1e-5; MobileNetV3, GoogLeNet and EfficientNet-Lite0 were trained with 1e-3).

``ARCH_META`` holds what each network needs beyond its layers: the default Grad-CAM layer (the
last convolutional block before the pooling, as pytorch-grad-cam's examples use) where it is
not the ReLU after the last convolution, and the preprocessing (``preprocess``, in
``minicnn.io.images.Preprocess.to_meta()``'s form) where the checkpoint's differs from
torchvision's usual resize 256 / crop 224 / ImageNet mean and std.
"""
from __future__ import annotations

import numpy as np

from minicnn.engine.layers import BatchNorm2d
from minicnn.engine.model import as_model
from minicnn.io.zoo import classic, densenet, efficientnet, googlenet, mobilenet, shufflenet
from minicnn.io.zoo._nodes import Nodes

__all__ = ["ARCHITECTURES", "ARCH_META", "RESIZE_OF_CHECKPOINT", "build", "model_shapes",
           "checkpoint_shapes", "batchnorm_pairs", "batchnorm_eps", "unused_checkpoint_keys",
           "rename_checkpoint_keys"]

_FAMILIES = (classic, mobilenet, efficientnet, densenet, googlenet, shufflenet)
_FAMILY_OF = {arch: family for family in _FAMILIES for arch in family.ARCHITECTURES}

ARCHITECTURES = tuple(_FAMILY_OF)
ARCH_META = {arch: meta for family in _FAMILIES for arch, meta in family.ARCH_META.items()}
# torchvision's weights files that were trained with another resize than 256 (their
# IMAGENET1K_V2 weights): ``convert`` looks the file name up
RESIZE_OF_CHECKPOINT = {name: size for family in _FAMILIES
                        for name, size in getattr(family, "RESIZE_OF_CHECKPOINT", {}).items()}


def _family(arch):
    if arch not in _FAMILY_OF:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return _FAMILY_OF[arch]


def _build(arch, num_classes, init, dtype=np.float32) -> Nodes:
    family = _family(arch)
    b = Nodes(init, dtype, family.BATCHNORM_EPS[arch])
    family.layout(arch, num_classes, b)
    return b


def build(arch: str, num_classes: int = 1000, init: bool = True, dtype=np.float32):
    """A minicnn model of `arch` (see ARCHITECTURES), BatchNorm folded, weights in ``dtype``
    random (or, with init=False, uninitialised: for weights about to be loaded).

    A chain (VGG, AlexNet) is a ``Sequential``, the others a ``Graph``; ``model.meta`` is
    ``ARCH_META[arch]`` (the default Grad-CAM layer, the preprocessing if it is not
    torchvision's usual one). Input (N, 3, H, W), ImageNet uses 224 x 224; output
    (N, num_classes) pre-softmax scores.
    """
    return as_model(_build(arch, num_classes, init, dtype).nodes, dict(ARCH_META.get(arch, {})))


def model_shapes(arch: str, num_classes: int = 1000) -> dict:
    """{state_dict key: shape} of ``build(arch)`` (BatchNorm folded: convolutions have biases)."""
    model = build(arch, num_classes, init=False)   # np.empty: no memory is touched
    return {key: value.shape for key, value in model.state_dict().items()}


def batchnorm_pairs(arch: str) -> list[tuple[str, str]]:
    """[(conv, BatchNorm)]: the torchvision BatchNorm that folds into each convolution."""
    return _build(arch, 1000, init=False).pairs


def batchnorm_eps(arch: str) -> float:
    """The eps of every BatchNorm of `arch` (one value per network in torchvision)."""
    return _family(arch).BATCHNORM_EPS[arch]


def unused_checkpoint_keys(arch: str, num_classes: int = 1000) -> dict:
    """{key: shape} that torchvision's checkpoint of `arch` holds but inference never reads:
    GoogLeNet's two auxiliary classifiers (trained with it, ignored in eval, as torchvision
    ignores them). Part of ``checkpoint_shapes``; a file may lack them."""
    extra = getattr(_family(arch), "unused_checkpoint_keys", None)
    return extra(arch, num_classes) if extra is not None else {}


def rename_checkpoint_keys(arch: str, state: dict) -> dict:
    """``state`` with the key names of older files brought to today's (DenseNet's published
    file says ``denselayer1.norm.1.weight`` for ``denselayer1.norm1.weight``); other keys,
    and other architectures' files, as they are. A new dict, in the same order."""
    rename = getattr(_family(arch), "rename_checkpoint_key", None)
    return dict(state) if rename is None else {rename(key): value for key, value in state.items()}


def checkpoint_shapes(arch: str, num_classes: int = 1000) -> dict:
    """{state_dict key: shape} of the torchvision checkpoint of `arch` (BatchNorm unfolded).

    A convolution before a BatchNorm has no bias (except VGG's); ``num_batches_tracked`` (0-d)
    is listed for every BatchNorm although old checkpoints lack it (``convert`` accepts both);
    ``unused_checkpoint_keys`` are included.
    """
    family, b = _family(arch), _build(arch, num_classes, init=False)
    model = as_model(b.nodes)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    keep_bias = getattr(family, "conv_bias_before_batchnorm", lambda arch: False)(arch)
    for conv, bn in b.pairs:
        width = shapes[f"{conv}.weight"][0]
        if not keep_bias:
            del shapes[f"{conv}.bias"]
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn}.{p}"] = (width,)
        shapes[f"{bn}.num_batches_tracked"] = ()
    for name in model.find(BatchNorm2d):         # the BatchNorms that stay layers
        shapes[f"{name}.num_batches_tracked"] = ()
    shapes.update(unused_checkpoint_keys(arch, num_classes))
    return shapes
