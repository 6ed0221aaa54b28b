"""minicnn.saliency.maps: the paper's map, attribution -> map, and the bilinear resize."""
import numpy as np
import pytest

from minicnn.saliency import grad_cam, saliency_map, to_map, upsample_bilinear


def test_saliency_map_is_max_abs_over_channels():
    grad = np.zeros((2, 3, 2, 2))
    grad[0, :, 0, 0] = [0.1, -0.7, 0.3]      # the negative channel wins: |-0.7|
    grad[0, :, 1, 1] = [0.2, 0.2, 0.2]
    grad[1, 2, 0, 1] = -5.0
    m = saliency_map(grad)
    assert m.shape == (2, 2, 2)
    np.testing.assert_array_equal(m[0], [[0.7, 0.0], [0.0, 0.2]])
    np.testing.assert_array_equal(m[1], [[0.0, 5.0], [0.0, 0.0]])


def test_to_map_max_abs_or_signed_sum_and_coarse_maps_upsampled(net_and_x):
    grad = np.zeros((1, 3, 2, 2))
    grad[0, :, 0, 0] = [0.1, -0.7, 0.3]
    np.testing.assert_array_equal(to_map(grad, (2, 2))[0], saliency_map(grad)[0])
    np.testing.assert_allclose(to_map(grad, (2, 2), signed=True)[0, 0, 0], -0.3)
    model, x = net_and_x
    cam = grad_cam(model, x, 1)                                   # (4, 6, 6)
    np.testing.assert_allclose(to_map(cam, (23, 23)), grad_cam(model, x, 1, upsample=True))
    assert to_map(cam, (6, 6)) is not cam and np.array_equal(to_map(cam, (6, 6)), cam)
    assert to_map(grad.astype(np.float32), (2, 2)).dtype == np.float64


@pytest.mark.parametrize("size, out", [((5, 5), (23, 23)), ((3, 7), (10, 4)), ((8, 8), (8, 8)),
                                       ((6, 9), (2, 3)), ((1, 4), (5, 9)), ((4, 4), (64, 64))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_upsample_bilinear_equals_torch_interpolate(torch, size, out, dtype):
    maps = np.random.default_rng(0).normal(size=(2,) + size).astype(dtype)
    want = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=out,
                                           mode="bilinear", align_corners=False)[:, 0].numpy()
    got = upsample_bilinear(maps, out)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("call, error, message", [
    (lambda: saliency_map(np.zeros((3, 4))), ValueError,
     r"grad must be 4-D, shaped \(N, C, H, W\), got shape \(3, 4\)"),
    (lambda: saliency_map([[1.0]]), TypeError, r"grad must be a numpy.ndarray"),
    (lambda: to_map(np.zeros((1, 3, 4, 4)), (5, 5)), ValueError,
     r"attribution must be shaped \(N, C, 5, 5\) or \(N, h, w\), got shape \(1, 3, 4, 4\)"),
    (lambda: upsample_bilinear(np.zeros((2, 2)), (4, 4)), ValueError,
     r"upsample_bilinear: maps must be 3-D, shaped \(N, h, w\), got shape \(2, 2\)"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
