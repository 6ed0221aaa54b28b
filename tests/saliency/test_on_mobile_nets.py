"""Every attribution method on the blocks of the networks deployed on CPUs (MobileNet,
EfficientNet, ShuffleNet: depthwise and grouped convolutions, squeeze-and-excitation gates,
ReLU6 and Hardswish) against Captum on the same network in PyTorch, in float64.

Two small random networks, converted by ``minicnn.from_torch``: one whose rectifiers are ReLUs
(so that Captum's guided backprop and deconvnet, which hook torch.nn.ReLU only, mean what
minicnn's do), and one with MobileNetV3's ReLU6, Hardswish and Hardsigmoid, on which the
methods that do not depend on a backward rule are compared (guided backprop on ReLU6 is where
minicnn and Captum differ by design: tests/saliency/test_rules_on_activations.py)."""
import numpy as np
import pytest

import minicnn
from minicnn import saliency
from tests.helpers.compare import assert_relative
from tests.helpers.torch_twin import captum

TARGETS = [2, 0, 4]


def mobile_block_net(torch, rectifier, gate):
    """stem conv -> rectifier -> depthwise 3x3 stride 2 -> rectifier -> SE (pool, 1x1,
    ReLU, 1x1, gate, times the maps) -> pointwise 1x1 -> grouped 3x3 (3 groups) + the
    block's input (a residual) -> rectifier -> max-pool -> flatten -> linear: (N, 3, 15, 15)
    -> (N, 5)."""
    nn = torch.nn

    class SqueezeExcitation(nn.Module):
        def __init__(self, c, squeezed):
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.fc2 = nn.Conv2d(c, squeezed, 1), nn.Conv2d(squeezed, c, 1)
            self.activation, self.scale_activation = nn.ReLU(), gate()

        def forward(self, x):
            scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
            return scale * x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.act0 = nn.Conv2d(3, 6, 3, padding=1), rectifier()
            self.dw, self.act1 = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6), rectifier()
            self.se = SqueezeExcitation(6, 3)
            self.pw = nn.Conv2d(6, 9, 1)
            self.grouped = nn.Conv2d(9, 9, 3, padding=1, groups=3)
            self.act2 = rectifier()
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(9 * 4 * 4, 5)

        def forward(self, x):
            x = self.se(self.act1(self.dw(self.act0(self.stem(x)))))
            x = self.pw(x)
            x = self.act2(self.grouped(x) + x)
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    return Net().double().eval()


@pytest.fixture(scope="module", params=["relu", "mobilenet_v3"])
def nets(request, torch):
    nn = torch.nn
    rectifier, gate = ((nn.ReLU, nn.Sigmoid) if request.param == "relu" else
                       (nn.Hardswish, nn.Hardsigmoid))
    net = mobile_block_net(torch, rectifier, gate)
    model = minicnn.from_torch(net)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Mul", "Add", "Conv2d"} <= kinds
    assert [model[n].groups for n in model.find(minicnn.Conv2d)] == [1, 6, 1, 1, 1, 3]
    return request.param, model, net


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).normal(size=(3, 3, 15, 15))


@pytest.mark.parametrize("ours, theirs", [(saliency.gradient, "Saliency"),
                                          (saliency.input_x_gradient, "InputXGradient"),
                                          (saliency.guided_backprop, "GuidedBackprop"),
                                          (saliency.deconvnet, "Deconvolution")])
def test_one_backward_methods_equal_captum(nets, x, captum_attr, ours, theirs):
    kind, model, net = nets
    if kind != "relu" and theirs in ("GuidedBackprop", "Deconvolution"):
        pytest.skip("Captum applies these rules to torch.nn.ReLU only (the module docstring)")
    options = {"abs": False} if theirs == "Saliency" else {}
    want = captum(getattr(captum_attr, theirs), net, x, target=TARGETS, **options)
    assert_relative(ours(model, x, TARGETS), want, rtol=1e-9)


def test_grad_cam_and_guided_grad_cam_equal_captum(nets, x, captum_attr):
    kind, model, net = nets
    want = captum(captum_attr.LayerGradCam, net, x, net.act2, target=TARGETS,
                  relu_attributions=True)
    assert_relative(saliency.grad_cam(model, x, TARGETS, layer="act2"), want[:, 0], rtol=1e-9)
    if kind == "relu":
        guided = captum(captum_attr.GuidedGradCam, net, x, net.act2, target=TARGETS,
                        interpolate_mode="bilinear")
        assert_relative(saliency.guided_grad_cam(model, x, TARGETS, layer="act2"), guided,
                        rtol=1e-9)


def test_smoothgrad_integrated_gradients_and_occlusion_equal_captum(nets, x, torch,
                                                                    captum_attr):
    _, model, net = nets
    noise = np.random.default_rng(4).normal(0, 0.3, size=(4,) + x.shape)
    maps = np.stack([captum(captum_attr.Saliency, net, x + e, target=TARGETS, abs=False)
                     for e in noise])
    assert_relative(saliency.smoothgrad(model, x, TARGETS, noise=noise), maps.mean(0),
                    rtol=1e-9)
    want = captum(captum_attr.IntegratedGradients, net, x, target=TARGETS, n_steps=8,
                  method="gausslegendre", baselines=torch.zeros((1,) + x.shape[1:],
                                                                 dtype=torch.float64))
    assert_relative(saliency.integrated_gradients(model, x, TARGETS, steps=8), want, rtol=1e-7)
    want = captum(captum_attr.Occlusion, net, x, target=TARGETS,
                  sliding_window_shapes=(3, 4, 4), strides=(3, 3, 3))
    assert_relative(saliency.occlusion(model, x, TARGETS, window=4, stride=3), want, rtol=1e-6)
