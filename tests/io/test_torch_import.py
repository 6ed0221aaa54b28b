"""from_torch end to end: random torch.nn nets -> minicnn -> same scores and same saliency
gradient d(score_c)/d(input) as PyTorch autograd; unsupported modules named; BatchNorm folding."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import minicnn  # noqa: E402
from minicnn import from_torch, fold_batchnorm  # noqa: E402

torch.set_num_threads(1)  # keep torch's thread pool out of BLAS's way
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}  # relative to the largest magnitude


def random_features(rng, C, H, W):
    """A random stack of conv / pool / relu that keeps the spatial size >= 1."""
    layers = []
    for _ in range(int(rng.integers(2, 5))):
        kind = rng.choice(["conv", "conv", "maxpool", "avgpool"])
        if kind == "conv":
            k = tuple(int(v) for v in rng.integers(1, 4, 2))
            p = tuple(int(v) for v in rng.integers(0, 2, 2))
            s = tuple(int(v) for v in rng.integers(1, 3, 2))
        else:
            k = (int(rng.integers(1, 4)),) * 2
            s, p = (int(rng.integers(1, 3)),) * 2, (int(rng.integers(0, k[0] // 2 + 1)),) * 2
        if H + 2 * p[0] < k[0] or W + 2 * p[1] < k[1]:
            continue
        if kind == "conv":
            F = int(rng.integers(2, 6))
            layers += [nn.Conv2d(C, F, k, s, p, bias=bool(rng.random() < 0.8)),
                       nn.ReLU(inplace=bool(rng.random() < 0.5))]
            C = F
        else:
            layers.append(nn.MaxPool2d(k, s, p) if kind == "maxpool" else nn.AvgPool2d(k, s, p))
        H, W = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    return layers, C, H, W


def random_net(rng):
    C, H, W = int(rng.integers(1, 4)), int(rng.integers(5, 14)), int(rng.integers(5, 14))
    layers, C2, H2, W2 = random_features(rng, C, H, W)
    if rng.random() < 0.4:
        OH, OW = (int(v) for v in rng.integers(1, 5, 2))
        layers.append(nn.AdaptiveAvgPool2d((OH, OW)))
        H2, W2 = OH, OW
    head = [nn.Flatten(), nn.Linear(C2 * H2 * W2, 7), nn.ReLU(), nn.Dropout(0.3), nn.Linear(7, 5)]
    if rng.random() < 0.5 and len(layers) >= 2:  # nested Sequentials: names become "0.1" etc.
        net = nn.Sequential(nn.Sequential(*layers[:2]), *layers[2:], nn.Sequential(*head))
    else:
        net = nn.Sequential(*layers, *head)
    return net, (C, H, W)


def compare(net, x_np, rng):
    """Scores and d(score_c)/dx (one-hot on a random class per image) vs torch autograd."""
    net.eval()
    dtype = next(net.parameters()).dtype
    model = from_torch(net)
    kept = {k for k in net.state_dict() if "num_batches" not in k    # a folded BN disappears
            and not (_is_bn(net, k) and k.rsplit(".", 1)[0] not in model.names)}
    assert kept <= set(model.state_dict())
    assert all(k.endswith(".bias") for k in set(model.state_dict()) - kept)  # folded conv bias
    scores = model(x_np)
    x = torch.tensor(x_np, requires_grad=True)
    scores_t = net(x)
    one_hot = np.zeros_like(scores)
    one_hot[np.arange(len(scores)), rng.integers(0, scores.shape[1], len(scores))] = 1.0
    (scores_t * torch.tensor(one_hot)).sum().backward()
    grad = model.backward(one_hot)
    for ours, theirs, what in [(scores, scores_t.detach().numpy(), "scores"),
                               (grad, x.grad.numpy(), "input gradient")]:
        assert ours.dtype == theirs.dtype
        scale = max(float(np.abs(theirs).max()), 1e-30)
        err = float(np.abs(ours - theirs).max())
        assert err <= TOL[dtype] * scale, f"{what}: error {err:.3g}, scale {scale:.3g}\n{net}"
    return model


def _is_bn(net, key):
    module = dict(net.named_modules()).get(key.rsplit(".", 1)[0])
    return isinstance(module, nn.BatchNorm2d)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_random_sequential_nets_match_torch(dtype):
    rng = np.random.default_rng(10 if dtype == torch.float64 else 11)
    torch.manual_seed(0)
    for _ in range(25):
        net, (C, H, W) = random_net(rng)
        net = net.to(dtype)
        for N in (1, 3):
            x = rng.standard_normal((N, C, H, W)).astype(np.float64 if dtype == torch.float64 else np.float32)
            compare(net, x, rng)


def test_random_net_on_reference_kernels():
    rng = np.random.default_rng(12)
    net, (C, H, W) = random_net(rng)
    with minicnn.use_kernels("reference"):
        compare(net.double(), rng.standard_normal((2, C, H, W)), rng)


class TinyVGG(nn.Module):
    """torchvision's VGG at a small scale: features, avgpool, flatten, classifier."""

    def __init__(self, batchnorm=False):
        super().__init__()
        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1)] + ([nn.BatchNorm2d(c_out)] if batchnorm else []) + [nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*block(3, 4), nn.MaxPool2d(2, 2), *block(4, 6), *block(6, 6),
                                      nn.MaxPool2d(2, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(6 * 7 * 7, 16), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(16, 16), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(16, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size", [(32, 32), (19, 23), (8, 8)])  # 8x8 -> 2x2: adaptive upsampling
def test_vgg_shaped_module(dtype, size):
    rng = np.random.default_rng(13)
    torch.manual_seed(1)
    net = TinyVGG().to(dtype)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    for N in (1, 3):
        model = compare(net, rng.standard_normal((N, 3) + size).astype(np_dtype), rng)
    assert model.names[-9:] == ["avgpool", "flatten"] + [f"classifier.{i}" for i in range(7)]
    assert model.find(minicnn.Conv2d) == ["features.0", "features.3", "features.5"]
    assert all(layer.weight.dtype == np_dtype for layer in model if hasattr(layer, "weight"))


def test_vgg_bn_is_folded():
    rng = np.random.default_rng(14)
    torch.manual_seed(2)
    net = TinyVGG(batchnorm=True).double()
    for m in net.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model = compare(net, rng.standard_normal((2, 3, 16, 16)), rng)
    assert "features.1" not in model.names  # the BatchNorm disappeared into features.0


def test_fold_batchnorm_is_exact_in_float64():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, padding=1).double()
    bn = nn.BatchNorm2d(5, eps=1e-3).double()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.2, 3)
    bn.weight.data.uniform_(-2, 2)
    bn.bias.data.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    expected = bn(conv(x)).detach().numpy()
    as_np = lambda t: t.detach().numpy()
    w, b = fold_batchnorm(as_np(conv.weight), as_np(conv.bias), as_np(bn.weight), as_np(bn.bias),
                          as_np(bn.running_mean), as_np(bn.running_var), bn.eps)
    layer = minicnn.Conv2d(3, 5, 3, padding=1, dtype=np.float64)
    layer.weight, layer.bias = w, b
    np.testing.assert_allclose(layer.forward(x.numpy()), expected, rtol=1e-12, atol=1e-13)
    # no conv bias and a non-affine BatchNorm
    w2, b2 = fold_batchnorm(as_np(conv.weight), None, None, None, as_np(bn.running_mean),
                            as_np(bn.running_var), 1e-5)
    s = 1 / np.sqrt(as_np(bn.running_var) + 1e-5)
    np.testing.assert_allclose(b2, -as_np(bn.running_mean) * s, rtol=1e-15)
    np.testing.assert_allclose(w2, as_np(conv.weight) * s[:, None, None, None], rtol=1e-15)


@pytest.mark.parametrize("module, message", [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.GELU())),
     r"unsupported module GELU at '1.1'; supported: modules Conv2d"),
    (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")),
     r"padding_mode='reflect' \(only 'zeros'\) at '0'"),
    (nn.Sequential(nn.Conv2d(3, 4, 2, padding="same")), r"padding='same' and the even kernel"),
    (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), r"return_indices=True"),
    (nn.Sequential(nn.MaxPool2d(3, dilation=2)), r"MaxPool2d with dilation=2, .* at '0'"),
    (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), r"divisor_override=3"),
    (nn.Sequential(nn.AdaptiveAvgPool2d((None, 3))), r"AdaptiveAvgPool2d\(output_size=\(None, 3\)\) .* at '0'"),
    (nn.Sequential(nn.Flatten(0)), r"Flatten\(start_dim=0, end_dim=-1\) \(only 1, -1\) at '0'"),
    (nn.Linear(3, 4), r"unsupported use of the parameter or buffer 'weight' outside a module "
                      r"call at the top-level forward"),
])
def test_unsupported_modules_are_named(module, message):
    with pytest.raises(ValueError, match=message):
        from_torch(module)


