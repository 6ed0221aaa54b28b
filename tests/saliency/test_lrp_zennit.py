"""LRP against zennit 0.5.1 (Anders et al. 2021), float64: every rule and composite on a
VGG-style net (with a grouped convolution), on torchvision's ResNet layout with its
BatchNorms folded (zennit: its ResNetCanonizer), on a depthwise net, and on the shipped model.

Conventions matched: the relevance starts as the one-hot times the score; epsilon is added
with the sign of z, sign(0) = +1; gamma is zennit's generalised rule; the stabiliser of the
defaults (sums, average pools) is 1e-6, as zennit's Norm; max-pools are winner-takes-all.
Where minicnn differs, and the tests show it:
- w^2: zennit squares the bias into the denominator; minicnn leaves it out (Montavon et al.
  2017), so zennit is run with zero_params="bias";
- LRP-0 at an output whose z is exactly 0 (an average pool over a window of dead ReLUs):
  zennit divides 0 by 0 and the NaN spreads to every pixel; minicnn lets that output pass
  nothing on (its relevance is 0 anyway: it came in proportion to its value);
- BatchNorm: both fold it into the convolution before it, but zennit's canonizer leaves the
  BatchNorm in place as x / sqrt(1 + eps) (its running variance set to 1, its eps kept),
  which rescales the network by 1 - 5e-6 per BatchNorm; the ResNet is compared with eps ->
  0, where the two agree to rounding, and the rescaling is shown for the default eps.
"""
import numpy as np
import pytest

from minicnn import saliency as S
from minicnn.engine.layers import BatchNorm2d, Conv2d, Linear
from minicnn.io.torch_import import from_torch
from tests.helpers.relevance import (minicnn_relevance, random_images, resnet_style, vgg_style,
                                     zennit, zennit_first, zennit_layer_map, zennit_relevance)
from tests.helpers.torch_twin import torch_twin

LOW, HIGH = np.array([-2.0, -1.5, -2.5]), np.array([2.0, 2.5, 1.5])   # per channel


def _rules(z):
    """(name, minicnn rule, zennit composite) for every rule and composite."""
    r, c = z.rules, z.composites
    low, high = LOW.reshape(1, 3, 1, 1), HIGH.reshape(1, 3, 1, 1)
    import torch
    low_t, high_t = torch.from_numpy(low), torch.from_numpy(high)
    rest = S.Epsilon(1e-6)
    return [
        ("lrp-0", S.Composite(layers=((Conv2d, S.Epsilon(0.0)), (Linear, S.Epsilon(0.0)))),
         zennit_layer_map(r.Epsilon(0.0))),
        ("epsilon", S.Epsilon(1e-6), zennit_layer_map(r.Epsilon(1e-6))),
        ("epsilon 0.25", S.Composite(layers=((Conv2d, S.Epsilon(0.25)), (Linear, S.Epsilon(0.25)))),
         zennit_layer_map(r.Epsilon(0.25))),
        ("gamma", S.Gamma(0.25), zennit_layer_map(r.Gamma(0.25))),
        ("gamma 1", S.Gamma(1.0), zennit_layer_map(r.Gamma(1.0))),
        ("z-plus", S.ZPlus(), zennit_layer_map(r.ZPlus())),
        ("alpha1-beta0", S.AlphaBeta(1, 0), zennit_layer_map(r.AlphaBeta(1, 0))),
        ("alpha2-beta1", S.AlphaBeta(2, 1), zennit_layer_map(r.AlphaBeta(2, 1))),
        ("z-box first", S.Composite(first=(((Conv2d, Linear), S.ZBox(LOW, HIGH)),), otherwise=rest),
         zennit_first(r.ZBox(low_t, high_t), r.Epsilon(1e-6))),
        ("flat first", S.Composite(first=(((Conv2d, Linear), S.Flat()),), otherwise=rest),
         zennit_first(r.Flat(), r.Epsilon(1e-6))),
        ("w-square first", S.Composite(first=(((Conv2d, Linear), S.WSquare()),), otherwise=rest),
         zennit_first(r.WSquare(zero_params="bias"), r.Epsilon(1e-6))),
        ("EpsilonPlus", S.EpsilonPlus(), c.EpsilonPlus()),
        ("EpsilonGammaBox", S.EpsilonGammaBox(LOW, HIGH),
         c.EpsilonGammaBox(low=low_t, high=high_t)),
        ("EpsilonAlpha2Beta1", S.EpsilonAlpha2Beta1(), c.EpsilonAlpha2Beta1()),
        ("EpsilonPlusFlat", S.EpsilonPlusFlat(), c.EpsilonPlusFlat()),
    ]


@pytest.fixture(scope="module")
def z():
    return zennit()


@pytest.fixture(scope="module")
def vgg(z):
    net = vgg_style()
    return net, from_torch(net), random_images((3, 3, 16, 16), 1)


def test_every_rule_and_composite_on_a_vgg_style_net(z, vgg):
    net, model, x = vgg
    assert model[3].groups == 2                              # a grouped convolution too
    targets = [1, 4, 0]
    for name, rule, composite in _rules(z):
        want = zennit_relevance(net, x, targets, composite)
        got = minicnn_relevance(model, x, targets, rule)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max(),
                                   err_msg=name)


def test_lrp_0_where_z_is_zero_is_nan_in_zennit_and_nothing_passed_on_in_minicnn(z):
    import torch
    from torch import nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 3)).double().eval()
    with torch.no_grad():
        net[0].bias[1] = -100.0                     # channel 1 dead everywhere: its means are 0
    model, x = from_torch(net), random_images((1, 3, 8, 8), 6)
    want = zennit_relevance(net, x, [0], zennit_layer_map(z.rules.Epsilon(0.0), stabilizer=0.0))
    got = minicnn_relevance(model, x, [0], S.Epsilon(0.0))
    assert np.isnan(want).all() and np.isfinite(got).all()
    np.testing.assert_allclose(got, x * model.backward(np.eye(3)[[0]]), rtol=1e-12, atol=1e-15)


