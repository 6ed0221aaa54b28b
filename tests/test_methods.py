"""minicnn.saliency, the methods after the vanilla gradient: each against Captum on random
networks (float64) and on the shipped model, plus the properties Captum cannot check
(completeness, guided vs deconvnet, the noise SmoothGrad uses, bounded batches) and every
bad-input message."""
import io

import numpy as np
import pytest

import minicnn
from minicnn import saliency
from minicnn._progress import Progress
from minicnn.saliency import (IG_METHODS, METHODS, blur, deconvnet, default_cam_layer,
                              grad_cam, gradient, guided_backprop, guided_grad_cam,
                              input_x_gradient, integrated_gradients, integration_points,
                              occlusion, smoothgrad, upsample_bilinear)

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
from test_saliency import small_net  # noqa: E402
from torch_twin import torch_twin  # noqa: E402

nn = torch.nn
F = torch.nn.functional

# Captum warns that the input does not require grad and sets it itself; nothing to act on
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TARGETS = [1, 0, 4, 2]


@pytest.fixture(scope="module")
def net_and_x():
    """small_net (conv/relu/maxpool x2, linear/relu/dropout/linear), its torch twin, 4 images."""
    model = small_net()
    x = np.random.default_rng(1).normal(size=(4, 3, 23, 23))
    return model, torch_twin(model), x


def captum(method_class, net, x, *args, **kwargs):
    """Run a Captum attribution on a fresh float64 tensor -> numpy."""
    out = method_class(net, *args).attribute(torch.from_numpy(x.copy()), **kwargs)
    return out.detach().numpy()


def assert_close(got, want, rtol=1e-10):
    """Equal up to rtol times the largest magnitude of `want` (and shaped alike)."""
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


# ============================================================================ ReLU rules, x * grad

@pytest.mark.parametrize("ours, theirs", [(guided_backprop, "GuidedBackprop"),
                                          (deconvnet, "Deconvolution"),
                                          (input_x_gradient, "InputXGradient")])
def test_relu_rule_methods_equal_captum(net_and_x, ours, theirs):
    model, net, x = net_and_x
    want = captum(getattr(captum_attr, theirs), net, x, target=TARGETS)
    got = ours(model, x, TARGETS)
    assert got.dtype == np.float64
    assert_close(got, want)


def _one_relu_net(conv_weight, out_weight):
    """x (1, 1, 1, 1) -> conv 1x1 -> ReLU -> Linear(1, 1): score = out_weight * relu(w x)."""
    model = minicnn.Sequential([minicnn.Conv2d(1, 1, 1), minicnn.ReLU(), minicnn.Flatten(),
                                minicnn.Linear(1, 1)]).astype(np.float64)
    model[0].weight[...], model[0].bias[...] = conv_weight, 0.0
    model[3].weight[...], model[3].bias[...] = out_weight, 0.0
    return model


def test_guided_and_deconvnet_differ_where_they_must():
    # forward input negative, incoming signal positive: only deconvnet passes it
    model, x = _one_relu_net(1.0, 2.0), np.full((1, 1, 1, 1), -1.0)
    assert gradient(model, x, 0).item() == 0.0
    assert guided_backprop(model, x, 0).item() == 0.0
    assert deconvnet(model, x, 0).item() == 2.0
    # forward input positive, incoming signal negative: only the gradient passes it
    model, x = _one_relu_net(1.0, -2.0), np.full((1, 1, 1, 1), 1.0)
    assert gradient(model, x, 0).item() == -2.0
    assert guided_backprop(model, x, 0).item() == 0.0
    assert deconvnet(model, x, 0).item() == 0.0


