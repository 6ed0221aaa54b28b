"""torchvision checkpoints (VGG, AlexNet, ResNet, SqueezeNet) -> minicnn, compared with torch
at 224 x 224; BatchNorm folding exact in float64; bad checkpoints named key by key; no torch
needed to convert, and a malicious checkpoint refused in one line."""
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn.io import zoo
from minicnn.saliency import one_hot
from minicnn.cli import main
from minicnn.io.convert import ConversionError, convert_checkpoint, fold_state_dict
from minicnn.io.images import Preprocess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def torchvision_like(torch):
    """The torchvision-shaped builders (they need torch; the test is skipped without it)."""
    from tests.helpers import torchvision_like
    return torchvision_like


def relative_error(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("arch", zoo.ARCHITECTURES)
def test_converted_checkpoint_matches_torch(torch, torchvision_like, arch, tmp_path):
    net = torchvision_like.build(arch)
    ckpt = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), ckpt)
    expected_keys = zoo.checkpoint_shapes(arch)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected_keys
    out = tmp_path / f"{arch}.npz"
    assert main(["convert", str(ckpt), "--arch", arch, "-o", str(out)]) == 0   # the CLI
    del net
    net = torchvision_like.build(arch)            # same seed: same weights, fresh module
    model = minicnn.load(out)
    assert model.meta["class_names"][0] == "tench" and model.meta["preprocess"]["crop"] == 224
    # torchvision's EfficientNet-B0 weights were trained on bicubic resizing, the rest bilinear
    assert Preprocess.from_meta(model.meta).resample == \
        ("bicubic" if arch == "efficientnet_b0" else "bilinear")

    x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        scores_t = net(torch.from_numpy(x))
    c = int(scores_t.argmax())
    assert relative_error(model.forward(x), scores_t.numpy()) < 1e-4
    # The input gradient is compared in float64 only: in float32 a ReLU input or max-pool
    # gap within rounding (~1e-6 of the largest activation) can switch differently in the two
    # libraries, and which ones do depends on the CPU. Here for the networks without
    # BatchNorm (the same float32 weights, computed in float64: exact); for the others in
    # test_batchnorm_fold_is_exact_in_float64 and tests/io/test_zoo_layouts.py.
    if not zoo.batchnorm_pairs(arch):
        net64, model64 = net.double(), model.astype(np.float64)
        x64 = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        net64(x64)[0, c].backward()
        model64.forward(x.astype(np.float64))
        grad64 = model64.backward(one_hot(np.array([c]), 1000, np.float64))
        assert relative_error(grad64, x64.grad.numpy()) < 1e-9


@pytest.mark.parametrize("arch", ["vgg11_bn", "resnet18", "resnet50"])
def test_batchnorm_fold_is_exact_in_float64(torch, torchvision_like, arch):
    net = torchvision_like.build(arch).double()
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    model = zoo.build(arch, init=False, dtype=np.float64)
    model.load_state_dict(fold_state_dict(state, arch, dtype=np.float64))
    x = np.random.default_rng(1).normal(size=(2, 3, 40, 40))
    xt = torch.from_numpy(x).requires_grad_(True)
    want = net(xt)
    want[[0, 1], [3, 7]].sum().backward()
    got = model.forward(x)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10,
                               atol=1e-12 * float(want.detach().abs().max()))
    seed = np.zeros_like(got)
    seed[[0, 1], [3, 7]] = 1
    grad = model.backward(seed)
    assert relative_error(grad, xt.grad.numpy()) < 1e-9


