"""minicnn._checks: the same mistake gets the same exception and the same words everywhere."""
import numpy as np
import pytest

from minicnn import saliency
from minicnn._checks import (check_array, check_choice, check_finite, check_images, check_int,
                             check_number)
from minicnn.experiments.classviz import class_model
from minicnn.experiments.fooling import fool
from tests.helpers.nets import tiny_net


@pytest.mark.parametrize("call, error, message", [
    (lambda: check_int(2.5, "n_samples", 1), TypeError, "n_samples must be an int >= 1, got 2.5"),
    (lambda: check_int(0, "n_samples", 1), ValueError, "n_samples must be an int >= 1, got 0"),
    (lambda: check_int(True, "steps", 0), TypeError, "steps must be an int >= 0, got True"),
    (lambda: check_int(9, "target", 0, 3), ValueError, r"target must be an int in 0..3, got 9"),
    (lambda: check_int(np.int64(2), "k", 0, 3) and None, None, None),
    (lambda: check_number("1", "lr", above=0), TypeError, "lr must be a number > 0, got '1'"),
    (lambda: check_number(0.0, "lr", above=0), ValueError, "lr must be a number > 0, got 0.0"),
    (lambda: check_number(float("nan"), "p", 0, 1), ValueError, "p must be a number >= 0 and <= 1"),
    (lambda: check_choice("mean", ("a", "b"), "kind"), ValueError,
     "unknown kind 'mean'; valid choices are a, b"),
    (lambda: check_array([1.0], "x"), TypeError, "x must be a numpy.ndarray, got list"),
    (lambda: check_array(np.zeros(2, np.int32), "x"), TypeError,
     "x must have dtype float32 or float64, got int32"),
    (lambda: check_images(np.zeros((2, 3))), ValueError,
     r"x must be 4-D, shaped \(N, C, H, W\), got shape \(2, 3\)"),
    (lambda: check_finite(np.array([0.0, np.inf]), "x"), ValueError,
     r"x contains NaN or inf \(first at index \(1,\): inf\)"),
])
def test_messages(call, error, message):
    if error is None:
        call()
        return
    with pytest.raises(error, match=message):
        call()


def test_int_and_dtype_mistakes_are_type_errors_across_the_package():
    """A non-integer count and a non-float array are TypeErrors wherever they are given."""
    model = tiny_net()
    x = np.zeros((1, 3, 15, 15))
    for call in (lambda: saliency.smoothgrad(model, x, 0, n_samples=2.5),
                 lambda: saliency.integrated_gradients(model, x, 0, steps=2.5),
                 lambda: saliency.occlusion(model, x, 0, window=2.5),
                 lambda: class_model(model, 0, steps=2.5),
                 lambda: fool(model, x, 0, max_steps=2.5),
                 lambda: saliency.gradient(model, x.astype(np.int64)),
                 lambda: fool(model, x.astype(np.int64), 0)):
        with pytest.raises(TypeError):
            call()
