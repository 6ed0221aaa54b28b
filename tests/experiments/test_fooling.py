"""minicnn.experiments.fooling: the fewest normalised-gradient steps that flip the prediction."""
import numpy as np
import pytest

from minicnn.experiments.fooling import fool
from tests.helpers.nets import tiny_net


@pytest.mark.parametrize("seed", [0, 1])
def test_fooled_after_the_returned_steps_and_not_one_fewer(seed):
    model = tiny_net(seed)
    x = np.random.default_rng(10 + seed).normal(size=(1, 3, 15, 15))
    original = int(model.forward(x).argmax())
    target = (original + 1) % 4
    result = fool(model, x, target, lr=0.2, max_steps=200)
    assert result.fooled and result.steps > 1
    assert int(model.forward(result.image[None]).argmax()) == target
    assert result.original_class == original and result.predicted_class == target
    np.testing.assert_allclose(result.perturbation, result.image - x[0])
    # each step has L2 length lr, so the total is at most steps * lr
    assert np.linalg.norm(result.perturbation) <= result.steps * 0.2 + 1e-9
    fewer = fool(model, x, target, lr=0.2, max_steps=result.steps - 1)
    assert not fewer.fooled and fewer.steps == result.steps - 1
    assert int(model.forward(fewer.image[None]).argmax()) != target
    assert result.scores.shape == (result.steps + 1, 4)


def test_already_the_target_takes_no_step_and_errors():
    model = tiny_net()
    x = np.random.default_rng(3).normal(size=(3, 15, 15))
    pred = int(model.forward(x[None]).argmax())
    result = fool(model, x, pred)
    assert result.steps == 0 and result.fooled and not result.perturbation.any()
    with pytest.raises(ValueError, match=r"fool: target \(a class index\) must be an int in 0..3, got 7"):
        fool(model, x, 7)
    with pytest.raises(ValueError, match=r"fool: image must be one image shaped \(C, H, W\) or \(1, C, H, W\), got shape \(2, 3, 15, 15\)"):
        fool(model, np.zeros((2, 3, 15, 15)), 1)
    with pytest.raises(TypeError, match="fool: image must have dtype float32 or float64, got int64"):
        fool(model, np.zeros((3, 15, 15), np.int64), 1)
