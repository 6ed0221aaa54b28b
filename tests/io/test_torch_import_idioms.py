"""from_torch on what the mobile and branching torchvision networks use: grouped and dilated
convolutions, the newer activations as modules and as functions, Mul, padding, the spatial
mean, x.chunk, ShuffleNet's channel shuffle, StochasticDepth; each compared with torch in
scores and input gradient (float64), and the near misses refused by name.
(GoogLeNet's transform_input: tests/io/test_zoo_layouts.py.)"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from minicnn import from_torch  # noqa: E402

torch.set_num_threads(1)


def compare(net, x, grad_tolerance=1e-10):
    """Scores and d(score of a random class per image)/dx equal torch's (float64, so to
    rounding); returns the minicnn model."""
    net = net.double().eval()
    model = from_torch(net)
    xt = torch.tensor(x, requires_grad=True)
    want = net(xt)
    seed = np.zeros(tuple(want.shape))
    seed[np.arange(len(x)), np.random.default_rng(0).integers(0, want.shape[1], len(x))] = 1
    (want * torch.tensor(seed)).sum().backward()
    for got, expected, tolerance in ((model.forward(x), want.detach().numpy(), 1e-10),
                                     (model.backward(seed), xt.grad.numpy(), grad_tolerance)):
        assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()
    return model


def channel_shuffle(x, groups):
    """ShuffleNet V2's, as torchvision writes it."""
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class MobileBits(nn.Module):
    """A depthwise convolution with BatchNorm, a grouped dilated one with 'same' padding,
    the activations as modules and functions, a squeeze-and-excitation gate, padding,
    chunk, both channel shuffles, an average pool with options, the spatial mean."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.depthwise = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.relu6 = nn.ReLU6(inplace=True)
        self.pad = nn.ZeroPad2d((0, 1, 2, 0))
        self.dilated = nn.Conv2d(12, 12, 3, padding="same", dilation=2, groups=3)
        self.hardswish = nn.Hardswish()
        self.fc1, self.fc2, self.gate = nn.Conv2d(12, 4, 1), nn.Conv2d(4, 12, 1), nn.Hardsigmoid()
        self.pad0 = nn.ConstantPad2d(1, 0.0)
        self.silu, self.hardtanh = nn.SiLU(), nn.Hardtanh(-0.5, 2.0)
        self.shuffle, self.skip = nn.ChannelShuffle(3), nn.Identity()
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = self.relu6(self.bn(self.depthwise(self.conv(x))))           # (N, 12, 7, 6)
        x = self.hardswish(self.dilated(self.pad(x)))                    # (N, 12, 9, 7)
        s = F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))                # (N, 4, 1, 1)
        x = x * self.gate(self.fc2(s))                                   # (N, 12, 9, 7)
        x = self.hardtanh(self.silu(self.pad0(x)))                       # (N, 12, 11, 9)
        x = F.hardswish(F.silu(F.relu6(x))) + F.hardtanh(x, -1.0, 0.5)
        a, b, c = x.chunk(3, dim=1)                                      # 4 channels each
        x = torch.cat([channel_shuffle(torch.cat((a, b), 1), 2), self.skip(c)], 1)
        x = self.shuffle(torch.sigmoid(x) * F.hardsigmoid(x))
        x = F.avg_pool2d(F.pad(x, (1, 0, 0, 1)), 3, stride=2, padding=1, ceil_mode=True,
                         count_include_pad=False)                        # (N, 12, 6, 5)
        x = F.dropout(x, 0.2, training=False)
        return self.fc(x.mean([2, 3]))                                   # (N, 5)


def test_mobile_building_blocks_match_torch():
    torch.manual_seed(0)
    net = MobileBits()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    for N in (1, 2):  # torch's Hardsigmoid backward uses 1/6 in float32 even in float64
        model = compare(net, np.random.default_rng(N).normal(size=(N, 3, 13, 11)), 1e-7)
    kinds = {type(layer).__name__ for layer in model}
    assert {"ReLU6", "Hardswish", "SiLU", "Hardtanh", "Hardsigmoid", "Sigmoid", "Mul",
            "ZeroPad2d", "ChannelSlice", "ChannelShuffle", "AvgPool2d", "Dropout"} <= kinds
    assert "bn" not in model.names                          # folded into the depthwise conv
    assert model["depthwise"].groups == 12 and model["dilated"].dilation == (2, 2)
    assert model["dilated"].padding == (2, 2)
    assert [n for n in model.names if "chunk" in n] == ["chunk", "chunk.1", "chunk.2"]
    assert model["chunk.2"].config() == {"type": "ChannelSlice", "start": 8, "stop": 12}
    assert model["channel_shuffle"].groups == 2 and model["shuffle"].groups == 3
    assert model.names[-3:] == ["mean", "flatten", "fc"]
    assert model["hardtanh.1"].config() == {"type": "Hardtanh", "min_val": -1.0, "max_val": 0.5}


class UnevenChunks(nn.Module):
    """torch.chunk's parts: ceil(7 / 3) = 3 channels, the last one 1; the mean kept 4-D."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 7, 3)

    def forward(self, x):
        a, b, c = torch.chunk(self.conv(x), 3, 1)
        x = torch.cat([c, a * b, b], 1)
        return torch.flatten(x.mean((-1, -2), keepdim=True), 1)


