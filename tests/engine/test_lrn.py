"""LRN (local response normalisation): forward and input gradient against PyTorch's
LocalResponseNorm and against central finite differences in float64, odd and even sizes,
windows wider than the channels, batch 1 and > 1, its config round trip and its bad input."""
import numpy as np
import pytest

import minicnn
from minicnn.engine.layers import LAYER_TYPES, layer_from_config
from minicnn.engine.layers.norm import LRN
from tests.helpers.compare import assert_close
from tests.helpers.gradcheck import numerical_input_gradient

# (size, alpha, beta, k, input shape): AlexNet's (5, 1e-4, 0.75, 1) and GoogLeNet's, an even
# size (PyTorch's window is not centred), a window wider than the channels, size 1, and an
# alpha large enough that the normalisation is far from the identity
CASES = [
    (5, 1e-4, 0.75, 1.0, (2, 7, 5, 3)),
    (4, 0.5, 0.75, 2.0, (1, 6, 3, 4)),
    (7, 1.0, 0.5, 1.5, (2, 3, 2, 2)),
    (1, 0.3, 1.2, 1.0, (1, 4, 3, 3)),
    (3, 2.0, 0.75, 0.5, (3, 5, 1, 2)),
]


def torch_lrn(x, grad_out, size, alpha, beta, k):
    """PyTorch's LocalResponseNorm(x) and the gradient of sum(out * grad_out) w.r.t. x."""
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    out = torch.nn.LocalResponseNorm(size, alpha, beta, k)(xt)
    out.backward(torch.tensor(grad_out))
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("case", CASES, ids=[f"size{c[0]}" for c in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lrn_matches_torch(case, dtype, rng):
    size, alpha, beta, k, shape = case
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    layer = LRN(size, alpha, beta, k)
    out = layer.forward(x)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    out_t, grad_t = torch_lrn(x, grad_out, size, alpha, beta, k)
    assert out.dtype == grad_out.dtype == dtype
    assert_close(out, out_t, dtype, what="LRN forward")
    grad = layer.backward(grad_out)
    assert grad.dtype == dtype
    assert_close(grad, grad_t, dtype, what="LRN backward")


@pytest.mark.parametrize("case", CASES, ids=[f"size{c[0]}" for c in CASES])
def test_lrn_gradient_matches_finite_differences(case, rng):
    size, alpha, beta, k, shape = case
    x = rng.standard_normal(shape) * 3
    layer = LRN(size, alpha, beta, k)
    grad_out = rng.standard_normal(layer.forward(x).shape)
    grad = layer.backward(grad_out)
    numerical = numerical_input_gradient(LRN(size, alpha, beta, k).forward, x, grad_out)
    np.testing.assert_allclose(grad, numerical, rtol=0, atol=1e-7 * max(1, np.abs(numerical).max()))


def test_lrn_by_hand():
    """Three channels, size 3, alpha = 3 (alpha / size = 1), beta = 1, k = 1: each value is
    divided by 1 + the sum of the squares of itself and its neighbours."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    out = LRN(3, alpha=3.0, beta=1.0, k=1.0).forward(x).ravel()
    np.testing.assert_allclose(out, [1 / (1 + 1 + 4), 2 / (1 + 1 + 4 + 9), 3 / (1 + 4 + 9)])


def test_lrn_config_round_trip():
    layer = LRN(5, 2e-4, 0.5, 2.0)
    assert layer.config() == {"type": "LRN", "size": 5, "alpha": 2e-4, "beta": 0.5, "k": 2.0}
    assert LAYER_TYPES["LRN"] is LRN
    again = layer_from_config(layer.config())
    assert isinstance(again, LRN) and again.config() == layer.config()


def test_lrn_in_a_weights_file(tmp_path, rng):
    """A model with an LRN saves and loads (its arguments pass the weights file's checks)."""
    model = minicnn.Sequential([minicnn.Conv2d(3, 4, 3), LRN(3, 1e-3, 0.75, 2.0),
                                minicnn.Flatten()])
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    again = minicnn.load(minicnn.save(model, tmp_path / "lrn.npz"))
    assert again[1].config() == model[1].config()
    np.testing.assert_array_equal(again.forward(x), model.forward(x))


@pytest.mark.parametrize("args, error, message", [
    ((0,), ValueError, "size must be >= 1 and k > 0, got size=0"),
    ((3, 1e-4, 0.75, 0.0), ValueError, "k > 0, got size=3, k=0.0"),
    ((2.5,), TypeError, "size must be an int, got 2.5"),
    ((True,), TypeError, "size must be an int, got True"),
    ((3, float("nan")), TypeError, "alpha must be a finite number, got nan"),
    ((3, 1e-4, "0.75"), TypeError, "beta must be a finite number, got '0.75'"),
])
def test_lrn_bad_arguments(args, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        LRN(*args)


def test_lrn_bad_input():
    layer = LRN(3)
    with pytest.raises(ValueError, match=r"LRN: input must be 4-D, shaped \(N, C, H, W\), got "
                                         r"shape \(2, 3\)"):
        layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="backward called before forward"):
        LRN(3).backward(np.zeros((1, 3, 2, 2)))
