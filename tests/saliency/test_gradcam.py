"""minicnn.saliency.gradcam: Grad-CAM and guided Grad-CAM against Captum."""
import numpy as np
import pytest

import minicnn
from minicnn.saliency import default_cam_layer, grad_cam, guided_grad_cam
from tests.helpers.compare import assert_relative
from tests.helpers.nets import small_net
from tests.helpers.torch_twin import captum
from tests.saliency.conftest import TARGETS


def test_default_cam_layer_is_the_relu_after_the_last_conv():
    assert default_cam_layer(small_net()) == "4"
    model = minicnn.Sequential([minicnn.Conv2d(3, 2, 3), minicnn.MaxPool2d(2),
                                minicnn.Flatten(), minicnn.Linear(2, 2)])
    assert default_cam_layer(model) == "0"                 # no ReLU right after: the conv
    model = minicnn.Sequential([minicnn.Conv2d(3, 2, 3), minicnn.ReLU6(), minicnn.MaxPool2d(2),
                                minicnn.Flatten(), minicnn.Linear(2, 2)])
    assert default_cam_layer(model) == "1"                 # any activation counts (MobileNet)


@pytest.mark.parametrize("layer", [None, "1", 3, "5"])
def test_grad_cam_equals_captum_layer_grad_cam(net_and_x, twin, torch, captum_attr, layer):
    model, x = net_and_x
    index = model.index(default_cam_layer(model) if layer is None else layer)
    # Captum's LayerGradCam leaves the ReLU off by default: relu_attributions=True is Grad-CAM
    want = captum(captum_attr.LayerGradCam, twin, x, twin[index], target=TARGETS,
                  relu_attributions=True)
    got = grad_cam(model, x, TARGETS, layer=layer)
    assert_relative(got, want[:, 0])
    assert (got >= 0).all() and got.max() > 0
    up = grad_cam(model, x, TARGETS, layer=layer, upsample=True)
    want_up = captum_attr.LayerAttribution.interpolate(torch.from_numpy(want), (23, 23),
                                                       interpolate_mode="bilinear")
    assert_relative(up, want_up.numpy()[:, 0])


def test_guided_grad_cam_equals_captum_in_bilinear_mode(net_and_x, twin, captum_attr):
    model, x = net_and_x
    # Captum's GuidedGradCam upsamples with "nearest" unless told; ours is bilinear
    want = captum(captum_attr.GuidedGradCam, twin, x, twin[4], target=TARGETS,
                  interpolate_mode="bilinear")
    assert_relative(guided_grad_cam(model, x, TARGETS), want)


@pytest.mark.parametrize("call, message", [
    (lambda m, x: grad_cam(m, x, layer="features.9"),
     r"grad_cam: no layer 'features.9' in the model; layers are \['0', '1', "),
    (lambda m, x: grad_cam(m, x, layer=11), r"or an index 0..10\)"),
    (lambda m, x: grad_cam(m, x, layer="7"),
     r"grad_cam: layer '7' \(Linear\) has output shape \(4, 16\), not \(N, C, h, w\); "
     r"Grad-CAM needs a spatial layer, one of \['0', '1', '2', '3', '4', '5'\]"),
    (lambda m, x: guided_grad_cam(m, x, layer="6"), r"layer '6' \(Flatten\)"),
])
def test_bad_layers_name_the_valid_ones(net_and_x, call, message):
    model, x = net_and_x
    with pytest.raises(ValueError, match=message):
        call(model, x)


def test_no_conv_layer_for_grad_cam():
    model = minicnn.Sequential([minicnn.Flatten(), minicnn.Linear(12, 2)])
    with pytest.raises(ValueError, match="grad_cam: the model has no Conv2d layer to default to"):
        grad_cam(model, np.zeros((1, 3, 2, 2), np.float32))
