"""VGG 11/13/16/19 (+ _bn), AlexNet, ResNet-18/34/50 and SqueezeNet 1.0/1.1, laid out as
torchvision's (see ``minicnn.io.zoo`` for what "exactly" means).

- VGG (Simonyan & Zisserman 2014, arXiv:1409.1556): 3x3 convolutions with padding 1, each
  followed by ReLU (and, in the ``_bn`` variants, by BatchNorm before the ReLU), 2x2 max-pools,
  ``AdaptiveAvgPool2d((7, 7))``, then Linear 25088->4096, ReLU, Dropout, 4096->4096, ReLU,
  Dropout, 4096->classes.
- AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant: five convolutions
  (11x11/4, 5x5, 3x3 x3) with three 3x3/2 max-pools, ``AdaptiveAvgPool2d((6, 6))``, then
  Dropout, Linear 9216->4096, ReLU, Dropout, 4096->4096, ReLU, 4096->classes.
- ResNet (He, Zhang, Ren & Sun 2016, arXiv:1512.03385), torchvision's "V1.5": conv 7x7/2, max
  pool 3x3/2, four stages of residual blocks (18: 2-2-2-2 and 34: 3-4-6-3 BasicBlocks of two
  3x3 convolutions; 50: 3-4-6-3 Bottlenecks of 1x1, 3x3 (with the stride), 1x1), each block
  adding its input (or a 1x1 strided "downsample" of it) to its output before the last ReLU;
  global average pool, Linear. A block's one ``relu`` module is called two (BasicBlock) or
  three (Bottleneck) times: the nodes ``relu``, ``relu.1``, ``relu.2``.
- SqueezeNet (Iandola et al. 2016, arXiv:1602.07360) 1.0 and 1.1: Fire modules (a 1x1
  "squeeze" convolution feeding a 1x1 and a 3x3 "expand" convolution whose outputs are
  concatenated, 1x1 first), 3x3/2 max-pools with ceil_mode, and a 1x1 convolution to the
  classes, ReLU, global average pool as the classifier.

VGG and AlexNet have no ``ARCH_META`` entry: their default Grad-CAM layer is the ReLU after the
last convolution, which ``minicnn.saliency.gradcam`` finds by itself.
"""
from __future__ import annotations

from minicnn.engine.layers import AdaptiveAvgPool2d, Add, Concat, Dropout, Flatten, MaxPool2d, ReLU
from minicnn.engine.model import INPUT

__all__ = ["ARCHITECTURES", "ARCH_META", "RESIZE_OF_CHECKPOINT", "BATCHNORM_EPS", "layout",
           "conv_bias_before_batchnorm"]

# channels per conv; "M" is a 2x2 max-pool (the published configurations A, B, D, E)
_VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}
_RESNETS = {"resnet18": ([2, 2, 2, 2], False), "resnet34": ([3, 4, 6, 3], False),
            "resnet50": ([3, 4, 6, 3], True)}           # blocks per stage, bottleneck?
# Fire modules (squeeze, expand 1x1 = expand 3x3) and pools ("M") of features.3 onwards
_SQUEEZE_PLANS = {
    "squeezenet1_0": (96, 7, [(16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192),
                              (48, 192), (64, 256), "M", (64, 256)]),
    "squeezenet1_1": (64, 3, [(16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192),
                              (48, 192), (64, 256), (64, 256)]),
}

