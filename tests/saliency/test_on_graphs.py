"""Every attribution method on a residual network (a graph, not a chain) against Captum on the
same network in PyTorch, in float64: the ReLU rules reach every ReLU, including those inside
blocks and after the addition, and Grad-CAM works on a block's output by its name."""
import numpy as np
import pytest

import minicnn
from minicnn import saliency
from tests.helpers.compare import assert_relative
from tests.helpers.torch_twin import captum

TARGETS = [2, 0, 1]


@pytest.fixture(scope="module")
def nets(torch):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU()            # called twice, as in torchvision's blocks
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
            self.downsample = (nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out
                               else None)

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.conv2(self.relu(self.bn1(self.conv1(x))))
            out += identity
            return self.relu(out)

    class TinyResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.layer1 = nn.Sequential(Block(4, 4, 1), Block(4, 6, 2))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            x = self.layer1(self.relu(self.conv1(x)))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(0)
    net = TinyResNet().double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    model = minicnn.from_torch(net)
    assert isinstance(model, minicnn.Graph) and "layer1.1.relu.1" in model.names
    return model, net


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).normal(size=(3, 3, 10, 10))


@pytest.mark.parametrize("ours, theirs", [(saliency.gradient, "Saliency"),
                                          (saliency.guided_backprop, "GuidedBackprop"),
                                          (saliency.deconvnet, "Deconvolution"),
                                          (saliency.input_x_gradient, "InputXGradient")])
def test_gradient_methods_equal_captum(nets, x, captum_attr, ours, theirs):
    model, net = nets
    options = {"abs": False} if theirs == "Saliency" else {}
    want = captum(getattr(captum_attr, theirs), net, x, target=TARGETS, **options)
    assert_relative(ours(model, x, TARGETS), want, rtol=1e-9)


def test_guided_backprop_guides_the_relu_after_the_addition(nets, x):
    """Guided backprop differs from the gradient exactly because of the ReLU rule: switching
    one ReLU after an addition back to the plain gradient changes the map."""
    model, _ = nets
    guided = saliency.guided_backprop(model, x, TARGETS)
    assert not np.allclose(guided, saliency.gradient(model, x, TARGETS))
    relu = model["layer1.1.relu.1"]
    relu.backward = lambda g, rule="gradient": type(relu).backward(relu, g, "gradient")
    try:                                   # only this node now passes the plain gradient
        changed = saliency.guided_backprop(model, x, TARGETS)
    finally:
        del relu.backward
    assert not np.allclose(changed, guided)
    assert not np.allclose(changed, saliency.gradient(model, x, TARGETS))


@pytest.mark.parametrize("layer, module", [(None, "layer1"), ("layer1.0", "layer1.0"),
                                           ("layer1.1.conv2", "layer1.1.conv2")])
def test_grad_cam_on_blocks_and_nodes_equals_captum(nets, x, captum_attr, layer, module):
    model, net = nets
    assert saliency.default_cam_layer(model) == "layer1.1.relu.1"   # what avgpool reads
    target_module = net.get_submodule(module)
    want = captum(captum_attr.LayerGradCam, net, x, target_module, target=TARGETS,
                  relu_attributions=True)
    assert_relative(saliency.grad_cam(model, x, TARGETS, layer=layer), want[:, 0], rtol=1e-9)
    guided = captum(captum_attr.GuidedGradCam, net, x, target_module, target=TARGETS,
                    interpolate_mode="bilinear")
    assert_relative(saliency.guided_grad_cam(model, x, TARGETS, layer=layer), guided,
                    rtol=1e-9)


def test_smoothgrad_integrated_gradients_and_occlusion_equal_captum(nets, x, torch,
                                                                    captum_attr):
    model, net = nets
    noise = np.random.default_rng(2).normal(0, 0.3, size=(4, 3) + x.shape[1:])
    maps = np.stack([captum(captum_attr.Saliency, net, x + e, target=TARGETS, abs=False)
                     for e in noise])
    assert_relative(saliency.smoothgrad(model, x, TARGETS, noise=noise), maps.mean(0),
                    rtol=1e-9)
    want = captum(captum_attr.IntegratedGradients, net, x, target=TARGETS, n_steps=8,
                  method="gausslegendre", baselines=torch.zeros(1, 3, 10, 10, dtype=torch.float64))
    assert_relative(saliency.integrated_gradients(model, x, TARGETS, steps=8), want, rtol=1e-7)
    want = captum(captum_attr.Occlusion, net, x, target=TARGETS, sliding_window_shapes=(3, 4, 4),
                  strides=(3, 3, 3))
    assert_relative(saliency.occlusion(model, x, TARGETS, window=4, stride=3), want, rtol=1e-6)


def test_shared_passes_on_a_graph(nets, x):
    model, _ = nets
    names = ["gradient", "guided_backprop", "deconvnet", "grad_cam", "guided_grad_cam"]
    _, _, results = saliency.attribute(model, x, names, TARGETS)
    for name in names:
        np.testing.assert_allclose(results[name], saliency.METHODS[name](model, x, TARGETS),
                                   rtol=1e-12, atol=1e-15)
