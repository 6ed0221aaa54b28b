"""DeepLIFT-Rescale: summation to delta on every kind of layer, and Captum's DeepLift where it
computes the same quantity, float64.

Summation to delta: the attributions of each image add up to S_c(x) - S_c(x0), to 1e-9, with
max-pools (overlapping windows too), additions, concatenations, a squeeze-and-excitation
product, sigmoid, Hardswish, LRN and BatchNorm, for a zero and a non-constant baseline.

Captum (0.9 here) gives the same multipliers where it is right: ReLU and sigmoid networks, and
max-pools between linear layers, for one image or several. Where it is not, the tests show its
own delta (sum of attributions - change of the score) far from 0 while minicnn's is 0:
- a hooked nonlinearity feeding another (ReLU -> MaxPool2d, as in VGG): the second one in the
  backward pass receives the plain gradient, not the first one's multipliers (with torch 2.13
  the max-pool's rule is computed and then lost);
- overlapping max-pool windows: its max_unpool keeps one window's share of an input;
- a batch: where x = x0 at a max-pool's input it uses the first image's gradient for every
  image (Captum #1276), so an image's attribution depends on the others in its batch;
- a product (squeeze-and-excitation's gate * x): it sees the gradient there (#1085).
Its hooks also mix up a module used twice (#1104); minicnn's rules are per node.
"""
import numpy as np
import pytest

import minicnn
from minicnn import saliency as S
from minicnn.engine.layers import Conv2d, Linear
from tests.helpers.relevance import random_images
from tests.helpers.torch_twin import torch_twin


def _random(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name, value in layer.parameters().items():
            new = rng.normal(0, 0.5, size=value.shape)
            setattr(layer, name, np.abs(new) + 0.5 if name == "running_var" else new)
    return model


def chain(*layers, seed=0):
    return _random(minicnn.Sequential(list(layers)).astype(np.float64), seed)


def graph(nodes, seed=0):
    return _random(minicnn.Graph(nodes).astype(np.float64), seed)


def nets():
    """name -> (model, input shape)"""
    return {
        "relu-maxpool": (chain(Conv2d(3, 4, 3), minicnn.ReLU(), minicnn.MaxPool2d(2),
                               minicnn.Flatten(), Linear(4 * 3 * 3, 3)), (3, 8, 8)),
        "overlapping-maxpool": (chain(Conv2d(3, 4, 3, padding=1), minicnn.ReLU(),
                                      minicnn.MaxPool2d(3, 2, 1), Conv2d(4, 4, 3),
                                      minicnn.Sigmoid(), minicnn.Flatten(), Linear(4 * 2 * 2, 3)),
                                (3, 8, 8)),
        "lrn-batchnorm": (chain(Conv2d(3, 6, 3), minicnn.LRN(3, alpha=0.5), minicnn.BatchNorm2d(6),
                                minicnn.Hardswish(), minicnn.AvgPool2d(2), minicnn.Flatten(),
                                Linear(6 * 3 * 3, 3)), (3, 8, 8)),
        "residual-concat": (graph([
            ("c1", Conv2d(3, 4, 3, padding=1), "input"), ("r1", minicnn.ReLU(), "c1"),
            ("c2", Conv2d(4, 4, 3, padding=1), "r1"), ("r2", minicnn.ReLU(), "c2"),
            ("add", minicnn.Add(), ("r1", "r2")), ("c3", Conv2d(4, 2, 1), "add"),
            ("cat", minicnn.Concat(), ("c3", "r2")), ("r3", minicnn.ReLU6(), "cat"),
            ("gap", minicnn.AdaptiveAvgPool2d(1), "r3"), ("flat", minicnn.Flatten(), "gap"),
            ("fc", Linear(6, 3), "flat")]), (3, 6, 6)),
        "squeeze-excitation": (graph([
            ("c", Conv2d(3, 4, 3, padding=1), "input"), ("act", minicnn.SiLU(), "c"),
            ("sq", minicnn.AdaptiveAvgPool2d(1), "act"), ("f1", Conv2d(4, 2, 1), "sq"),
            ("relu", minicnn.ReLU(), "f1"), ("f2", Conv2d(2, 4, 1), "relu"),
            ("gate", minicnn.Hardsigmoid(), "f2"), ("mul", minicnn.Mul(), ("gate", "act")),
            ("gap", minicnn.AdaptiveAvgPool2d(1), "mul"), ("flat", minicnn.Flatten(), "gap"),
            ("fc", Linear(4, 3), "flat")]), (3, 6, 6)),
    }


@pytest.mark.parametrize("name", list(nets()))
@pytest.mark.parametrize("baseline", ["zeros", "noise", "blur"])
def test_the_attributions_sum_to_the_change_of_the_score(name, baseline):
    model, shape = nets()[name]
    x = random_images((3,) + shape, 1)
    base = random_images((3,) + shape, 2) * 0.5 if baseline == "noise" else baseline
    attributions, gap = S.deeplift(model, x, [0, 1, 2], baseline=base, return_gap=True)
    b = S.baseline_like(x, base)
    scores, reference = model.forward(x), model.forward(b)
    change = (scores - reference)[np.arange(3), [0, 1, 2]]
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), change, rtol=1e-9,
                               atol=1e-12)
    assert np.all(np.abs(gap) <= 1e-9 * np.abs(change).max())


