"""Test helper: VGG and AlexNet in plain torch.nn, with torchvision's module layout and keys.

torchvision does not import beside torch 2.13 on our machines, so the tests build the same
networks here, from the published configurations, independently of minicnn.io.zoo. Weights are
random; BatchNorm layers get random affine parameters and running statistics so that folding
them is really exercised.
"""
import torch
from torch import nn

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


def build(name, seed=0, num_classes=1000):
    """A torchvision-shaped `name` with random weights (and BatchNorm statistics), eval mode."""
    torch.manual_seed(seed)
    net = alexnet(num_classes) if name == "alexnet" else vgg(name, num_classes)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):        # He init keeps a 19-layer net's signal alive
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(100)
    return net.eval()