class Tanhed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.tanh(self.conv(x)).mean((2, 3))


class Aliasing(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(3, 3, 1), nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.conv(x)
        return torch.flatten(self.relu(y) + y, 1)


def test_unsupported_functions_name_the_function_and_the_line():
    with pytest.raises(ValueError, match=r"unsupported function torch.tanh at the top-level "
                                         r"forward \(.*test_torch_import.py:\d+: return "
                                         r"torch.tanh\(self.conv\(x\)\)"):
        from_torch(Tanhed())
    with pytest.raises(ValueError, match=r"in-place operation on 'conv', which \['add'\] read too"):
        from_torch(Aliasing())
    with pytest.raises(TypeError, match=r"from_torch: expected a torch.nn.Module, got list"):
        from_torch([nn.ReLU()])


def test_batchnorm_not_after_a_conv_is_a_layer_and_ceil_mode_pools_convert():
    torch.manual_seed(5)
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3), nn.MaxPool2d(2, ceil_mode=True),
                        nn.Flatten(), nn.Linear(3 * 3 * 3, 2)).double().eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    model = compare(net, np.random.default_rng(19).standard_normal((2, 3, 5, 5)),
                    np.random.default_rng(20))
    assert [type(layer).__name__ for layer in model][1:3] == ["BatchNorm2d", "MaxPool2d"]


def test_same_and_valid_padding_and_float64_dtype_kept():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding="same"), nn.Conv2d(3, 3, (1, 3), padding="valid"),
                        nn.Flatten(), nn.Linear(3 * 5 * 3, 2)).double()
    compare(net, np.random.default_rng(15).standard_normal((1, 2, 5, 5)), np.random.default_rng(16))
    with pytest.raises(TypeError, match=r"parameters must all be float32 or all float64"):
        from_torch(nn.Sequential(nn.Linear(2, 2)).half())


def test_module_used_twice_is_imported_at_both_positions():
    """named_children() would skip the second use of the shared ReLU (and of the shared conv)."""
    torch.manual_seed(4)
    relu, conv = nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1)
    net = nn.Sequential(conv, relu, conv, relu, nn.Flatten(), nn.Linear(3 * 6 * 6, 2)).double()
    model = compare(net, np.random.default_rng(17).standard_normal((2, 3, 6, 6)), np.random.default_rng(18))
    assert model.names == ["0", "1", "2", "3", "4", "5"]
