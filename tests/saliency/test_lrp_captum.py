"""LRP against Captum's (captum.attr.LRP), float64, where both define the same quantity.

Captum's LRP gives every layer with a rule its EpsilonRule by default, with epsilon 1e-9 (not
zennit's 1e-6), BatchNorm2d included (not folded: minicnn's own rule for a BatchNorm that
follows no convolution is the same), additions through its Addition_Module in proportion to
each input (minicnn's Add), average pools by the epsilon rule, max-pools by the epsilon rule
on the max-pool's gradient: winner takes all, times x / (x + 1e-9). Its GammaRule and
Alpha1_Beta0_Rule are the same quantities as minicnn's (zennit's) Gamma and ZPlus where
biases are zero and inputs are >= 0 (after a ReLU): Captum modifies the weights and keeps the
bias as it is, and has no branch for outputs with z < 0.
"""
import numpy as np
import pytest

import minicnn
from minicnn import saliency as S
from tests.helpers.relevance import random_images


def _torch_net(torch, zero_biases=False):
    """conv/ReLU/max-pool, conv/BatchNorm/ReLU, a residual Addition_Module, conv/ReLU, a
    global average pool, two dense layers: every layer Captum's LRP has a rule for."""
    from captum.attr._utils.custom_modules import Addition_Module
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.relu1, self.pool1 = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), \
                nn.MaxPool2d(2)
            self.conv2, self.bn2, self.relu2 = nn.Conv2d(6, 6, 3, padding=1), \
                nn.BatchNorm2d(6), nn.ReLU()
            self.add = Addition_Module()
            self.conv3, self.relu3, self.pool3 = nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), \
                nn.AdaptiveAvgPool2d(2)
            self.fc1, self.relu4, self.fc2 = nn.Linear(32, 10), nn.ReLU(), nn.Linear(10, 4)

        def forward(self, x):
            a = self.pool1(self.relu1(self.conv1(x)))
            b = self.relu2(self.bn2(self.conv2(a)))
            h = self.pool3(self.relu3(self.conv3(self.add(a, b))))
            return self.fc2(self.relu4(self.fc1(torch.flatten(h, 1))))

    torch.manual_seed(0)
    net = Net().double()
    with torch.no_grad():
        net.bn2.running_mean.copy_(torch.randn(6, dtype=torch.float64) * 0.2)
        net.bn2.running_var.copy_(torch.rand(6, dtype=torch.float64) + 0.5)
        net.bn2.weight.copy_(torch.rand(6, dtype=torch.float64) + 0.5)
        net.bn2.bias.copy_(torch.randn(6, dtype=torch.float64) * 0.2)
        if zero_biases:
            for m in (net.conv1, net.conv2, net.conv3, net.fc1, net.fc2):
                m.bias.zero_()
    return net.eval()


def _minicnn_twin(net):
    """The same network as a minicnn Graph, weights copied (the BatchNorm kept as a layer)."""
    nodes = [("conv1", minicnn.Conv2d(3, 6, 3, padding=1), "input"),
             ("relu1", minicnn.ReLU(), "conv1"), ("pool1", minicnn.MaxPool2d(2), "relu1"),
             ("conv2", minicnn.Conv2d(6, 6, 3, padding=1), "pool1"),
             ("bn2", minicnn.BatchNorm2d(6), "conv2"), ("relu2", minicnn.ReLU(), "bn2"),
             ("add", minicnn.Add(), ("pool1", "relu2")),
             ("conv3", minicnn.Conv2d(6, 8, 3, padding=1), "add"),
             ("relu3", minicnn.ReLU(), "conv3"), ("pool3", minicnn.AdaptiveAvgPool2d(2), "relu3"),
             ("flatten", minicnn.Flatten(), "pool3"), ("fc1", minicnn.Linear(32, 10), "flatten"),
             ("relu4", minicnn.ReLU(), "fc1"), ("fc2", minicnn.Linear(10, 4), "relu4")]
    model = minicnn.Graph(nodes).astype(np.float64)
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    return model.load_state_dict(state)


