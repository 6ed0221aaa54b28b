"""minicnn.saliency.occlusion against Captum, and its window rules."""
import numpy as np
import pytest

from minicnn.saliency import blur, occlusion
from minicnn.saliency.occlusion import occlusion_windows
from tests.helpers.compare import assert_relative
from tests.helpers.torch_twin import captum
from tests.saliency.conftest import TARGETS


@pytest.mark.parametrize("window, stride", [(3, 1), (5, 2), ((4, 6), (3, 4)), (23, 1), (7, 7)])
def test_occlusion_equals_captum(net_and_x, twin, captum_attr, window, stride):
    model, x = net_and_x
    w = window if isinstance(window, tuple) else (window, window)
    s = stride if isinstance(stride, tuple) else (stride, stride)
    want = captum(captum_attr.Occlusion, twin, x, target=TARGETS, sliding_window_shapes=(3,) + w,
                  strides=(1,) + s, baselines=0.3)
    got = occlusion(model, x, TARGETS, window=window, stride=stride, baseline=0.3,
                    batch_size=37)
    assert got.dtype == np.float64
    assert_relative(got, want, rtol=1e-6)      # Captum divides in float32 (.float() / weights)


def test_occlusion_with_an_image_baseline_equals_captum(net_and_x, twin, torch, captum_attr):
    model, x = net_and_x
    baseline = blur(x)
    want = captum(captum_attr.Occlusion, twin, x, target=TARGETS, sliding_window_shapes=(3, 6, 6),
                  strides=(3, 4, 4), baselines=torch.from_numpy(baseline))
    assert_relative(occlusion(model, x, TARGETS, window=6, stride=4, baseline=baseline), want,
                    rtol=1e-6)


def test_occlusion_of_the_whole_image_is_the_score_change(net_and_x):
    model, x = net_and_x
    scores = model.forward(x)
    drop = scores[range(4), TARGETS] - model.forward(np.zeros_like(x))[range(4), TARGETS]
    got = occlusion(model, x, TARGETS, window=23, stride=23)
    np.testing.assert_allclose(got, np.broadcast_to(drop[:, None, None, None], x.shape),
                               rtol=1e-12)


def test_windows_cover_every_pixel_and_the_last_is_cut_at_the_edge():
    boxes = occlusion_windows((10, 8), window=4, stride=3)
    assert [b[:2] for b in boxes[::3]] == [(0, 4), (3, 7), (6, 10)]   # rows: ceil(6/3)+1 = 3
    assert [b[2:] for b in boxes[:3]] == [(0, 4), (3, 7), (6, 8)]     # the last one cut at 8
    covered = np.zeros((10, 8), int)
    for y0, y1, x0, x1 in boxes:
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    assert len(occlusion_windows((64, 64))) == 225                     # the defaults: 8x8, stride 4


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x: occlusion(m, x, window=24), ValueError,
     r"occlusion: window \(24, 24\) is larger than the image \(23, 23\)"),
    (lambda m, x: occlusion(m, x, window=(4, 30)), ValueError, r"window \(4, 30\) is larger"),
    (lambda m, x: occlusion(m, x, window=4, stride=5), ValueError,
     r"occlusion: stride \(5, 5\) must be at most the window \(4, 4\)"),
    (lambda m, x: occlusion(m, x, window=(1, 2, 3)), ValueError,
     r"window must be an int or a pair \(h, w\) of ints >= 1"),
    (lambda m, x: occlusion(m, x, window=2.5), TypeError, r"window must be an int >= 1, got 2.5"),
    (lambda m, x: occlusion(m, x, batch_size=0), ValueError, "batch_size must be an int >= 1"),
])
def test_bad_input(net_and_x, call, error, message):
    model, x = net_and_x
    with pytest.raises(error, match=message):
        call(model, x)