def test_uneven_chunks_and_a_kept_dim():
    torch.manual_seed(1)
    model = compare(UnevenChunks(), np.random.default_rng(3).normal(size=(2, 2, 6, 5)))
    assert [model[n].config()["stop"] - model[n].config()["start"]
            for n in ("chunk", "chunk.1", "chunk.2")] == [3, 3, 1]
    assert model.names[-2:] == ["mean", "flatten"]


def test_stochastic_depth_is_the_identity(torch):
    from tests.helpers.torchvision_oracle import import_torchvision
    StochasticDepth = import_torchvision().ops.StochasticDepth
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), StochasticDepth(0.5, "row"), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 3))
    model = compare(net, np.random.default_rng(4).normal(size=(2, 3, 6, 6)))
    assert model.names == ["0", "2", "3"]


class Refused(nn.Module):
    def __init__(self, forward):
        super().__init__()
        self.conv, self.body = nn.Conv2d(3, 4, 1), forward

    def forward(self, x):
        return self.body(self.conv(x))


@pytest.mark.parametrize("body, message", [
    (lambda x: x.view(x.size(0), 2, -1), r"view to the shape \[.*, 2, -1\] \(only "
                                         r"x.view\(x.size\(0\), -1\) and ShuffleNet's"),
    (lambda x: x.view(x.size(0), 2, 2, x.size(2), x.size(3)).flatten(1),
     r"use of 'view', a step of a view, transpose, chunk or channel slice that is not one of "
     r"the recognised idioms"),
    (lambda x: x.chunk(2, dim=2)[0], r"chunk along dim=2 \(only the channel axis, 1\)"),
    (lambda x: x.mean(1), r"mean over dim=1 \(only the spatial axes, \[2, 3\]\)"),
    (lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"), r"F.pad with pad=\(1, 1, 1, 1\), "
                                                       r"mode='reflect'"),
    (lambda x: F.dropout(x, 0.5, training=True), r"F.dropout with training=True"),
    (lambda x: x * 2.0, r"multiplication \(only of two tensors"),
    (torch.tanh, r"unsupported function torch.tanh at the top-level forward"),
])
def test_near_misses_are_refused_by_name(body, message):
    with pytest.raises(ValueError, match=message):
        from_torch(Refused(body))


@pytest.mark.parametrize("module, message", [
    (nn.Sequential(nn.ZeroPad2d((-1, 0, 0, 0))), r"ZeroPad2d with the negative padding "
                                                 r"\(-1, 0, 0, 0\) \(a crop; only >= 0\) at '0'"),
    (nn.Sequential(nn.ConstantPad2d(1, 0.5)), r"unsupported module ConstantPad2d at '0'"),
    (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")),
     r"Conv2d with padding_mode='reflect' \(only 'zeros'\) at '0'"),
    (nn.Sequential(nn.Conv2d(3, 4, 3, padding="same", dilation=3, groups=1),
                   nn.Conv2d(4, 4, 2, padding="same")),
     r"padding='same' and the even kernel \(2, 2\) \(dilation \(1, 1\): asymmetric padding\) "
     r"at '1'"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU()), r"unsupported module GELU at '1'"),
])
def test_unsupported_modules_are_named(module, message):
    with pytest.raises(ValueError, match=message):
        from_torch(module)


def test_a_chunk_of_the_input_needs_its_channel_count():
    """Channel counts are known from the layers that made a value; the input's is not."""
    class ChunkInput(nn.Module):
        def forward(self, x):
            return torch.flatten(x.chunk(2, 1)[0], 1)
    with pytest.raises(ValueError, match=r"unsupported chunk of 'x', whose channel count is "
                                         r"not known here at the top-level forward"):
        from_torch(ChunkInput())
