"""minicnn.experiments.classviz: gradient ascent on S_c(I) - lambda ||I||^2 from the mean image."""
import numpy as np
import pytest

from minicnn.experiments.classviz import class_model, class_models, objective_and_gradient, pixel_range
from minicnn.io.images import Preprocess

from tests.helpers.nets import TINY_SHAPE, tiny_net


def test_gradient_is_the_objectives_derivative_by_finite_differences():
    model = tiny_net()
    image = np.random.default_rng(1).normal(size=TINY_SHAPE)
    l2 = 0.3
    _, _, g = objective_and_gradient(model, image, 2, l2)
    rng = np.random.default_rng(2)
    h = 1e-6
    for _ in range(10):
        idx = tuple(rng.integers(0, s) for s in TINY_SHAPE)
        up, down = image.copy(), image.copy()
        up[idx] += h
        down[idx] -= h
        numeric = (objective_and_gradient(model, up, 2, l2)[0]
                   - objective_and_gradient(model, down, 2, l2)[0]) / (2 * h)
        assert g[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_plain_ascent_never_lowers_the_objective_and_raises_the_score():
    model = tiny_net()
    # the net is piecewise linear: a step small against the distance to the next ReLU kink
    # is an ascent step (lr=0.02 crosses one here and dips once)
    image, history = class_model(model, 1, steps=100, lr=0.01, l2=0.05, dtype=np.float64,
                                 return_history=True)
    J = np.array(history["objective"])
    assert len(J) == 101 and image.shape == TINY_SHAPE
    assert (np.diff(J) >= -1e-12).all()
    assert history["score"][-1] > history["score"][0] + 20       # -7.9 -> 13.6
    assert J[0] == pytest.approx(history["score"][0])       # the start is the zero image
    assert history["objective"][-1] == pytest.approx(objective_and_gradient(
        model, image, 1, 0.05)[0])


def test_regularisers_clip_to_the_pixel_range_and_are_seeded():
    model = tiny_net()
    prep = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25))
    options = dict(steps=25, lr=0.5, l2=1e-3, jitter=2, blur_every=5, blur_sigma=0.7,
                   clip=True, prep=prep, seed=4)
    a = class_model(model, 3, **options)
    low, high = pixel_range(prep, np.float32)
    assert (a >= low).all() and (a <= high).all() and a.dtype == np.float32
    np.testing.assert_array_equal(a, class_model(model, 3, **options))
    assert not np.array_equal(a, class_model(model, 3, **{**options, "seed": 5}))


def test_one_image_per_class_and_errors():
    model = tiny_net()
    images = class_models(model, steps=3, lr=0.01)
    assert images.shape == (4,) + TINY_SHAPE
    with pytest.raises(ValueError, match=r"target \(a class index\) must be an int in 0..3, got 4"):
        class_model(model, 4, steps=1)
    model.meta = {}
    with pytest.raises(ValueError, match=r"no meta\['input_shape'\] or meta\['preprocess'\]; pass "
                                         r"input_shape"):
        class_model(model, 0, steps=1)


def test_normalized_steps_have_length_lr():
    model = tiny_net()
    one = class_model(model, 0, steps=1, lr=0.3, normalize=True, dtype=np.float64)
    assert np.linalg.norm(one) == pytest.approx(0.3)       # from the zero image
