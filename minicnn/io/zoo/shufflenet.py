"""ShuffleNet V2 x1.0 (Ma, Zhang, Zheng & Sun 2018, arXiv:1807.11164), laid out as
torchvision's.

A 3x3/2 convolution to 24 channels with BatchNorm and ReLU, a 3x3/2 max-pool, three stages of
4, 8 and 4 units (116, 232 and 464 channels), a 1x1 convolution to 1024 with BatchNorm and
ReLU, the spatial mean (``x.mean([2, 3])``: here a global average pool and a flatten, the
nodes ``mean`` and ``flatten``) and Linear. Each unit works on two halves of the channels:

- the first unit of a stage (stride 2) runs two branches on the whole input, ``branch1``
  (3x3/2 depthwise convolution, BatchNorm, 1x1 convolution, BatchNorm, ReLU) and ``branch2``
  (1x1, BatchNorm, ReLU, 3x3/2 depthwise, BatchNorm, 1x1, BatchNorm, ReLU), each to half the
  stage's width, and concatenates them;
- the others (stride 1) split the input's channels in two (``x.chunk(2, dim=1)``: the
  ``ChannelSlice`` nodes ``chunk`` and ``chunk.1``), keep the first half as it is, run
  ``branch2`` (stride 1) on the second, and concatenate the two;
- then every unit shuffles the channels (``channel_shuffle(out, 2)``: a ``ChannelShuffle``
  node), so that the half that was left alone is mixed into the next unit's branch.

Every convolution is followed by a BatchNorm, folded into it here. Default Grad-CAM layer:
``conv5``, the last convolution's ReLU.
"""
from __future__ import annotations

from minicnn.engine.layers import (AdaptiveAvgPool2d, ChannelShuffle, ChannelSlice, Concat,
                                   Flatten, MaxPool2d, ReLU)
from minicnn.engine.model import INPUT

__all__ = ["ARCHITECTURES", "ARCH_META", "BATCHNORM_EPS", "layout"]

# units per stage; channels of conv1, the three stages and conv5
_PLANS = {"shufflenet_v2_x1_0": ([4, 8, 4], [24, 116, 232, 464, 1024])}

ARCHITECTURES = tuple(_PLANS)
ARCH_META = {"shufflenet_v2_x1_0": {"cam_layer": "conv5"}}
BATCHNORM_EPS = {"shufflenet_v2_x1_0": 1e-5}


def _seq(b, p, x, spec):
    """An nn.Sequential ``p`` of ("conv", c_in, c_out, k, stride, groups) with the BatchNorm
    after each folded in (it takes the next index), and "relu"."""
    i = 0
    for item in spec:
        if item == "relu":
            x, i = b.add(f"{p}.{i}", ReLU(), x), i + 1
        else:
            _, c_in, c_out, k, stride, groups = item
            x = b.conv(f"{p}.{i}", x, c_in, c_out, k, stride, (k - 1) // 2, groups=groups,
                       bn=f"{p}.{i + 1}")
            i += 2
    return x


def _unit(b, p, x, c_in, c_out, stride):
    half = c_out // 2
    if stride > 1:
        left = _seq(b, f"{p}.branch1", x, [("conv", c_in, c_in, 3, stride, c_in),
                                           ("conv", c_in, half, 1, 1, 1), "relu"])
        right, right_in = x, c_in
    else:
        left = b.add(f"{p}.chunk", ChannelSlice(0, c_in // 2), x)           # x1
        right = b.add(f"{p}.chunk.1", ChannelSlice(c_in // 2, c_in), x)     # x2
        right_in = half
    right = _seq(b, f"{p}.branch2", right, [("conv", right_in, half, 1, 1, 1), "relu",
                                            ("conv", half, half, 3, stride, half),
                                            ("conv", half, half, 1, 1, 1), "relu"])
    out = b.add(f"{p}.cat", Concat(), left, right)                          # (N, c_out, H, W)
    return b.add(f"{p}.channel_shuffle", ChannelShuffle(2), out)


def layout(arch, num_classes, b):
    """The nodes of ``arch`` into the builder ``b`` (``minicnn.io.zoo._nodes.Nodes``)."""
    repeats, widths = _PLANS[arch]
    x = _seq(b, "conv1", INPUT, [("conv", 3, widths[0], 3, 2, 1), "relu"])
    x = b.add("maxpool", MaxPool2d(3, 2, 1), x)
    c = widths[0]
    for stage, (count, width) in enumerate(zip(repeats, widths[1:4]), start=2):
        for i in range(count):
            x = _unit(b, f"stage{stage}.{i}", x, c, width, 2 if i == 0 else 1)
            c = width
    x = _seq(b, "conv5", x, [("conv", c, widths[4], 1, 1, 1), "relu"])
    x = b.add("mean", AdaptiveAvgPool2d(1), x)                  # x.mean([2, 3]): (N, C, 1, 1)
    x = b.add("flatten", Flatten(), x)                          # (N, C)
    b.linear("fc", x, widths[4], num_classes)
