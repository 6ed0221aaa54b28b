"""Test helper: LRP and DeepLIFT oracles (zennit, Captum) and the networks they are run on.

zennit imports torchvision when it is imported, so ``zennit()`` goes through
``torchvision_oracle.import_torchvision`` first (which stubs torchvision's compiled-operator
registrations beside torch 2.13) and skips the test when either is missing. torch is imported
inside the functions, so test modules can import this one without torch.
"""
import numpy as np
import pytest

from tests.helpers.torchvision_oracle import import_torchvision

ZENNIT_INSTALL = "pip install --no-deps zennit==0.5.1"


def zennit():
    """The zennit package (0.5.1), after torchvision's stubs; pytest.skip without it."""
    import_torchvision()
    try:
        import zennit as z
        import zennit.composites  # noqa: F401
        import zennit.rules  # noqa: F401
        import zennit.torchvision  # noqa: F401
    except ImportError as e:
        pytest.skip(f"zennit does not import ({e}): {ZENNIT_INSTALL}")
    return z


def seed_of(scores, targets):
    """The relevance at the output both libraries start from: one-hot times the score."""
    seed = np.zeros_like(scores)
    rows = np.arange(len(targets))
    seed[rows, targets] = scores[rows, targets]
    return seed


def minicnn_relevance(model, x, targets, rule):
    """minicnn's relevance of x (N, C, H, W) for the targets under rule -> (N, C, H, W)."""
    scores = model.forward(x)
    return model.backward(seed_of(scores, targets), rule=rule)


def zennit_relevance(net, x, targets, composite):
    """zennit's relevance of x for the targets (the same seed: one-hot times the score)."""
    import torch
    from zennit.attribution import Gradient
    xt = torch.from_numpy(np.ascontiguousarray(x)).clone()
    with torch.no_grad():
        scores = net(xt).numpy()
    xt.requires_grad_(True)
    with Gradient(model=net, composite=composite) as attributor:
        _, relevance = attributor(xt, torch.from_numpy(seed_of(scores, targets)))
    return relevance.detach().numpy()


def zennit_layer_map(rule, stabilizer=1e-6):
    """A zennit composite with ``rule`` on every convolution and linear layer and zennit's
    base map elsewhere (Pass through activations, Norm through sums and average pools)."""
    import torch
    z = zennit()
    return z.composites.LayerMapComposite(
        layer_map=z.composites.layer_map_base(stabilizer)
        + [(z.types.Convolution, rule), (torch.nn.Linear, rule)])


def zennit_first(first_rule, rest, stabilizer=1e-6):
    """zennit: ``first_rule`` on the first convolution or linear layer, ``rest`` on the others."""
    import torch
    z = zennit()
    return z.composites.SpecialFirstLayerMapComposite(
        layer_map=z.composites.layer_map_base(stabilizer)
        + [(z.types.Convolution, rest), (torch.nn.Linear, rest)],
        first_map=[(z.types.Linear, first_rule)])


def randomise_batchnorms(net, seed=0):
    """Eval-mode BatchNorms with statistics and affine weights far from their initial values
    (some scales negative, so that folding them changes which weights are positive)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            C = module.num_features
            module.running_mean.copy_(torch.randn(C, generator=g, dtype=torch.float64) * 0.3)
            module.running_var.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
            module.weight.data.copy_(torch.randn(C, generator=g, dtype=torch.float64))
            module.bias.data.copy_(torch.randn(C, generator=g, dtype=torch.float64) * 0.3)
    return net.eval()


def vgg_style(seed=0):
    """A small VGG: conv/ReLU/max-pool twice (the second a grouped convolution), an average
    pool, two dense layers; float64, eval mode; input (N, 3, 16, 16), 5 classes."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(12 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 5)).double().eval()


def resnet_style(seed=0):
    """torchvision's ResNet with one BasicBlock per stage (a downsampling shortcut in three of
    them), its BatchNorms randomised; float64, eval mode; input (N, 3, 32, 32), 5 classes."""
    import torch
    tv = import_torchvision()
    torch.manual_seed(seed)
    net = tv.models.resnet.ResNet(tv.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=5)
    return randomise_batchnorms(net.double(), seed)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)