def test_a_mapping_of_names_and_types_equals_zennits_name_and_layer_maps(z, vgg):
    import torch
    net, model, x = vgg
    mapping = {"0": S.Flat(), "Conv2d": S.ZPlus(), Linear: S.Epsilon(0.1)}
    composite = z.composites.NameLayerMapComposite(
        name_map=[(["0"], z.rules.Flat())],
        layer_map=z.composites.layer_map_base() + [(z.types.Convolution, z.rules.ZPlus()),
                                                    (torch.nn.Linear, z.rules.Epsilon(0.1))])
    np.testing.assert_allclose(minicnn_relevance(model, x, [2, 2, 2], mapping),
                               zennit_relevance(net, x, [2, 2, 2], composite), rtol=1e-9,
                               atol=1e-14)


def test_depthwise_convolutions_and_relu6(z):
    import torch
    from torch import nn
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),      # depthwise
                        nn.Conv2d(8, 12, 1), nn.ReLU6(),                          # pointwise
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4)).double().eval()
    model, x = from_torch(net), random_images((2, 3, 15, 15), 2)
    for name, rule, composite in _rules(z):
        want = zennit_relevance(net, x, [0, 3], composite)
        np.testing.assert_allclose(minicnn_relevance(model, x, [0, 3], rule), want, rtol=1e-9,
                                   atol=1e-12 * np.abs(want).max(), err_msg=name)


def _resnet(eps):
    import torch
    net = resnet_style()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = eps
    return net, from_torch(net)                        # minicnn folds every BatchNorm


def test_the_composites_on_torchvisions_resnet_with_its_canonizer(z):
    net, model = _resnet(1e-30)
    assert model.find(BatchNorm2d) == [] and "layer1.0.add" in model.names
    x = random_images((2, 3, 32, 32), 3)
    targets = [int(c) for c in model.forward(x).argmax(1)]
    import torch
    low, high = (torch.from_numpy(v.reshape(1, 3, 1, 1)) for v in (LOW, HIGH))
    cases = [(S.EpsilonPlus(), z.composites.EpsilonPlus),
             (S.EpsilonGammaBox(LOW, HIGH),
              lambda canonizers: z.composites.EpsilonGammaBox(low, high, canonizers=canonizers)),
             (S.EpsilonAlpha2Beta1(), z.composites.EpsilonAlpha2Beta1),
             (S.EpsilonPlusFlat(), z.composites.EpsilonPlusFlat)]
    for rule, make in cases:
        want = zennit_relevance(net, x, targets,
                                make(canonizers=[z.torchvision.ResNetCanonizer()]))
        np.testing.assert_allclose(minicnn_relevance(model, x, targets, rule), want, rtol=1e-9,
                                   atol=1e-11 * np.abs(want).max(), err_msg=rule.name)


def test_zennits_canonized_batchnorm_still_divides_by_sqrt_one_plus_eps(z):
    """Why the ResNet above is compared with eps -> 0: with PyTorch's eps = 1e-5, zennit's
    canonizer folds each BatchNorm into its convolution and leaves it as x / sqrt(1 + eps),
    so the canonized network's scores are not the network's; minicnn's folded ones are."""
    import torch
    net, model = _resnet(1e-5)
    x = random_images((1, 3, 32, 32), 4)
    plain = net(torch.from_numpy(x)).detach().numpy()
    canonizer = z.torchvision.ResNetCanonizer()
    handles = canonizer.apply(net)
    try:
        canonized = net(torch.from_numpy(x)).detach().numpy()
        bn = net.bn1
        assert bn.running_var.eq(1).all() and bn.eps == 1e-5        # the identity it leaves
    finally:
        for handle in handles:
            handle.remove()
    np.testing.assert_allclose(model.forward(x), plain, rtol=1e-12, atol=1e-12)
    assert 1e-7 < np.abs(canonized - plain).max() / np.abs(plain).max() < 1e-3


@pytest.fixture(scope="module")
def shipped():
    from minicnn.io.weights import default_weights_path, load
    if not default_weights_path().is_file():
        pytest.skip("the shipped model is not there")
    return load().astype(np.float64)


def test_the_composites_on_the_shipped_model(z, shipped):
    import torch
    model = shipped
    net = torch_twin(model)
    x = random_images((2, 3, 64, 64), 5)
    targets = [int(c) for c in model.forward(x).argmax(1)]
    low, high = S.input_bounds(model)                  # pixels 0..1, normalised
    assert np.allclose(low, -2) and np.allclose(high, 2)
    lt, ht = (torch.from_numpy(v.reshape(1, 3, 1, 1)) for v in (low, high))
    cases = [("epsilon-plus", z.composites.EpsilonPlus()),
             ("epsilon-gamma-box", z.composites.EpsilonGammaBox(low=lt, high=ht)),
             ("epsilon-alpha2-beta1", z.composites.EpsilonAlpha2Beta1()),
             ("epsilon-plus-flat", z.composites.EpsilonPlusFlat()),
             ("gamma", zennit_layer_map(z.rules.Gamma(0.25)))]
    for name, composite in cases:
        want = zennit_relevance(net, x, targets, composite)
        got = S.lrp(model, x, targets, rule=name)         # bounds from the model's meta
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11 * np.abs(want).max(),
                                   err_msg=name)
