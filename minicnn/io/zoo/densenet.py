"""DenseNet-121 (Huang, Liu, van der Maaten & Weinberger 2017, arXiv:1608.06993), laid out as
torchvision's.

A 7x7/2 convolution to 64 channels with BatchNorm and ReLU, a 3x3/2 max-pool, then four dense
blocks of 6, 12, 24 and 16 layers with a transition between two blocks, a last BatchNorm,
ReLU, global average pool and Linear. Inside a block every layer reads the concatenation of
the block's input and of all the earlier layers' outputs (``torch.cat(features, 1)``, a
``Concat`` node; the first layer's is a concatenation of one) and adds 32 channels of its own:
BatchNorm, ReLU, 1x1 convolution to 128 channels, BatchNorm, ReLU, 3x3 convolution to 32 (the
"pre-activation" order: normalisation before the convolution). The block's output is the
concatenation of everything. A transition halves the channels and the size: BatchNorm, ReLU,
1x1 convolution, 2x2 average pool.

Only the BatchNorm right after a convolution folds into it (``norm0`` into ``conv0``,
``norm2`` into ``conv1``); the ones that read a concatenation (``norm1``, the transitions'
``norm``, ``norm5``) stay BatchNorm2d layers, and the convolutions that no BatchNorm follows
(``conv2``, the transitions' ``conv``) have no bias, as in torchvision.

torchvision's published file (``densenet121-a639ec97.pth``) predates the current key names:
it says ``denselayer1.norm.1.weight`` for ``denselayer1.norm1.weight`` (and ``relu.1``,
``conv.2``, ...), as torchvision's own loader knows; ``rename_checkpoint_key`` makes that
change.

The last BatchNorm ends torchvision's ``features``; the ReLU after it is applied in the
forward (``F.relu``, the node ``relu``). That ReLU's output, the rectified maps of the last
block, is the default Grad-CAM layer.
"""
from __future__ import annotations

import re

from minicnn.engine.layers import AdaptiveAvgPool2d, AvgPool2d, Concat, Flatten, MaxPool2d, ReLU
from minicnn.engine.model import INPUT

__all__ = ["ARCHITECTURES", "ARCH_META", "BATCHNORM_EPS", "layout", "rename_checkpoint_key"]

# growth rate, layers per block, channels of the first convolution, bottleneck width factor
_PLANS = {"densenet121": (32, (6, 12, 24, 16), 64, 4)}

ARCHITECTURES = tuple(_PLANS)
ARCH_META = {"densenet121": {"cam_layer": "relu"}}
BATCHNORM_EPS = {"densenet121": 1e-5}

# "features.denseblock1.denselayer1.norm.1.weight" -> "...denselayer1.norm1.weight"
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.\w+)$")


def rename_checkpoint_key(key: str) -> str:
    """A key of the published file in today's name (unchanged if it is already)."""
    match = _OLD_KEY.match(key)
    return key if match is None else match.group(1) + match.group(2)


def layout(arch, num_classes, b):
    """The nodes of ``arch`` into the builder ``b`` (``minicnn.io.zoo._nodes.Nodes``)."""
    growth, blocks, width, bottleneck = _PLANS[arch]
    x = b.conv("features.conv0", INPUT, 3, width, 7, 2, 3, bn="features.norm0")
    x = b.add("features.relu0", ReLU(), x)
    x = b.add("features.pool0", MaxPool2d(3, 2, 1), x)
    c = width
    for i, count in enumerate(blocks, start=1):
        block, features = f"features.denseblock{i}", [x]
        for j in range(1, count + 1):
            p, c_in = f"{block}.denselayer{j}", c + (j - 1) * growth
            out = b.add(f"{p}.cat", Concat(), *features)        # (N, c_in, H, W)
            out = b.batchnorm(f"{p}.norm1", out, c_in)
            out = b.add(f"{p}.relu1", ReLU(), out)
            out = b.conv(f"{p}.conv1", out, c_in, bottleneck * growth, 1, bn=f"{p}.norm2")
            out = b.add(f"{p}.relu2", ReLU(), out)
            out = b.conv(f"{p}.conv2", out, bottleneck * growth, growth, 3, padding=1,
                         bias=False)
            features.append(out)                                # (N, growth, H, W)
        x = b.add(f"{block}.cat", Concat(), *features)
        c += count * growth
        if i < len(blocks):
            p = f"features.transition{i}"
            x = b.add(f"{p}.relu", ReLU(), b.batchnorm(f"{p}.norm", x, c))
            x = b.conv(f"{p}.conv", x, c, c // 2, 1, bias=False)
            x = b.add(f"{p}.pool", AvgPool2d(2, 2), x)
            c //= 2
    x = b.batchnorm("features.norm5", x, c)
    x = b.add("relu", ReLU(), x)                                # F.relu(features)
    x = b.add("adaptive_avg_pool2d", AdaptiveAvgPool2d((1, 1)), x)
    x = b.add("flatten", Flatten(), x)
    b.linear("classifier", x, c, num_classes)
