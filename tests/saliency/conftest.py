"""The network and images most saliency tests share, and their torch twin."""
import numpy as np
import pytest

from tests.helpers.nets import small_net
from tests.helpers.torch_twin import torch_twin

TARGETS = [1, 0, 4, 2]


@pytest.fixture(scope="module")
def net_and_x():
    """small_net (conv/relu/maxpool x2, linear/relu/dropout/linear, float64) and 4 images."""
    return small_net(), np.random.default_rng(1).normal(size=(4, 3, 23, 23))


@pytest.fixture(scope="module")
def twin(net_and_x, torch):
    """The same network in torch.nn (float64, eval mode)."""
    return torch_twin(net_and_x[0])


@pytest.fixture(autouse=True)
def _quiet_captum():
    """Captum warns that the input does not require grad and sets it itself: nothing to act
    on."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        yield
