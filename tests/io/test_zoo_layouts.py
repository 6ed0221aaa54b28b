"""minicnn.io.zoo's MobileNetV2/V3, EfficientNet-B0 and Lite0, DenseNet-121, GoogLeNet and
ShuffleNet V2 against torchvision's own model code (and, for Lite0, the plain-torch oracle):
the checkpoint's keys and shapes, from_torch giving the same nodes, and the same scores and
input gradients with random weights and random BatchNorm statistics.

Inputs are 1 x 3 x 64 x 64: every one of these networks accepts it (the smallest stage is
2 x 2), it is a 12th of the work of 224 x 224, and 64 is a multiple of 32, for which the Lite0
layout's fixed "same" padding is TensorFlow's (see minicnn.io.zoo.efficientnet).
"""
import copy
from functools import lru_cache

import numpy as np
import pytest

import minicnn
from minicnn.io import zoo
from minicnn.io.images import Preprocess
from minicnn.saliency import default_cam_layer, grad_cam

NEW = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
       "densenet121", "googlenet", "shufflenet_v2_x1_0")           # torchvision's classes
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def tv_like(torch):
    """tests.helpers.torchvision_like, and torchvision itself (skips without it)."""
    from tests.helpers import torchvision_like
    from tests.helpers.torchvision_oracle import import_torchvision
    import_torchvision()
    torch.set_num_threads(1)  # keep torch's thread pool out of the way of ours
    return torchvision_like


@lru_cache(maxsize=None)
def random_net(arch):
    """torchvision's `arch` with random weights and BatchNorm statistics, eval, float32."""
    from tests.helpers import torchvision_like
    return torchvision_like.build(arch, seed=7)