def _captum_lrp(captum_attr, net, x, targets, **rules):
    import torch
    for name, rule in rules.items():
        getattr(net, name).rule = rule
    try:
        out = captum_attr.LRP(net).attribute(torch.from_numpy(x.copy()), target=targets)
    finally:
        for name in rules:                      # Captum removes them itself when it succeeds
            if hasattr(getattr(net, name), "rule"):
                del getattr(net, name).rule
    return out.detach().numpy()


def test_captums_default_epsilon_rule_with_additions_batchnorm_and_pools(torch, captum_attr):
    net = _torch_net(torch)
    model, x = _minicnn_twin(net), random_images((3, 3, 12, 12), 1)
    targets = [0, 3, 1]
    np.testing.assert_allclose(model.forward(x), net(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12)
    want = _captum_lrp(captum_attr, net, x, targets)
    rule = {"Conv2d": S.Epsilon(1e-9), "Linear": S.Epsilon(1e-9), "Add": S.Epsilon(1e-9),
            "BatchNorm2d": S.Epsilon(1e-9), "AdaptiveAvgPool2d": S.Epsilon(1e-9)}
    got = S.lrp(model, x, targets, rule=rule)
    # Captum's max-pool multiplies its winners' relevance by x / (x + 1e-9): 1 - 1e-6 where a
    # pooled value is 1e-3, so elements that small agree to 1e-7 of the largest only
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7 * np.abs(want).max())
    ledger = S.lrp_ledger(model, x, targets, rule=rule)[1]
    bn = next(e for e in ledger if e["name"] == "bn2")
    assert np.all(np.abs(bn["batchnorm"]) > 1e-6)          # its shift took its share


def test_captums_gamma_and_alpha1_beta0_rules_where_biases_are_zero(torch, captum_attr):
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule
    net = _torch_net(torch, zero_biases=True)
    model, x = _minicnn_twin(net), random_images((2, 3, 12, 12), 2)
    targets = [2, 1]
    rest = {"conv1": S.Epsilon(1e-9), "conv2": S.Epsilon(1e-9), "fc2": S.Epsilon(1e-9),
            "Add": S.Epsilon(1e-9), "BatchNorm2d": S.Epsilon(1e-9),
            "AdaptiveAvgPool2d": S.Epsilon(1e-9)}
    for captum_rule, rule in [(GammaRule(gamma=0.25), S.Gamma(0.25, stabilizer=1e-9)),
                              (Alpha1_Beta0_Rule(), S.ZPlus(stabilizer=1e-9))]:
        want = _captum_lrp(captum_attr, net, x, targets, conv3=captum_rule,
                           fc1=type(captum_rule)(**({"gamma": 0.25}
                                                    if isinstance(captum_rule, GammaRule)
                                                    else {})),
                           conv1=EpsilonRule(), conv2=EpsilonRule())
        got = S.lrp(model, x, targets, rule={**rest, "conv3": rule, "fc1": rule})
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * np.abs(want).max(),
                                   err_msg=type(captum_rule).__name__)


def test_captums_convergence_delta_is_the_ledgers_total(torch, captum_attr):
    """Captum's delta (score - sum of the input's relevance) is what minicnn's ledger says
    the biases, the stabiliser and the BatchNorm absorbed on the way."""
    net = _torch_net(torch)
    model, x = _minicnn_twin(net), random_images((2, 3, 12, 12), 3)
    _, delta = captum_attr.LRP(net).attribute(torch.from_numpy(x.copy()), target=[1, 2],
                                              return_convergence_delta=True)
    rule = {"Conv2d": S.Epsilon(1e-9), "Linear": S.Epsilon(1e-9), "Add": S.Epsilon(1e-9),
            "BatchNorm2d": S.Epsilon(1e-9), "AdaptiveAvgPool2d": S.Epsilon(1e-9)}
    relevance, ledger = S.lrp_ledger(model, x, [1, 2], rule=rule)
    absorbed = sum(e[k] for e in ledger[:-1] for k in ("bias", "stabiliser", "batchnorm",
                                                        "residual"))
    np.testing.assert_allclose(absorbed, delta.detach().numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ledger[0]["relevance_out"] - relevance.sum(axis=(1, 2, 3)),
                               absorbed, rtol=1e-9, atol=1e-12)


@pytest.fixture(autouse=True)
def _quiet():
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        yield
