"""The benchmark measures the real architectures: its hand-built networks are the zoo's."""
import sys
from pathlib import Path

import pytest

from minicnn.io import zoo

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import bench  # noqa: E402


def without_dropout_p(config):
    return [{k: v for k, v in layer.items() if k != "p"} for layer in config]


@pytest.mark.parametrize("arch", ["vgg16", "alexnet"])
def test_benchmark_networks_are_torchvision_layouts(arch):
    ours = bench.build_minicnn(arch).config()
    assert without_dropout_p(ours) == without_dropout_p(zoo.build(arch).config())


def test_benchmark_torch_twin_has_the_same_layers():
    torch = pytest.importorskip("torch")
    for arch in ("small", "alexnet"):
        specs = bench.layer_specs(arch)
        net = bench.build_torch(arch)
        assert len(net) == len(specs)
        for (name, kind, args), module in zip(specs, net):
            if kind == "conv":
                c_in, c_out, k, s, p = args
                assert (module.in_channels, module.out_channels, module.kernel_size,
                        module.stride, module.padding) == (c_in, c_out, (k, k), (s, s), (p, p))
            assert isinstance(module, torch.nn.Module)
