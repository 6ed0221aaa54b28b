"""minicnn.experiments.fooling: the fewest normalised-gradient steps that flip the prediction."""
import numpy as np
import pytest

from minicnn.experiments.fooling import fool
from nets import small_net


@pytest.mark.parametrize("seed", [0, 1])
def test_fooled_after_the_returned_steps_and_not_one_fewer(seed):
    model = small_net(seed)
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
    model = small_net()
    x = np.random.default_rng(3).normal(size=(3, 15, 15))
    pred = int(model.forward(x[None]).argmax())
    result = fool(model, x, pred)
    assert result.steps == 0 and result.fooled and not result.perturbation.any()
    with pytest.raises(ValueError, match="target must be a class index 0..3, got 7"):
        fool(model, x, 7)
    with pytest.raises(ValueError, match=r"one image \(C, H, W\) or \(1, C, H, W\)"):
        fool(model, np.zeros((2, 3, 15, 15)), 1)
