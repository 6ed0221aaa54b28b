"""minicnn.saliency.smoothgrad against Captum's NoiseTunnel arithmetic, its noise, batches and
progress bar."""
import numpy as np
import pytest

from minicnn import saliency
from minicnn.saliency import (grad_cam, gradient, guided_backprop, integrated_gradients,
                              smoothgrad)
from tests.helpers.compare import assert_relative
from tests.helpers.nets import small_net
from tests.helpers.torch_twin import captum
from tests.saliency.conftest import TARGETS


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(3).normal(0, 0.4, size=(6, 4, 3, 23, 23))


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_smoothgrad_equals_captum_saliency_over_the_same_noise(net_and_x, twin, captum_attr,
                                                              noise, kind):
    model, x = net_and_x
    maps = np.stack([captum(captum_attr.Saliency, twin, x + e, target=TARGETS, abs=False)
                     for e in noise])                       # (S, N, C, H, W)
    want = {"smoothgrad": maps.mean(0), "smoothgrad_sq": (maps ** 2).mean(0),
            "vargrad": (maps ** 2).mean(0) - maps.mean(0) ** 2}[kind]
    got = smoothgrad(model, x, TARGETS, noise=noise, kind=kind, batch_size=7)
    assert_relative(got, want, rtol=1e-9)


def test_smoothgrad_wraps_any_method_and_targets_the_clean_prediction(net_and_x, twin,
                                                                      captum_attr, noise):
    model, x = net_and_x
    clean = [int(c) for c in model.forward(x).argmax(1)]
    want = np.mean([captum(captum_attr.GuidedBackprop, twin, x + e, target=clean)
                    for e in noise], axis=0)
    for method in (guided_backprop, saliency.get_method("guided_backprop")):
        assert_relative(smoothgrad(model, x, None, method=method, noise=noise), want, rtol=1e-9)
    one = noise[:, :1]                                      # (S, 1, C, H, W): same for all
    want = np.mean([gradient(model, x + e, clean) for e in one], axis=0)
    assert_relative(smoothgrad(model, x, noise=one), want, rtol=1e-12)


def test_smoothgrad_noise_has_the_papers_sigma():
    """With an 'attribution' that returns its input, SmoothGrad's mean is ~x and VarGrad is the
    noise variance: sigma = noise_level * (max - min) of each image."""
    x = np.zeros((2, 3, 23, 23))
    x[0, 0, 0, 0], x[1, 1, 1, 1] = 2.0, -8.0                # ranges 2 and 8
    identity = (lambda model, xs, target: xs)
    model = small_net()
    var = smoothgrad(model, x, 0, method=identity, n_samples=400, noise_level=0.1, seed=0,
                     kind="vargrad", batch_size=800)
    np.testing.assert_allclose(var[0].mean(), 0.2 ** 2, rtol=0.02)
    np.testing.assert_allclose(var[1].mean(), 0.8 ** 2, rtol=0.02)


def test_smoothgrad_batches_are_bounded_and_do_not_change_the_result(net_and_x):
    model, x = net_and_x
    seen = []

    def recording_gradient(model, xs, target):
        seen.append(len(xs))
        return gradient(model, xs, target)

    a = smoothgrad(model, x, TARGETS, method=recording_gradient, n_samples=5, seed=7,
                   batch_size=3)
    assert max(seen) == 3 and sum(seen) == 20
    b = smoothgrad(model, x, TARGETS, n_samples=5, seed=7, batch_size=20)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not np.array_equal(a, smoothgrad(model, x, TARGETS, n_samples=5, seed=8))


def test_progress_bar_only_when_asked(net_and_x, capsys):
    model, x = net_and_x
    smoothgrad(model, x[:1], 0, n_samples=4, seed=0)
    integrated_gradients(model, x[:1], 0, steps=4)
    assert capsys.readouterr().err == ""
    smoothgrad(model, x[:1], 0, n_samples=4, seed=0, batch_size=2, progress=True)
    lines = capsys.readouterr().err.splitlines()     # stderr is no terminal: whole lines
    assert [line.split("]")[0] for line in lines] == [
        "smoothgrad [--------------------", "smoothgrad [##########----------",
        "smoothgrad [####################"]
    assert lines[-1].split()[2] == "4/4"


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x: smoothgrad(m, x, method="saliency"), TypeError,
     r"smoothgrad: method must be a function \(model, x, target\) -> attribution, got str "
     r"'saliency'; for a method known by name use saliency.get_method\('saliency'\)"),
    (lambda m, x: smoothgrad(m, x, kind="mean"), ValueError,
     "unknown smoothgrad kind 'mean'; valid choices are smoothgrad, smoothgrad_sq, vargrad"),
    (lambda m, x: smoothgrad(m, x, n_samples=0), ValueError,
     r"n_samples must be an int >= 1, got 0"),
    (lambda m, x: smoothgrad(m, x, n_samples=2.5), TypeError,
     r"n_samples must be an int >= 1, got 2.5"),
    (lambda m, x: smoothgrad(m, x, noise_level=-0.1), ValueError,
     r"noise_level \(a fraction of each image's value range\) must be a number >= 0, got -0.1"),
    (lambda m, x: smoothgrad(m, x, noise=np.zeros((3, 2, 3, 23, 23))), ValueError,
     r"noise must be shaped \(n_samples, 4, \*\(3, 23, 23\)\) or "
     r"\(n_samples, 1, \*\(3, 23, 23\)\), "
     r"got \(3, 2, 3, 23, 23\)"),
    (lambda m, x: smoothgrad(m, x, noise=np.zeros((3, 4, 3, 23, 23), int)), TypeError,
     "noise must have a floating-point dtype, got int64"),
    (lambda m, x: smoothgrad(m, x, n_samples=5, noise=np.zeros((3, 1, 3, 23, 23))), ValueError,
     "noise holds 3 samples but n_samples=5"),
    (lambda m, x: smoothgrad(m, x, method=grad_cam, n_samples=1), ValueError,
     r"smoothgrad: method grad_cam returned shape \(4, 6, 6\), expected the input's shape "
     r"\(4, 3, 23, 23\)"),
])
def test_bad_input(net_and_x, call, error, message):
    model, x = net_and_x
    with pytest.raises(error, match=message):
        call(model, x)