def test_old_checkpoints_without_num_batches_tracked_convert(torch, torchvision_like, tmp_path):
    net = torchvision_like.build("resnet18")
    state = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "old.pth")
    model = minicnn.load(convert_checkpoint(tmp_path / "old.pth", "resnet18", tmp_path / "o.npz"))
    assert model.meta["cam_layer"] == "layer4"
    x = np.random.default_rng(3).normal(size=(1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert relative_error(model.forward(x), want) < 1e-5


def test_resnet50_v2_weights_get_their_resize(torch, torchvision_like, tmp_path):
    state = torchvision_like.build("resnet50").state_dict()
    torch.save(state, tmp_path / "resnet50-11ad3fa6.pth")          # torchvision's V2 file name
    out = convert_checkpoint(tmp_path / "resnet50-11ad3fa6.pth", "resnet50", tmp_path / "r.npz")
    assert minicnn.load(out).meta["preprocess"]["resize"] == 232


def test_from_torch_works_on_the_module_directly(torch, torchvision_like):
    net = torchvision_like.build("alexnet", num_classes=10).double()
    model = minicnn.from_torch(net)
    assert model.names == zoo.build("alexnet", 10).names     # same layout as minicnn.io.zoo
    x = np.random.default_rng(2).normal(size=(1, 3, 100, 100))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def small_checkpoint(torchvision_like, tmp_path_factory):
    """A real vgg11 state dict, as numpy, for editing into bad checkpoints."""
    net = torchvision_like.build("vgg11")
    return dict(net.state_dict()), tmp_path_factory.mktemp("ckpt")


@pytest.mark.parametrize("edit, message", [
    (lambda s, torch: s.pop("classifier.6.bias"), r"missing key 'classifier\.6\.bias' for vgg11"),
    (lambda s, torch: s.update({"features.99.weight": torch.zeros(3)}),
     r"unexpected key 'features\.99\.weight'"),
    (lambda s, torch: s.update({"features.0.weight": torch.zeros(64, 3, 5, 5)}),
     r"'features\.0\.weight' has shape \(64, 3, 5, 5\), vgg11 expects \(64, 3, 3, 3\)"),
    (lambda s, torch: s.update({"features.3.weight": s["features.3.weight"].index_put(
        (torch.tensor([1]), torch.tensor([2]), torch.tensor([0]), torch.tensor([1])),
        torch.tensor(float("nan")))}),
     r"'features\.3\.weight' contains NaN or inf \(first at index \(1, 2, 0, 1\): nan\); "
     r"refusing to convert it"),
    (lambda s, torch: s.update({"classifier.6.bias": torch.full((1000,), float("inf"))}),
     r"'classifier\.6\.bias' contains NaN or inf \(first at index \(0,\): inf\)"),
])
def test_bad_keys_are_named(torch, small_checkpoint, edit, message):
    state, folder = small_checkpoint
    state = dict(state)
    edit(state, torch)
    path = folder / "edited.pth"
    torch.save(state, path)
    with pytest.raises(ConversionError, match=r"edited\.pth: " + message):
        convert_checkpoint(path, "vgg11", folder / "out.npz")
    assert not (folder / "out.npz").exists()


def test_vgg16_checkpoint_is_not_vgg11(torch, small_checkpoint):
    state, folder = small_checkpoint
    torch.save(state, folder / "v11.pth")
    with pytest.raises(ConversionError, match=r"v11\.pth: missing key 'features\.\d+\.weight' for vgg16"):
        convert_checkpoint(folder / "v11.pth", "vgg16", folder / "out.npz")


class RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("payload, message", [
    (RunsCode(), "refused the global 'builtins.print'"),
    ([1, 2, 3], r"not a state dict \(a dict of tensors by name\); got list"),
])
def test_pickles_with_code_and_non_state_dicts_are_refused(torch, tmp_path, payload, message,
                                                           capsys):
    path = tmp_path / "bad.pth"
    if isinstance(payload, RunsCode):
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(ConversionError, match=rf"bad\.pth: {message}"):
        convert_checkpoint(path, "alexnet", tmp_path / "out.npz")
    assert "this must never run" not in capsys.readouterr().out


class Exploit:
    """Reduces to os.system (posix.system on Linux): unpickling it would create `marker`."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("form", ["pickle", "zip"])
def test_cli_refuses_a_malicious_checkpoint_in_one_line(tmp_path, form):
    """Before, torch.load printed its UserWarning lines before convert's own message."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Exploit(marker), protocol=2)
    if form == "zip":                              # the pickle as a zip checkpoint's data.pkl
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("evil/data.pkl", payload)
            archive.writestr("evil/version", "3\n")
        payload = out.getvalue()
    (tmp_path / "evil.pth").write_bytes(payload)
    done = subprocess.run([sys.executable, "-m", "minicnn", "convert", "evil.pth", "--arch",
                           "resnet18", "-o", "out.npz"], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert done.returncode == 2
    assert done.stderr == (f"minicnn: error: evil.pth: refused the global "
                           f"'{os.system.__module__}.system': a checkpoint may name only "
                           f"tensors, storages and collections.OrderedDict, and anything else "
                           f"could run code\n")
    assert not marker.exists() and not (tmp_path / "out.npz").exists()


def test_convert_needs_no_torch(torch, torchvision_like, tmp_path):
    """The checkpoint is made with torch; a Python in which importing torch fails converts it."""
    net = torchvision_like.build("squeezenet1_1")
    torch.save(net.state_dict(), tmp_path / "sq.pth")
    code = ("import sys\n"
            "sys.modules['torch'] = None              # import torch raises ImportError\n"
            "from minicnn.io.convert import convert_checkpoint\n"
            f"convert_checkpoint({str(tmp_path / 'sq.pth')!r}, 'squeezenet1_1', "
            f"{str(tmp_path / 'sq.npz')!r})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    state = minicnn.load(tmp_path / "sq.npz").state_dict()
    for key, value in net.state_dict().items():          # no BatchNorm: copied as they are
        np.testing.assert_array_equal(state[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("legacy, wrapper", [(True, None), (False, "model"),
                                             (True, "state_dict")])
def test_legacy_and_wrapped_checkpoints_convert_alike(torch, torchvision_like, tmp_path, legacy,
                                                      wrapper):
    state = torchvision_like.build("resnet18").state_dict()
    torch.save(state, tmp_path / "plain.pth")
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 90}, tmp_path / "other.pth",
               _use_new_zipfile_serialization=not legacy)
    plain = minicnn.load(convert_checkpoint(tmp_path / "plain.pth", "resnet18",
                                            tmp_path / "plain.npz")).state_dict()
    other = minicnn.load(convert_checkpoint(tmp_path / "other.pth", "resnet18",
                                            tmp_path / "other.npz")).state_dict()
    assert list(other) == list(plain)
    for key in plain:
        np.testing.assert_array_equal(other[key], plain[key], err_msg=key)


def test_unknown_architecture(tmp_path):
    with pytest.raises(ConversionError, match=r"unknown architecture 'vgg17'; choose one of vgg11"):
        convert_checkpoint(tmp_path / "x.pth", "vgg17", tmp_path / "out.npz")


@pytest.mark.parametrize("out, message", [
    ("vgg16.pt", r"vgg16\.pt: the output file must end in \.npz"),
    ("a_file/vgg16.npz", r"a_file/vgg16\.npz: cannot be written: .*a_file is a file, not a folder"),
    ("a_folder.npz", r"a_folder\.npz: is a folder, not a file"),
])
def test_bad_output_is_refused_before_the_checkpoint_is_read(tmp_path, out, message):
    """The output path is checked first (the checkpoint is not even there)."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder.npz").mkdir()
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(tmp_path / "missing.pth", "vgg16", tmp_path / out)


def test_a_folder_is_not_a_checkpoint(tmp_path):
    (tmp_path / "ckpt.pth").mkdir()
    with pytest.raises(ConversionError, match=r"ckpt\.pth: is a folder, not a checkpoint file"):
        convert_checkpoint(tmp_path / "ckpt.pth", "vgg16", tmp_path / "out.npz")