ARCHITECTURES = (tuple(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn"))
                 + ("alexnet",) + tuple(_RESNETS) + tuple(_SQUEEZE_PLANS))

ARCH_META = {
    **{arch: {"cam_layer": "layer4"} for arch in _RESNETS},
    **{arch: {"cam_layer": "features.12"} for arch in _SQUEEZE_PLANS},
}
# ResNet-50's IMAGENET1K_V2 weights, torchvision's default since 0.13, were trained for resize 232
RESIZE_OF_CHECKPOINT = {"resnet50-11ad3fa6.pth": 232}
BATCHNORM_EPS = {arch: 1e-5 for arch in ARCHITECTURES}      # torchvision's BatchNorm2d default


def conv_bias_before_batchnorm(arch) -> bool:
    """VGG's convolutions keep their bias before a BatchNorm; ResNet's have none."""
    return arch not in _RESNETS


def layout(arch, num_classes, b):
    """The nodes of ``arch`` into the builder ``b`` (``minicnn.io.zoo._nodes.Nodes``)."""
    if arch in _RESNETS:
        _resnet(arch, num_classes, b)
    elif arch in _SQUEEZE_PLANS:
        _squeezenet(arch, num_classes, b)
    else:
        if arch == "alexnet":
            x, pool, width = _alexnet(b), (6, 6), 256
        else:
            x = _vgg(_VGG_PLANS[int(arch[3:5])], arch.endswith("_bn"), b)
            pool, width = (7, 7), 512
        x = b.add("avgpool", AdaptiveAvgPool2d(pool), x)
        x = b.add("flatten", Flatten(), x)
        _classifier(b, x, width * pool[0] * pool[1], num_classes, arch == "alexnet")


def _vgg(plan, batch_norm, b):
    """features.*: -> the last node's name."""
    x, i, c_in = INPUT, 0, 3
    for item in plan:
        if item == "M":
            x = b.add(f"features.{i}", MaxPool2d(2, 2), x)
            i += 1
            continue
        bn = f"features.{i + 1}" if batch_norm else None   # folded: its index stays free
        x = b.conv(f"features.{i}", x, c_in, item, 3, padding=1, bn=bn)
        i += 2 if batch_norm else 1
        x = b.add(f"features.{i}", ReLU(), x)
        i += 1
        c_in = item
    return x


def _alexnet(b):
    x = INPUT
    spec = [(3, 64, 11, 4, 2), "R", "M", (64, 192, 5, 1, 2), "R", "M", (192, 384, 3, 1, 1), "R",
            (384, 256, 3, 1, 1), "R", (256, 256, 3, 1, 1), "R", "M"]
    for i, item in enumerate(spec):
        name = f"features.{i}"
        x = (b.add(name, ReLU(), x) if item == "R" else
             b.add(name, MaxPool2d(3, 2), x) if item == "M" else b.conv(name, x, *item))
    return x


def _classifier(b, x, in_features, num_classes, dropout_first):
    """torchvision's VGG/AlexNet classifier: two 4096-wide hidden layers."""
    if dropout_first:  # AlexNet: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear
        kinds = ["D", (in_features, 4096), "R", "D", (4096, 4096), "R", (4096, num_classes)]
    else:              # VGG: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
        kinds = [(in_features, 4096), "R", "D", (4096, 4096), "R", "D", (4096, num_classes)]
    for i, kind in enumerate(kinds):
        name = f"classifier.{i}"
        x = (b.add(name, ReLU(), x) if kind == "R" else b.add(name, Dropout(0.5), x)
             if kind == "D" else b.linear(name, x, *kind))
    return x


def _resnet(arch, num_classes, b):
    blocks, bottleneck = _RESNETS[arch]
    x = b.conv("conv1", INPUT, 3, 64, 7, stride=2, padding=3, bn="bn1")
    x = b.add("relu", ReLU(), x)
    x = b.add("maxpool", MaxPool2d(3, 2, 1), x)
    c_in, expansion = 64, (4 if bottleneck else 1)
    for stage, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for i in range(count):
            p = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            c_out = planes * expansion
            if bottleneck:  # 1x1 (squeeze), 3x3 (with the stride), 1x1 (expand)
                out = b.conv(f"{p}.conv1", x, c_in, planes, 1, bn=f"{p}.bn1")
                out = b.add(f"{p}.relu", ReLU(), out)
                out = b.conv(f"{p}.conv2", out, planes, planes, 3, stride, 1, bn=f"{p}.bn2")
                out = b.add(f"{p}.relu.1", ReLU(), out)
                out = b.conv(f"{p}.conv3", out, planes, c_out, 1, bn=f"{p}.bn3")
            else:           # two 3x3, the stride on the first
                out = b.conv(f"{p}.conv1", x, c_in, planes, 3, stride, 1, bn=f"{p}.bn1")
                out = b.add(f"{p}.relu", ReLU(), out)
                out = b.conv(f"{p}.conv2", out, planes, planes, 3, 1, 1, bn=f"{p}.bn2")
            identity = x
            if stride != 1 or c_in != c_out:  # the shortcut must match the block's output
                identity = b.conv(f"{p}.downsample.0", x, c_in, c_out, 1, stride,
                                  bn=f"{p}.downsample.1")
            out = b.add(f"{p}.add", Add(), out, identity)         # the skip connection
            x = b.add(f"{p}.relu.{2 if bottleneck else 1}", ReLU(), out)
            c_in = c_out
    x = b.add("avgpool", AdaptiveAvgPool2d((1, 1)), x)
    x = b.add("flatten", Flatten(), x)
    b.linear("fc", x, c_in, num_classes)


def _squeezenet(arch, num_classes, b):
    first, k, plan = _SQUEEZE_PLANS[arch]
    x = b.conv("features.0", INPUT, 3, first, k, stride=2)
    x = b.add("features.1", ReLU(), x)
    x = b.add("features.2", MaxPool2d(3, 2, ceil_mode=True), x)
    c_in = first
    for i, item in enumerate(plan, start=3):
        p = f"features.{i}"
        if item == "M":
            x = b.add(p, MaxPool2d(3, 2, ceil_mode=True), x)
            continue
        squeeze, expand = item
        s = b.add(f"{p}.squeeze_activation", ReLU(), b.conv(f"{p}.squeeze", x, c_in, squeeze, 1))
        e1 = b.add(f"{p}.expand1x1_activation", ReLU(),
                   b.conv(f"{p}.expand1x1", s, squeeze, expand, 1))
        e3 = b.add(f"{p}.expand3x3_activation", ReLU(),
                   b.conv(f"{p}.expand3x3", s, squeeze, expand, 3, padding=1))
        x = b.add(f"{p}.cat", Concat(), e1, e3)                   # expand1x1 first
        c_in = 2 * expand
    x = b.add("classifier.0", Dropout(0.5), x)
    x = b.conv("classifier.1", x, c_in, num_classes, 1)
    x = b.add("classifier.2", ReLU(), x)
    x = b.add("classifier.3", AdaptiveAvgPool2d((1, 1)), x)
    b.add("flatten", Flatten(), x)