def test_relu_used_twice_and_relu_before_maxpool_match_captum():
    """One nn.ReLU instance at two positions, each followed by pooling or a conv. from_torch
    must import both uses. Captum 0.9's hooks fire on each use of a shared module, so it is
    compared directly, and also with an equivalent net with separate ReLU instances."""
    torch.manual_seed(0)
    relu = nn.ReLU(inplace=False)
    layers = [nn.Conv2d(3, 5, 3, padding=1), relu, nn.MaxPool2d(2), nn.Conv2d(5, 6, 3), relu,
              nn.MaxPool2d(2, 1), nn.Flatten(), nn.Linear(6 * 2 * 2, 4)]
    shared = nn.Sequential(*layers).double().eval()
    separate = nn.Sequential(*[nn.ReLU() if m is relu else m for m in layers]).eval()
    model = minicnn.from_torch(shared)
    assert model.names == [str(i) for i in range(8)]     # both ReLUs imported
    x = np.random.default_rng(0).normal(size=(3, 3, 10, 10))
    targets = [1, 2, 3]
    for net in (shared, separate):
        np.testing.assert_allclose(model.forward(x), net(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-12)
        for ours, theirs in [(gradient, "InputXGradient"), (guided_backprop, "GuidedBackprop"),
                             (deconvnet, "Deconvolution")]:
            want = captum(getattr(captum_attr, theirs), net, x, target=targets)
            got = ours(model, x, targets) * (x if ours is gradient else 1)
            assert_close(got, want)


# ============================================================================ integrated gradients

@pytest.mark.parametrize("method", IG_METHODS)
def test_integration_points_are_captums(method):
    from captum.attr._utils.approximation_methods import approximation_parameters
    step_sizes, alphas = approximation_parameters(method)
    for n in (2, 7, 50):
        a, w = integration_points(n, method)
        # Captum's points are float32 (torch.linspace) and its weights are rounded to float32
        np.testing.assert_allclose(a, alphas(n), rtol=0, atol=1.2e-7)
        np.testing.assert_allclose(w, step_sizes(n), rtol=1e-7, atol=0)


@pytest.mark.parametrize("method", IG_METHODS)
def test_integrated_gradients_equal_captum(net_and_x, method):
    model, net, x = net_and_x
    baseline = np.random.default_rng(2).normal(size=(1, 3, 23, 23))
    want, want_delta = captum_attr.IntegratedGradients(net).attribute(
        torch.from_numpy(x.copy()), baselines=torch.from_numpy(baseline), target=TARGETS,
        n_steps=7, method=method, return_convergence_delta=True)
    got, gap = integrated_gradients(model, x, TARGETS, baseline=baseline, steps=7,
                                    method=method, batch_size=5, return_gap=True)
    # ~1e-7: Captum's float32 points and weights (see integration_points)
    assert_close(got, want.detach().numpy(), rtol=1e-6)
    assert_close(gap, want_delta.numpy(), rtol=1e-6)


@pytest.mark.parametrize("baseline", [None, "blur", 0.5])
def test_integrated_gradients_baselines_equal_captum(net_and_x, baseline):
    model, net, x = net_and_x
    b = {None: np.zeros_like(x), "blur": blur(x), 0.5: np.full_like(x, 0.5)}[baseline]
    want = captum(captum_attr.IntegratedGradients, net, x, baselines=torch.from_numpy(b),
                  target=TARGETS, n_steps=6, method="gausslegendre")
    got = integrated_gradients(model, x, TARGETS, baseline=baseline, steps=6)
    assert_close(got, want, rtol=1e-6)


def test_integrated_gradients_complete_and_better_with_more_steps(net_and_x):
    model, _, x = net_and_x
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


def test_blur_is_a_normalised_gaussian_with_mirrored_edges():
    x = np.zeros((1, 1, 41, 41))
    x[0, 0, 20, 20] = 1.0
    b = blur(x, sigma=2.0)[0, 0]
    assert abs(b.sum() - 1.0) < 1e-12 and b.argmax() == 20 * 41 + 20
    d = np.arange(-6, 7)
    k = np.exp(-d * d / 8.0)
    np.testing.assert_allclose(b[20, 14:27], k / k.sum() * (k / k.sum())[6], rtol=1e-12)
    flat = np.full((2, 3, 5, 4), 0.7)                      # mirrored edges keep a flat image
    np.testing.assert_allclose(blur(flat, sigma=3.0), flat, rtol=1e-12)


# ============================================================================ Grad-CAM

def test_default_cam_layer_is_the_relu_after_the_last_conv():
    assert default_cam_layer(small_net()) == "4"
    model = minicnn.Sequential([minicnn.Conv2d(3, 2, 3), minicnn.MaxPool2d(2),
                                minicnn.Flatten(), minicnn.Linear(2, 2)])
    assert default_cam_layer(model) == "0"                 # no ReLU right after: the conv


@pytest.mark.parametrize("layer", [None, "1", 3, "5"])
def test_grad_cam_equals_captum_layer_grad_cam(net_and_x, layer):
    model, net, x = net_and_x
    index = model.index(default_cam_layer(model) if layer is None else layer)
    # Captum's LayerGradCam leaves the ReLU off by default: relu_attributions=True is Grad-CAM
    want = captum(captum_attr.LayerGradCam, net, x, net[index], target=TARGETS,
                  relu_attributions=True)
    got = grad_cam(model, x, TARGETS, layer=layer)
    assert_close(got, want[:, 0])
    assert (got >= 0).all() and got.max() > 0
    up = grad_cam(model, x, TARGETS, layer=layer, upsample=True)
    want_up = captum_attr.LayerAttribution.interpolate(torch.from_numpy(want), (23, 23),
                                                       interpolate_mode="bilinear")
    assert_close(up, want_up.numpy()[:, 0])


@pytest.mark.parametrize("size, out", [((5, 5), (23, 23)), ((3, 7), (10, 4)), ((8, 8), (8, 8)),
                                       ((6, 9), (2, 3)), ((1, 4), (5, 9)), ((4, 4), (64, 64))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_upsample_bilinear_equals_torch_interpolate(size, out, dtype):
    maps = np.random.default_rng(0).normal(size=(2,) + size).astype(dtype)
    want = F.interpolate(torch.from_numpy(maps)[:, None], size=out, mode="bilinear",
                         align_corners=False)[:, 0].numpy()
    got = upsample_bilinear(maps, out)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 if dtype == np.float64 else 2e-6)


def test_guided_grad_cam_equals_captum_in_bilinear_mode(net_and_x):
    model, net, x = net_and_x
    # Captum's GuidedGradCam upsamples with "nearest" unless told; ours is bilinear
    want = captum(captum_attr.GuidedGradCam, net, x, net[4], target=TARGETS,
                  interpolate_mode="bilinear")
    assert_close(guided_grad_cam(model, x, TARGETS), want)


# ============================================================================ occlusion

@pytest.mark.parametrize("window, stride", [(3, 1), (5, 2), ((4, 6), (3, 4)), (23, 1), (7, 7)])
def test_occlusion_equals_captum(net_and_x, window, stride):
    model, net, x = net_and_x
    w = window if isinstance(window, tuple) else (window, window)
    s = stride if isinstance(stride, tuple) else (stride, stride)
    want = captum(captum_attr.Occlusion, net, x, target=TARGETS, sliding_window_shapes=(3,) + w,
                  strides=(1,) + s, baselines=0.3)
    got = occlusion(model, x, TARGETS, window=window, stride=stride, baseline=0.3,
                    batch_size=37)
    assert got.dtype == np.float64
    assert_close(got, want, rtol=1e-6)      # Captum divides in float32 (.float() / weights)


def test_occlusion_with_an_image_baseline_equals_captum(net_and_x):
    model, net, x = net_and_x
    baseline = blur(x)
    want = captum(captum_attr.Occlusion, net, x, target=TARGETS, sliding_window_shapes=(3, 6, 6),
                  strides=(3, 4, 4), baselines=torch.from_numpy(baseline))
    assert_close(occlusion(model, x, TARGETS, window=6, stride=4, baseline=baseline), want,
                 rtol=1e-6)


def test_occlusion_of_the_whole_image_is_the_score_change(net_and_x):
    model, _, x = net_and_x
    scores = model.forward(x)
    drop = scores[range(4), TARGETS] - model.forward(np.zeros_like(x))[range(4), TARGETS]
    got = occlusion(model, x, TARGETS, window=23, stride=23)
    np.testing.assert_allclose(got, np.broadcast_to(drop[:, None, None, None], x.shape),
                               rtol=1e-12)


# ============================================================================ SmoothGrad

@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(3).normal(0, 0.4, size=(6, 4, 3, 23, 23))


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_smoothgrad_equals_captum_saliency_over_the_same_noise(net_and_x, noise, kind):
    model, net, x = net_and_x
    maps = np.stack([captum(captum_attr.Saliency, net, x + e, target=TARGETS, abs=False)
                     for e in noise])                       # (S, N, C, H, W)
    want = {"smoothgrad": maps.mean(0), "smoothgrad_sq": (maps ** 2).mean(0),
            "vargrad": (maps ** 2).mean(0) - maps.mean(0) ** 2}[kind]
    got = smoothgrad(model, x, TARGETS, noise=noise, kind=kind, batch_size=7)
    assert_close(got, want, rtol=1e-9)


def test_smoothgrad_wraps_any_method_and_targets_the_clean_prediction(net_and_x, noise):
    model, net, x = net_and_x
    clean = [int(c) for c in model.forward(x).argmax(1)]
    want = np.mean([captum(captum_attr.GuidedBackprop, net, x + e, target=clean)
                    for e in noise], axis=0)
    for method in (guided_backprop, "guided_backprop"):
        assert_close(smoothgrad(model, x, None, method=method, noise=noise), want, rtol=1e-9)
    one = noise[:, :1]                                      # (S, 1, C, H, W): same for all
    want = np.mean([gradient(model, x + e, clean) for e in one], axis=0)
    assert_close(smoothgrad(model, x, noise=one), want, rtol=1e-12)


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
    model, _, x = net_and_x
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
    model, _, x = net_and_x
    smoothgrad(model, x[:1], 0, n_samples=4, seed=0)
    integrated_gradients(model, x[:1], 0, steps=4)
    assert capsys.readouterr().err == ""
    smoothgrad(model, x[:1], 0, n_samples=4, seed=0, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert err.endswith("smoothgrad [####################] 4/4\n") and "2/4" in err


class Terminal(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_on_a_terminal_redraws_one_line():
    stream, clock = Terminal(), FakeClock()
    with Progress(8, "occlusion", stream=stream, width=4, clock=clock) as bar:
        clock.now = 0.5
        bar.update(2)
        clock.now = 0.55
        bar.update(1)  # too soon after the last redraw: skipped
        clock.now = 0.7
        bar.update(5)
    assert stream.getvalue() == ("\rocclusion [----] 0/8\rocclusion [#---] 2/8"
                                 "\rocclusion [####] 8/8\n")


def test_progress_in_a_log_writes_whole_lines_per_step():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(8, "occlusion", stream=stream, width=4, clock=clock) as bar:
        for _ in range(8):
            clock.now += 0.5
            bar.update(1)
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines() == [
        "occlusion [----] 0/8", "occlusion [#---] 2/8  1 s, ~3 s left",
        "occlusion [##--] 4/8  2 s, ~2 s left",
        "occlusion [###-] 6/8  3 s, ~1 s left", "occlusion [####] 8/8  4 s"]


# ============================================================================ registry, bad input

def test_registry_has_every_method():
    assert list(METHODS) == ["gradient", "guided_backprop", "deconvnet", "input_x_gradient",
                             "smoothgrad", "integrated_gradients", "grad_cam", "guided_grad_cam",
                             "occlusion"]
    assert saliency.get_method("occlusion") is occlusion


VALID_METHODS = ("gradient, guided_backprop, deconvnet, input_x_gradient, smoothgrad, "
                 "integrated_gradients, grad_cam, guided_grad_cam, occlusion")


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x: saliency.get_method("lime"), ValueError,
     f"unknown method 'lime'; valid methods are {VALID_METHODS}"),
    (lambda m, x: smoothgrad(m, x, method="saliency"), ValueError,
     "unknown method 'saliency'; valid methods are gradient, "),
    (lambda m, x: smoothgrad(m, x, kind="mean"), ValueError,
     "unknown smoothgrad kind 'mean'; valid choices are smoothgrad, smoothgrad_sq, vargrad"),
    (lambda m, x: smoothgrad(m, x, n_samples=0), ValueError,
     r"n_samples must be an int >= 1, got 0"),
    (lambda m, x: smoothgrad(m, x, n_samples=2.5), TypeError,
     r"n_samples must be an int >= 1, got 2.5"),
    (lambda m, x: smoothgrad(m, x, noise_level=-0.1), ValueError,
     "noise_level must be a number >= 0"),
    (lambda m, x: smoothgrad(m, x, noise=np.zeros((3, 2, 3, 23, 23))), ValueError,
     r"noise must be shaped \(n_samples, 4, \*\(3, 23, 23\)\) or "
     r"\(n_samples, 1, \*\(3, 23, 23\)\), "
     r"got \(3, 2, 3, 23, 23\)"),
    (lambda m, x: smoothgrad(m, x, n_samples=5, noise=np.zeros((3, 1, 3, 23, 23))), ValueError,
     "noise holds 3 samples but n_samples=5"),
    (lambda m, x: smoothgrad(m, x, method=grad_cam, n_samples=1), ValueError,
     r"smoothgrad: method grad_cam returned shape \(4, 6, 6\), expected the input's shape "
     r"\(4, 3, 23, 23\)"),
    (lambda m, x: integrated_gradients(m, x, steps=0), ValueError,
     "steps must be an int >= 1, got 0"),
    (lambda m, x: integrated_gradients(m, x, steps=1, method="riemann_left"), ValueError,
     r"steps must be >= 2 for riemann_left \(Captum's rule\), got 1"),
    (lambda m, x: integrated_gradients(m, x, method="simpson"), ValueError,
     "unknown integrated gradients method 'simpson'; valid choices are riemann_trapezoid, "
     "riemann_left, riemann_right, riemann_middle, gausslegendre"),
    (lambda m, x: integrated_gradients(m, x, baseline=np.zeros((3, 22, 23))), ValueError,
     r"baseline of shape \(3, 22, 23\) does not broadcast to x's shape \(4, 3, 23, 23\)"),
    (lambda m, x: integrated_gradients(m, x, baseline="black"), ValueError,
     "unknown baseline 'black'; valid choices are zeros, blur"),
    (lambda m, x: grad_cam(m, x, layer="features.9"), ValueError,
     r"grad_cam: no layer 'features.9' in the model; layers are \['0', '1', "),
    (lambda m, x: grad_cam(m, x, layer=11), ValueError, r"or an index 0..10\)"),
    (lambda m, x: grad_cam(m, x, layer="7"), ValueError,
     r"grad_cam: layer '7' \(Linear\) has output shape \(4, 16\), not \(N, C, h, w\); "
     r"Grad-CAM needs a spatial layer, one of \['0', '1', '2', '3', '4', '5'\]"),
    (lambda m, x: guided_grad_cam(m, x, layer="6"), ValueError, r"layer '6' \(Flatten\)"),
    (lambda m, x: occlusion(m, x, window=24), ValueError,
     r"occlusion: window \(24, 24\) is larger than the image \(23, 23\)"),
    (lambda m, x: occlusion(m, x, window=(4, 30)), ValueError, r"window \(4, 30\) is larger"),
    (lambda m, x: occlusion(m, x, window=4, stride=5), ValueError,
     r"occlusion: stride \(5, 5\) must be at most the window \(4, 4\)"),
    (lambda m, x: occlusion(m, x, window=(1, 2, 3)), ValueError,
     r"window must be an int or a pair \(h, w\) of ints >= 1"),
    (lambda m, x: occlusion(m, x, baseline=np.zeros(5)), ValueError,
     r"baseline of shape \(5,\) does not broadcast"),
    (lambda m, x: guided_backprop(m, x[0]), ValueError,
     r"expected x shaped \(N, C, H, W\), got shape \(3, 23, 23\)"),
    (lambda m, x: deconvnet(m, x.astype(np.int64)), TypeError,
     "expected x of dtype float32 or float64, got int64"),
])
def test_bad_input_names_the_valid_choices(net_and_x, call, error, message):
    model, _, x = net_and_x
    with pytest.raises(error, match=message):
        call(model, x)


def test_no_conv_layer_for_grad_cam():
    model = minicnn.Sequential([minicnn.Flatten(), minicnn.Linear(12, 2)])
    with pytest.raises(ValueError, match="grad_cam: the model has no Conv2d layer to default to"):
        grad_cam(model, np.zeros((1, 3, 2, 2), np.float32))


# ============================================================== float32, the shipped model

def test_float32_in_float32_out(net_and_x):
    model, _, x = net_and_x
    model32, x32 = small_net(dtype=np.float32), x.astype(np.float32)
    for name, fn in METHODS.items():
        kwargs = {"smoothgrad": {"noise": np.full((2, 1, 3, 23, 23), 0.1)},
                  "integrated_gradients": {"steps": 4},
                  "occlusion": {"window": 8, "stride": 8}}.get(name, {})
        got = fn(model32, x32, TARGETS, **kwargs)
        assert got.dtype == np.float32, name
        want = fn(model, x, TARGETS, **kwargs)
        assert_close(got.astype(np.float64), want, rtol=1e-4)


@pytest.fixture(scope="module")
def shipped():
    """The shipped model in float64 and its torch twin, or a skip until weights/ has it."""
    from minicnn.io.weights import default_weights_path
    if not default_weights_path().is_file():
        pytest.skip(f"{default_weights_path()} not committed yet")
    model = minicnn.load().astype(np.float64)
    x = np.random.default_rng(5).normal(size=(1, 3, 64, 64))
    return model, torch_twin(model), x


def test_shipped_model_methods_equal_captum(shipped):
    model, net, x = shipped
    targets = [int(c) for c in model.forward(x).argmax(1)]
    layer = default_cam_layer(model)
    index = model.index(layer)
    assert type(model[layer]).__name__ == "ReLU" and type(model[index - 1]).__name__ == "Conv2d"
    cases = [
        (guided_backprop(model, x),
         captum(captum_attr.GuidedBackprop, net, x, target=targets), 1e-9),
        (deconvnet(model, x), captum(captum_attr.Deconvolution, net, x, target=targets), 1e-9),
        (grad_cam(model, x)[:, None],
         captum(captum_attr.LayerGradCam, net, x, net[index], target=targets,
                relu_attributions=True), 1e-9),
        (guided_grad_cam(model, x),
         captum(captum_attr.GuidedGradCam, net, x, net[index], target=targets,
                interpolate_mode="bilinear"), 1e-9),
        (integrated_gradients(model, x, steps=4, batch_size=4),
         captum(captum_attr.IntegratedGradients, net, x, target=targets, n_steps=4), 1e-6),
        (occlusion(model, x, window=32, stride=24),
         captum(captum_attr.Occlusion, net, x, target=targets, sliding_window_shapes=(3, 32, 32),
                strides=(3, 24, 24)), 1e-6),
    ]
    for got, want, rtol in cases:
        assert_close(got, want, rtol=rtol)
