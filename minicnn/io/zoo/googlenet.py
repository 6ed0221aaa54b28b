"""GoogLeNet (Inception v1; Szegedy et al. 2015, arXiv:1409.4842), laid out as torchvision's.

Every convolution is a ``BasicConv2d``: conv (no bias), BatchNorm (eps 1e-3, folded here) and
``F.relu``, the nodes ``{p}.conv`` and ``{p}.relu``. A 7x7/2 convolution, 3x3/2 max-pool, 1x1
and 3x3 convolutions, max-pool, then nine Inception modules (3a, 3b, pool, 4a-4e, pool, 5a,
5b), global average pool, Dropout, Linear. An Inception module runs four branches on its
input and concatenates them: a 1x1 convolution; 1x1 then 3x3; 1x1 then another 3x3 (the
paper's 5x5, which torchvision's port has always built as 3x3, and its weights are 3x3);
a 3x3 max-pool with stride 1 then 1x1. Every max-pool has ceil_mode.

torchvision's checkpoint also holds two auxiliary classifiers, ``aux1`` and ``aux2``, which
helped training and which torchvision's forward does not run in eval; they have no nodes
here (``unused_checkpoint_keys`` lists them for ``convert``).

The input. torchvision's pretrained GoogLeNet has ``transform_input=True``: its forward
begins by turning an input normalised with the ImageNet mean and std into one normalised
with mean 0.5 and std 0.5, x * (std / 0.5) + (mean - 0.5) / 0.5 per channel, the scaling the
original weights were trained with. The same number reaches the first convolution if the
preprocessing itself subtracts 0.5 and divides by 0.5, so that is what this layout does: it is
torchvision's network after that first step, and ``ARCH_META`` carries the preprocessing
(mean = std = 0.5). The scores are the same function of the pixels; a saliency gradient is
taken with respect to the model's input, which is then the [-1, 1] image (it is the ImageNet-
normalised image's gradient times 0.5 / std, a constant per channel).
``minicnn.from_torch`` of a model with ``transform_input=True`` instead keeps that step as a
first node (``transform_input``), because it must compute what the module computes.

Default Grad-CAM layer: ``inception5b``, the last module's concatenation.
"""
from __future__ import annotations

from minicnn.engine.layers import AdaptiveAvgPool2d, Concat, Dropout, Flatten, MaxPool2d, ReLU
from minicnn.engine.model import INPUT

__all__ = ["ARCHITECTURES", "ARCH_META", "BATCHNORM_EPS", "layout", "unused_checkpoint_keys"]

# channels: 1x1; 3x3 reduce, 3x3; "5x5" reduce, "5x5"; pool projection. "M": 3x3/2 max-pool,
# "M2": 2x2/2
_PLAN = [("inception3a", (64, 96, 128, 16, 32, 32)), ("inception3b", (128, 128, 192, 32, 96, 64)),
         ("maxpool3", "M"),
         ("inception4a", (192, 96, 208, 16, 48, 64)), ("inception4b", (160, 112, 224, 24, 64, 64)),
         ("inception4c", (128, 128, 256, 24, 64, 64)),
         ("inception4d", (112, 144, 288, 32, 64, 64)),
         ("inception4e", (256, 160, 320, 32, 128, 128)), ("maxpool4", "M2"),
         ("inception5a", (256, 160, 320, 32, 128, 128)),
         ("inception5b", (384, 192, 384, 48, 128, 128))]

ARCHITECTURES = ("googlenet",)
ARCH_META = {"googlenet": {"cam_layer": "inception5b",
                           "preprocess": {"resize": 256, "crop": 224, "mean": [0.5] * 3,
                                          "std": [0.5] * 3}}}
BATCHNORM_EPS = {"googlenet": 1e-3}


def _basic_conv(b, p, x, c_in, c_out, k, padding=0, stride=1):
    x = b.conv(f"{p}.conv", x, c_in, c_out, k, stride, padding, bn=f"{p}.bn")
    return b.add(f"{p}.relu", ReLU(), x)                        # F.relu in BasicConv2d


def _inception(b, p, x, c_in, plan):
    one, red3, three, red5, five, pool = plan
    b1 = _basic_conv(b, f"{p}.branch1", x, c_in, one, 1)
    b2 = _basic_conv(b, f"{p}.branch2.0", x, c_in, red3, 1)
    b2 = _basic_conv(b, f"{p}.branch2.1", b2, red3, three, 3, 1)
    b3 = _basic_conv(b, f"{p}.branch3.0", x, c_in, red5, 1)
    b3 = _basic_conv(b, f"{p}.branch3.1", b3, red5, five, 3, 1)  # torchvision's 3x3
    b4 = b.add(f"{p}.branch4.0", MaxPool2d(3, 1, 1, ceil_mode=True), x)
    b4 = _basic_conv(b, f"{p}.branch4.1", b4, c_in, pool, 1)
    return b.add(f"{p}.cat", Concat(), b1, b2, b3, b4), one + three + five + pool


def layout(arch, num_classes, b):
    """The nodes of ``arch`` into the builder ``b`` (``minicnn.io.zoo._nodes.Nodes``)."""
    x = _basic_conv(b, "conv1", INPUT, 3, 64, 7, 3, 2)
    x = b.add("maxpool1", MaxPool2d(3, 2, ceil_mode=True), x)
    x = _basic_conv(b, "conv2", x, 64, 64, 1)
    x = _basic_conv(b, "conv3", x, 64, 192, 3, 1)
    x = b.add("maxpool2", MaxPool2d(3, 2, ceil_mode=True), x)
    c = 192
    for name, item in _PLAN:
        if item == "M":
            x = b.add(name, MaxPool2d(3, 2, ceil_mode=True), x)
        elif item == "M2":
            x = b.add(name, MaxPool2d(2, 2, ceil_mode=True), x)
        else:
            x, c = _inception(b, name, x, c, item)
    x = b.add("avgpool", AdaptiveAvgPool2d((1, 1)), x)
    x = b.add("flatten", Flatten(), x)
    x = b.add("dropout", Dropout(0.2), x)
    b.linear("fc", x, c, num_classes)


def unused_checkpoint_keys(arch, num_classes):
    """The auxiliary classifiers' keys: after inception4a (512 channels) and 4d (528), each
    an adaptive pool to 4x4, a BasicConv2d to 128 channels, Linear 2048 -> 1024 -> classes."""
    shapes = {}
    for aux, c_in in (("aux1", 512), ("aux2", 528)):
        shapes[f"{aux}.conv.conv.weight"] = (128, c_in, 1, 1)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{aux}.conv.bn.{p}"] = (128,)
        shapes[f"{aux}.conv.bn.num_batches_tracked"] = ()
        shapes.update({f"{aux}.fc1.weight": (1024, 2048), f"{aux}.fc1.bias": (1024,),
                       f"{aux}.fc2.weight": (num_classes, 1024), f"{aux}.fc2.bias": (num_classes,)})
    return shapes
