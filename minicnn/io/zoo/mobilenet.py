"""MobileNetV2 and MobileNetV3 (small, large), laid out as torchvision's.

- MobileNetV2 (Sandler et al. 2018, arXiv:1801.04381): a 3x3/2 convolution to 32 channels,
  17 inverted residual blocks, a 1x1 convolution to 1280, global average pool, Dropout,
  Linear. A block widens its input t times with a 1x1 convolution (skipped when t = 1),
  filters each channel on its own with a 3x3 depthwise convolution (groups = channels, the
  block's stride), and projects back with a 1x1 convolution that has no activation (the
  "linear bottleneck"); when the stride is 1 and the width unchanged, the block's input is
  added to its output (``x + self.conv(x)``). Every convolution is followed by BatchNorm, and
  all but the projection by ReLU6 = min(max(x, 0), 6).
- MobileNetV3 (Howard et al. 2019, arXiv:1905.02244): the same kind of block, with 3x3 or 5x5
  depthwise kernels, Hardswish (x * ReLU6(x + 3) / 6) instead of ReLU in the later blocks, and
  in some blocks a squeeze-and-excitation gate (Hu et al. 2018, arXiv:1709.01507) between the
  depthwise and the projecting convolution: global average pool, 1x1 convolution to a quarter
  of the channels (rounded to a multiple of 8), ReLU, 1x1 back, Hardsigmoid, and the block's
  features multiplied by that (N, C, 1, 1) gate (``scale * input``, a ``Mul`` node). The head
  is a 1x1 convolution to 6x the last width with Hardswish, global average pool, then Linear,
  Hardswish, Dropout, Linear. BatchNorm eps is 1e-3 (torchvision's 1e-5 elsewhere).

torchvision's node names: ``Conv2dNormActivation`` is a Sequential of conv ``.0``, BatchNorm
``.1`` (folded here) and activation ``.2``; V2's blocks hold them in ``features.N.conv``,
V3's in ``features.N.block``.

Default Grad-CAM layer: the last block of ``features`` (the 1x1 head convolution's
activation), ``features.18`` (V2), ``features.12`` (V3 small), ``features.16`` (V3 large).
"""
from __future__ import annotations

from minicnn.engine.layers import (AdaptiveAvgPool2d, Add, Dropout, Flatten, Hardsigmoid,
                                   Hardswish, Mul, ReLU, ReLU6)
from minicnn.engine.model import INPUT

__all__ = ["ARCHITECTURES", "ARCH_META", "RESIZE_OF_CHECKPOINT", "BATCHNORM_EPS", "layout"]

