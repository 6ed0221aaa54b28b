"""minicnn.saliency.baselines: the blur and what every baseline argument becomes."""
import numpy as np
import pytest

from minicnn.saliency import baseline_like, blur, integrated_gradients, occlusion


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


def test_every_baseline_becomes_an_array_shaped_like_x():
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 5)).astype(np.float32)
    for given, want in [(None, np.zeros_like(x)), (0, np.zeros_like(x)), ("zeros", np.zeros_like(x)),
                        ("blur", blur(x)), (0.5, np.full_like(x, 0.5)),
                        (np.arange(3.0)[:, None, None], np.broadcast_to(np.arange(3.0)[:, None, None], x.shape))]:
        got = baseline_like(x, given)
        assert got.shape == x.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x: blur(x, sigma=0), ValueError, r"blur sigma \(pixels\) must be a number > 0, got 0"),
    (lambda m, x: blur(x, sigma="2"), TypeError, r"blur sigma \(pixels\) must be a number > 0, got '2'"),
    (lambda m, x: integrated_gradients(m, x, baseline=np.zeros((3, 22, 23))), ValueError,
     r"baseline of shape \(3, 22, 23\) does not broadcast to x's shape \(4, 3, 23, 23\)"),
    (lambda m, x: integrated_gradients(m, x, baseline="black"), ValueError,
     "unknown baseline 'black'; valid choices are zeros, blur"),
    (lambda m, x: integrated_gradients(m, x, baseline=True), TypeError,
     "baseline must be a number, an array, 'zeros' or 'blur', got True"),
    (lambda m, x: occlusion(m, x, baseline=np.zeros(5)), ValueError,
     r"baseline of shape \(5,\) does not broadcast"),
])
def test_bad_baselines(net_and_x, call, error, message):
    model, x = net_and_x
    with pytest.raises(error, match=message):
        call(model, x)