def state_of(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def scores_and_gradient(torch, net, x, c):
    """torch's scores for x and d(score_c)/dx."""
    xt = torch.from_numpy(x).requires_grad_(True)
    scores = net(xt)
    scores[0, c].backward()
    return scores.detach().numpy(), xt.grad.numpy()


def ours(model, x, c):
    scores = model.forward(x)
    seed = np.zeros_like(scores)
    seed[0, c] = 1
    return scores, model.backward(seed)


def relative(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


# --- the layout ------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", NEW)
def test_checkpoint_shapes_are_torchvisions_state_dict(tv_like, arch):
    net = random_net(arch)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == zoo.checkpoint_shapes(arch)


def test_lite0_checkpoint_shapes_are_the_files_modules(tv_like):
    """The file's own layout is checked against the real file in test_zoo_real.py."""
    net = random_net("efficientnet_lite0")
    shapes = zoo.checkpoint_shapes("efficientnet_lite0")
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes
    assert len(shapes) == 296 and shapes["_blocks.15._depthwise_conv.weight"] == (1152, 1, 3, 3)


@pytest.mark.parametrize("arch", NEW)
def test_from_torch_of_torchvisions_model_is_the_zoo_layout(tv_like, arch):
    """Same node names (the state_dict keys), in the same order, with the same layers: the
    zoo reproduces torchvision's forward, not only its weights."""
    model, layout = minicnn.from_torch(random_net(arch)), zoo.build(arch, init=False)
    assert model.names == layout.names
    assert model.config() == layout.config()
    assert model.inputs == layout.inputs


# float32: one library's rounding differs from the other's by ~1e-7 per operation; through
# these networks the scores agree to ~1e-6 of the largest (measured: <= 2e-6), hence 1e-4: a
# bound on rounding, which no CPU's summation order changes by a factor of 50. The input
# gradient is not compared in float32: it passes through rectifiers whose input may lie
# within rounding of a kink (0, or 6 for ReLU6) and max-pools whose window may hold two
# maxima within rounding, and which of those switch differently depends on the CPU (up to
# 2% of the gradient moved, on GoogLeNet's max-pools, on this one). float64, below, compares
# it exactly. A layout error (a padding, an eps, the order of two operations) moves the
# scores by 1e-3 to 1 (test_wrong_eps_is_seen).
F32_SCORES = 1e-4
# float64: the same function, up to summation order. MobileNetV3's Hardsigmoid is the
# exception: torch's CPU kernel multiplies its gradient by 1/6 rounded to float32 even in
# float64 (see minicnn's Hardsigmoid), which leaves ~1e-8 in each gate.
F64 = {"mobilenet_v3_small": 1e-6, "mobilenet_v3_large": 1e-6}


@pytest.mark.parametrize("arch", NEW)
def test_zoo_with_the_folded_checkpoint_and_from_torch_equal_torchvision(torch, tv_like, arch):
    net = random_net(arch)
    x, c = np.random.default_rng(1).normal(size=(1, 3, 64, 64)).astype(np.float32), 3
    want_scores, want_grad = scores_and_gradient(torch, net, x, c)
    model = zoo.build(arch, init=False)
    model.load_state_dict(tv_like.fold_checkpoint(state_of(net), arch))
    for built in (model, minicnn.from_torch(net)):
        scores, grad = ours(built, x, c)
        assert scores.dtype == grad.dtype == np.float32 and grad.shape == want_grad.shape
        assert relative(scores, want_scores) < F32_SCORES


@pytest.mark.parametrize("arch", NEW)
def test_float64_is_exact(torch, tv_like, arch):
    net = copy.deepcopy(random_net(arch)).double()
    x, c = np.random.default_rng(2).normal(size=(1, 3, 64, 64)), 11
    want_scores, want_grad = scores_and_gradient(torch, net, x, c)
    model = zoo.build(arch, init=False, dtype=np.float64)
    model.load_state_dict(tv_like.fold_checkpoint(state_of(net), arch, dtype=np.float64))
    scores, grad = ours(model, x, c)
    assert relative(scores, want_scores) < 1e-10
    assert relative(grad, want_grad) < F64.get(arch, 1e-9)


def test_wrong_eps_is_seen(torch, tv_like, monkeypatch):
    """MobileNetV3's BatchNorms have eps 1e-3. Where running variances are small, as trained
    networks have them in places, folding with torchvision's usual 1e-5 instead moves the
    scores far beyond the tolerances above."""
    net = copy.deepcopy(random_net("mobilenet_v3_small"))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):    # the same scales as before, mostly
                m.running_var.uniform_(1e-3, 1e-2)      # from the variance, less from eps
                m.weight.uniform_(0.5, 1.5).mul_((m.running_var + m.eps).sqrt())
    x = np.random.default_rng(3).normal(size=(1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    model = zoo.build("mobilenet_v3_small", init=False)
    model.load_state_dict(tv_like.fold_checkpoint(state_of(net), "mobilenet_v3_small"))
    assert relative(model.forward(x), want) < F32_SCORES
    monkeypatch.setattr(zoo, "batchnorm_eps", lambda arch: 1e-5)
    model.load_state_dict(tv_like.fold_checkpoint(state_of(net), "mobilenet_v3_small"))
    assert relative(model.forward(x), want) > 100 * F32_SCORES


# --- EfficientNet-Lite0 against the plain-torch oracle --------------------------------------

@pytest.mark.parametrize("dtype, size, tolerance", [
    (np.float32, 64, (F32_SCORES, None)), (np.float64, 64, (1e-10, 1e-9)),
    (np.float64, 96, (1e-10, 1e-9))])
def test_lite0_equals_the_oracle(torch, tv_like, dtype, size, tolerance):
    from tests.helpers.torchvision_oracle import efficientnet_lite0
    net = random_net("efficientnet_lite0")
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    state = {k: (v.to(torch_dtype) if v.is_floating_point() else v)
             for k, v in net.state_dict().items()}
    x, c = np.random.default_rng(4).normal(size=(1, 3, size, size)).astype(dtype), 5
    want_scores, want_grad = scores_and_gradient(torch, efficientnet_lite0(state), x, c)
    model = zoo.build("efficientnet_lite0", init=False, dtype=dtype)
    model.load_state_dict(tv_like.fold_checkpoint(state_of(net), "efficientnet_lite0", dtype=dtype))
    scores, grad = ours(model, x, c)
    assert relative(scores, want_scores) < tolerance[0]
    if tolerance[1] is not None:           # float64 (float32 gradients: see F32_SCORES)
        assert relative(grad, want_grad) < tolerance[1]


def test_lite0_padding_is_tensorflows_only_for_sides_that_are_multiples_of_32(torch, tv_like):
    """At 80 x 80 the last stride-2 convolution (5 x 5 kernel) reads 5 x 5 maps: TensorFlow
    pads them (2, 2), the fixed layout (1, 2); the scores differ, as documented."""
    from tests.helpers.torchvision_oracle import efficientnet_lite0
    net = random_net("efficientnet_lite0")
    x = np.random.default_rng(5).normal(size=(1, 3, 80, 80)).astype(np.float32)
    with torch.no_grad():
        want = efficientnet_lite0(net.state_dict())(torch.from_numpy(x)).numpy()
    model = zoo.build("efficientnet_lite0", init=False)
    model.load_state_dict(tv_like.fold_checkpoint(state_of(net), "efficientnet_lite0"))
    assert relative(model.forward(x), want) > 100 * F32_SCORES


# --- GoogLeNet's transform_input ------------------------------------------------------------

def test_googlenet_transform_input_as_preprocessing_and_as_a_node(torch, tv_like):
    """torchvision's pretrained GoogLeNet re-normalises its ImageNet-normalised input to mean
    = std = 0.5. The zoo's network is the one after that step, with the preprocessing in its
    meta; from_torch keeps the step as a 1x1 depthwise convolution. Both equal torch's on
    the same pixels."""
    net = copy.deepcopy(random_net("googlenet")).double()
    net.transform_input = True
    pixels = np.random.default_rng(6).uniform(size=(1, 3, 48, 48))
    imagenet = (pixels - MEAN[:, None, None]) / STD[:, None, None]
    with torch.no_grad():
        want = net(torch.from_numpy(imagenet)).numpy()

    prep = Preprocess.from_meta(zoo.ARCH_META["googlenet"])
    assert (prep.resize, prep.crop, prep.mean, prep.std) == (256, 224, (0.5,) * 3, (0.5,) * 3)
    model = zoo.build("googlenet", init=False, dtype=np.float64)
    model.load_state_dict(tv_like.fold_checkpoint(state_of(net), "googlenet", dtype=np.float64))
    assert relative(model.forward((pixels - 0.5) / 0.5), want) < 1e-10

    imported = minicnn.from_torch(net)
    assert imported.names == ["transform_input"] + model.names
    first = imported["transform_input"]
    np.testing.assert_allclose(first.weight.ravel(), STD / 0.5, rtol=1e-15)
    np.testing.assert_allclose(first.bias, (MEAN - 0.5) / 0.5, rtol=1e-14)
    assert relative(imported.forward(imagenet), want) < 1e-10


def test_googlenet_auxiliary_heads_are_in_the_checkpoint_only(tv_like):
    net = random_net("googlenet")
    aux = {k: tuple(v.shape) for k, v in net.state_dict().items() if k.startswith("aux")}
    assert zoo.unused_checkpoint_keys("googlenet") == aux and len(aux) == 2 * 10
    assert not any(k.startswith("aux") for k in zoo.model_shapes("googlenet"))
    assert zoo.unused_checkpoint_keys("mobilenet_v2") == {}


# --- DenseNet's published key names ---------------------------------------------------------

def test_densenet_old_key_names_are_renamed(tv_like):
    """densenet121-a639ec97.pth says norm.1 for norm1 (torchvision's loader renames them)."""
    keys = list(random_net("densenet121").state_dict())
    old = [k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.") for k in keys]
    assert "features.denseblock1.denselayer1.norm.1.running_var" in old
    state = dict.fromkeys(old, 0)
    assert list(zoo.rename_checkpoint_keys("densenet121", state)) == keys
    assert list(zoo.rename_checkpoint_keys("densenet121", dict.fromkeys(keys))) == keys
    assert list(zoo.rename_checkpoint_keys("resnet18", {"a.norm.1.weight": 0})) == \
        ["a.norm.1.weight"]


# --- what travels with the network ----------------------------------------------------------

CAM = {"mobilenet_v2": "features.18.2", "mobilenet_v3_small": "features.12.2",
       "mobilenet_v3_large": "features.16.2", "efficientnet_b0": "features.8.2",
       "efficientnet_lite0": "_relu6.1", "densenet121": "relu", "googlenet": "inception5b.cat",
       "shufflenet_v2_x1_0": "conv5.2"}


@pytest.mark.parametrize("arch", sorted(CAM))
def test_meta_names_the_last_block_and_a_valid_preprocessing(arch):
    model = zoo.build(arch, init=False)
    assert model.meta == zoo.ARCH_META[arch]
    layer = model.meta["cam_layer"]
    assert model.names[model.index(layer)] == CAM[arch]
    # the node the global average pool reads: what Grad-CAM would pick without the meta
    bare = minicnn.Graph(list(zip(model.names, model.layers, model.inputs)))
    assert bare.names[bare.index(default_cam_layer(bare))] == CAM[arch]
    if "preprocess" in model.meta:
        Preprocess.from_meta(model.meta)                       # raises if it is not valid


def test_lite0_preprocessing_is_pixel_minus_127_over_128():
    prep = Preprocess.from_meta(zoo.ARCH_META["efficientnet_lite0"])
    pixels = np.array([0.0, 127.0, 255.0]) / 255
    np.testing.assert_allclose((pixels - prep.mean[0]) / prep.std[0], [-127 / 128, 0, 1])


def test_grad_cam_runs_at_the_default_layer():
    model = zoo.build("mobilenet_v2", num_classes=10)
    x = np.random.default_rng(8).normal(size=(2, 3, 64, 64)).astype(np.float32)
    cam = grad_cam(model, x, target=np.array([1, 2]))
    assert cam.shape == (2, 2, 2) and np.isfinite(cam).all()


@pytest.mark.parametrize("arch", sorted(CAM))
def test_batchnorm_eps_and_pairs(arch):
    eps = {"mobilenet_v3_small": 1e-3, "mobilenet_v3_large": 1e-3, "googlenet": 1e-3,
           "efficientnet_lite0": 1e-3}.get(arch, 1e-5)
    assert zoo.batchnorm_eps(arch) == eps
    model, pairs = zoo.build(arch, init=False), zoo.batchnorm_pairs(arch)
    assert all(isinstance(model[conv], minicnn.Conv2d) for conv, _ in pairs)
    shapes = zoo.checkpoint_shapes(arch)
    assert all(f"{bn}.running_var" in shapes and bn not in model.names for _, bn in pairs)
    left = model.find(minicnn.BatchNorm2d)           # only DenseNet's read a concatenation
    assert all(layer.eps == eps for layer in (model[n] for n in left))
    assert bool(left) == (arch == "densenet121")


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown architecture 'mobilenet_v4'; choose one of "
                                         r"vgg11, .*, shufflenet_v2_x1_0"):
        zoo.build("mobilenet_v4")
