"""minicnn.saliency.integrated: integrated gradients against Captum, completeness, the
quadrature rules."""
import numpy as np
import pytest

from minicnn.saliency import IG_METHODS, blur, integrated_gradients, integration_points
from tests.helpers.compare import assert_relative
from tests.helpers.torch_twin import captum
from tests.saliency.conftest import TARGETS


@pytest.mark.parametrize("method", IG_METHODS)
def test_integration_points_are_captums(captum_attr, method):
    from captum.attr._utils.approximation_methods import approximation_parameters
    step_sizes, alphas = approximation_parameters(method)
    for n in (2, 7, 50):
        a, w = integration_points(n, method)
        # Captum's points are float32 (torch.linspace) and its weights are rounded to float32
        np.testing.assert_allclose(a, alphas(n), rtol=0, atol=1.2e-7)
        np.testing.assert_allclose(w, step_sizes(n), rtol=1e-7, atol=0)


@pytest.mark.parametrize("method", IG_METHODS)
def test_integrated_gradients_equal_captum(net_and_x, twin, torch, captum_attr, method):
    model, x = net_and_x
    baseline = np.random.default_rng(2).normal(size=(1, 3, 23, 23))
    want, want_delta = captum_attr.IntegratedGradients(twin).attribute(
        torch.from_numpy(x.copy()), baselines=torch.from_numpy(baseline), target=TARGETS,
        n_steps=7, method=method, return_convergence_delta=True)
    got, gap = integrated_gradients(model, x, TARGETS, baseline=baseline, steps=7,
                                    method=method, batch_size=5, return_gap=True)
    # ~1e-7: Captum's float32 points and weights (see integration_points)
    assert_relative(got, want.detach().numpy(), rtol=1e-6)
    assert_relative(gap, want_delta.numpy(), rtol=1e-6)


@pytest.mark.parametrize("baseline", [None, "blur", 0.5])
def test_integrated_gradients_baselines_equal_captum(net_and_x, twin, torch, captum_attr,
                                                     baseline):
    model, x = net_and_x
    b = {None: np.zeros_like(x), "blur": blur(x), 0.5: np.full_like(x, 0.5)}[baseline]
    want = captum(captum_attr.IntegratedGradients, twin, x, baselines=torch.from_numpy(b),
                  target=TARGETS, n_steps=6, method="gausslegendre")
    got = integrated_gradients(model, x, TARGETS, baseline=baseline, steps=6)
    assert_relative(got, want, rtol=1e-6)


def test_integrated_gradients_complete_and_better_with_more_steps(net_and_x):
    model, x = net_and_x
    x = x[:2]
    scores = model.forward(x)
    change = scores[[0, 1], [1, 0]] - model.forward(np.zeros_like(x))[[0, 1], [1, 0]]
    gaps = {}
    for method in ("gausslegendre", "riemann_middle"):
        for steps in (4, 64, 512):
            attr, gap = integrated_gradients(model, x, [1, 0], steps=steps, method=method,
                                             batch_size=256, return_gap=True)
            np.testing.assert_allclose(gap, attr.sum(axis=(1, 2, 3)) - change, rtol=1e-12)
            gaps[method, steps] = np.abs(gap).max()
        assert gaps[method, 512] < gaps[method, 64] < gaps[method, 4]
        # a ReLU net's path integrand is piecewise constant: the error shrinks like 1/steps
        assert gaps[method, 512] < 0.01 * np.abs(change).max()
    # Captum's trapezoid: points 1/(n-1) apart weighted 1/n, i.e. (n-1)/n times the true
    # trapezoid rule, which is the mean of the left and right sums with n-1 steps
    ig = {m: integrated_gradients(model, x, [1, 0], steps=s, method=m)
          for m, s in [("riemann_trapezoid", 9), ("riemann_left", 8), ("riemann_right", 8)]}
    np.testing.assert_allclose(ig["riemann_trapezoid"],
                               8 / 9 * (ig["riemann_left"] + ig["riemann_right"]) / 2,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x: integrated_gradients(m, x, steps=0), ValueError,
     "steps must be an int >= 1, got 0"),
    (lambda m, x: integrated_gradients(m, x, steps=2.5), TypeError,
     "steps must be an int >= 1, got 2.5"),
    (lambda m, x: integrated_gradients(m, x, steps=1, method="riemann_left"), ValueError,
     r"steps must be >= 2 for riemann_left \(Captum's rule\), got 1"),
    (lambda m, x: integrated_gradients(m, x, method="simpson"), ValueError,
     "unknown integrated gradients method 'simpson'; valid choices are riemann_trapezoid, "
     "riemann_left, riemann_right, riemann_middle, gausslegendre"),
    (lambda m, x: integrated_gradients(m, x, batch_size=0), ValueError,
     "batch_size must be an int >= 1, got 0"),
])
def test_bad_input(net_and_x, call, error, message):
    model, x = net_and_x
    with pytest.raises(error, match=message):
        call(model, x)