def test_a_batch_gives_each_image_what_it_gets_alone_and_float32_works():
    model, shape = nets()["relu-maxpool"]
    x = random_images((60,) + shape, 3)                  # more than a chunk (25 images)
    together = S.deeplift(model, x, 1)
    for i in (0, 24, 25, 59):
        np.testing.assert_allclose(together[i], S.deeplift(model, x[i:i + 1], 1)[0], rtol=1e-12,
                                   atol=1e-15)
    single = S.deeplift(model.astype(np.float32), x[:2].astype(np.float32), 1)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, together[:2], rtol=1e-3, atol=1e-5)


# ============================================================================ against Captum

def _captum(captum_attr, model, x, base, target):
    import torch
    net = torch_twin(model)
    out, delta = captum_attr.DeepLift(net).attribute(
        torch.from_numpy(x.copy()), baselines=torch.from_numpy(base.copy()), target=target,
        return_convergence_delta=True)
    return out.detach().numpy(), delta.detach().numpy()


CAPTUM_RIGHT = {
    "relu": chain(Conv2d(3, 4, 3), minicnn.ReLU(), Conv2d(4, 4, 3, padding=1), minicnn.ReLU(),
                  minicnn.AvgPool2d(2), minicnn.Flatten(), Linear(4 * 3 * 3, 3), seed=1),
    "sigmoid": chain(Conv2d(3, 4, 3), minicnn.Sigmoid(), minicnn.Flatten(), Linear(4 * 6 * 6, 3),
                     seed=2),
    "maxpool-between-convolutions": chain(Conv2d(3, 4, 3, padding=1), minicnn.MaxPool2d(2),
                                          Conv2d(4, 5, 3), minicnn.ReLU(), minicnn.Flatten(),
                                          Linear(5 * 2 * 2, 3), seed=3),
}


@pytest.mark.parametrize("name", list(CAPTUM_RIGHT))
@pytest.mark.parametrize("n", [1, 3])
def test_equal_to_captum_where_captum_is_right(captum_attr, name, n):
    model = CAPTUM_RIGHT[name]
    x, base = random_images((n, 3, 8, 8), 4), random_images((n, 3, 8, 8), 5) * 0.3
    want, delta = _captum(captum_attr, model, x, base, 1)
    assert np.all(np.abs(delta) < 1e-9)
    np.testing.assert_allclose(S.deeplift(model, x, 1, baseline=base), want, rtol=1e-9,
                               atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("name", ["relu-maxpool", "overlapping-maxpool", "squeeze-excitation"])
def test_where_captum_does_not_add_up_minicnn_does(captum_attr, name):
    model, shape = nets()[name]
    x, base = random_images((1,) + shape, 6), random_images((1,) + shape, 7) * 0.5
    want, captum_delta = _captum(captum_attr, model, x, base, 0)
    got, gap = S.deeplift(model, x, 0, baseline=base, return_gap=True)
    assert np.abs(captum_delta).max() > 1e-3 and np.abs(gap).max() < 1e-12
    assert not np.allclose(got, want, rtol=1e-3)


def test_captums_batch_borrows_the_first_images_gradient_minicnns_does_not(captum_attr):
    """Captum #1276: where an input of a max-pool equals its reference, Captum falls back to
    the gradient of the first image of the batch for every image. There x = x0 upstream too,
    so the attributions, (x - x0) * multiplier, hide it; the multipliers show it."""
    import torch
    model = CAPTUM_RIGHT["maxpool-between-convolutions"]
    rng = np.random.default_rng(8)
    base = np.broadcast_to(rng.normal(size=(1, 3, 8, 8)), (3, 3, 8, 8)).copy()
    x = base.copy()
    x[:, :, 4:, 4:] += rng.normal(size=(3, 3, 4, 4))    # each image differs from x0 in a corner
    net = torch_twin(model)

    def captum_multipliers(rows):
        out = captum_attr.DeepLift(net).attribute(
            torch.from_numpy(x[rows].copy()), baselines=torch.from_numpy(base[rows].copy()),
            target=2, custom_attribution_func=lambda m, inputs, baselines: m)
        return out.detach().numpy()
    batch = captum_multipliers(slice(0, 3))
    alone = np.concatenate([captum_multipliers(slice(i, i + 1)) for i in range(3)])
    assert not np.allclose(batch[1:], alone[1:], rtol=1e-6)   # Captum: image 0 leaks in
    np.testing.assert_allclose(batch[0], alone[0], rtol=1e-12)
    model.forward(np.concatenate([x, base]))
    seed = np.zeros((6, 3))
    seed[:, 2] = 1
    mine = model.backward(seed, rule=S.Rescale())[:3]
    np.testing.assert_allclose(mine, alone, rtol=1e-9, atol=1e-12 * np.abs(alone).max())


@pytest.fixture(autouse=True)
def _quiet():
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        yield