# expansion t, channels out c, repeats n, stride of the first s
_V2_PLAN = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]
# per block: kernel, expanded width, channels out, squeeze-and-excitation?, Hardswish?, stride
_V3_PLANS = {
    "mobilenet_v3_small": (16, [
        (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
        (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1)], 1024),
    "mobilenet_v3_large": (16, [
        (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2),
        (3, 72, 24, False, False, 1), (5, 72, 40, True, False, 2),
        (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
        (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1),
        (3, 184, 80, False, True, 1), (3, 184, 80, False, True, 1),
        (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
        (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1),
        (5, 960, 160, True, True, 1)], 1280),
}                                 # (stem width, blocks, width of the classifier's hidden layer)

ARCHITECTURES = ("mobilenet_v2",) + tuple(_V3_PLANS)
ARCH_META = {"mobilenet_v2": {"cam_layer": "features.18"},
             "mobilenet_v3_small": {"cam_layer": "features.12"},
             "mobilenet_v3_large": {"cam_layer": "features.16"}}
# the IMAGENET1K_V2 weights (torchvision's default for V2 and V3 large) were trained for
# resize 232; fetch's files are the V1 ones (mobilenet_v2-b0353104, mobilenet_v3_large-8738ca79)
RESIZE_OF_CHECKPOINT = {"mobilenet_v2-7ebf99e0.pth": 232, "mobilenet_v3_large-5c1a4163.pth": 232}
BATCHNORM_EPS = {"mobilenet_v2": 1e-5, "mobilenet_v3_small": 1e-3, "mobilenet_v3_large": 1e-3}


def layout(arch, num_classes, b):
    """The nodes of ``arch`` into the builder ``b`` (``minicnn.io.zoo._nodes.Nodes``)."""
    if arch == "mobilenet_v2":
        _v2(num_classes, b)
    else:
        _v3(arch, num_classes, b)


def conv_norm_act(b, p, x, c_in, c_out, k, stride=1, groups=1, act=None):
    """torchvision's Conv2dNormActivation ``p``: conv ``p.0`` with BatchNorm ``p.1`` folded in,
    then the activation ``p.2`` (none for a projection)."""
    x = b.conv(f"{p}.0", x, c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bn=f"{p}.1")
    return x if act is None else b.add(f"{p}.2", act(), x)


def _v2(num_classes, b):
    x = conv_norm_act(b, "features.0", INPUT, 3, 32, 3, 2, act=ReLU6)
    c_in, i = 32, 1
    for t, c_out, repeats, first_stride in _V2_PLAN:
        for r in range(repeats):
            stride, p, hidden = (first_stride if r == 0 else 1), f"features.{i}", c_in * t
            out, j = x, 0
            if t != 1:                                              # expand
                out = conv_norm_act(b, f"{p}.conv.0", out, c_in, hidden, 1, act=ReLU6)
                j = 1
            out = conv_norm_act(b, f"{p}.conv.{j}", out, hidden, hidden, 3, stride,  # depthwise
                                 groups=hidden, act=ReLU6)
            out = b.conv(f"{p}.conv.{j + 1}", out, hidden, c_out, 1,              # project
                         bn=f"{p}.conv.{j + 2}")
            if stride == 1 and c_in == c_out:
                out = b.add(f"{p}.add", Add(), x, out)              # x + self.conv(x)
            x, c_in, i = out, c_out, i + 1
    x = conv_norm_act(b, f"features.{i}", x, c_in, 1280, 1, act=ReLU6)
    x = b.add("adaptive_avg_pool2d", AdaptiveAvgPool2d((1, 1)), x)  # F.adaptive_avg_pool2d
    x = b.add("flatten", Flatten(), x)
    x = b.add("classifier.0", Dropout(0.2), x)
    b.linear("classifier.1", x, 1280, num_classes)


def _make_divisible(v, divisor=8):
    """The nearest multiple of `divisor` to v, never below 90% of v (the squeeze width)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def squeeze_excitation(b, p, x, channels, squeeze, act, gate):
    """torchvision's SqueezeExcitation ``p`` on x (N, C, H, W) -> x * gate (N, C, 1, 1)."""
    s = b.add(f"{p}.avgpool", AdaptiveAvgPool2d(1), x)                       # (N, C, 1, 1)
    s = b.add(f"{p}.activation", act(), b.conv(f"{p}.fc1", s, channels, squeeze, 1))
    s = b.add(f"{p}.scale_activation", gate(), b.conv(f"{p}.fc2", s, squeeze, channels, 1))
    return b.add(f"{p}.mul", Mul(), s, x)                                     # scale * input


def _v3(arch, num_classes, b):
    stem, plan, hidden_width = _V3_PLANS[arch]
    x = conv_norm_act(b, "features.0", INPUT, 3, stem, 3, 2, act=Hardswish)
    c_in = stem
    for i, (k, expanded, c_out, se, hardswish, stride) in enumerate(plan, start=1):
        p, act = f"features.{i}.block", (Hardswish if hardswish else ReLU)
        out, j = x, 0
        if expanded != c_in:                                                    # expand
            out = conv_norm_act(b, f"{p}.0", out, c_in, expanded, 1, act=act)
            j = 1
        out = conv_norm_act(b, f"{p}.{j}", out, expanded, expanded, k, stride,  # depthwise
                             groups=expanded, act=act)
        if se:
            j += 1
            out = squeeze_excitation(b, f"{p}.{j}", out, expanded,
                                     _make_divisible(expanded // 4), ReLU, Hardsigmoid)
        out = conv_norm_act(b, f"{p}.{j + 1}", out, expanded, c_out, 1)          # project
        if stride == 1 and c_in == c_out:
            out = b.add(f"features.{i}.add", Add(), out, x)         # result += input
        x, c_in = out, c_out
    last = len(plan) + 1
    x = conv_norm_act(b, f"features.{last}", x, c_in, 6 * c_in, 1, act=Hardswish)
    x = b.add("avgpool", AdaptiveAvgPool2d(1), x)
    x = b.add("flatten", Flatten(), x)
    x = b.linear("classifier.0", x, 6 * c_in, hidden_width)
    x = b.add("classifier.1", Hardswish(), x)
    x = b.add("classifier.2", Dropout(0.2), x)
    b.linear("classifier.3", x, hidden_width, num_classes)
