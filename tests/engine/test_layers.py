"""Every layer's forward and input gradient against PyTorch (torch.nn.functional + autograd)
and against central finite differences, on both kernel implementations."""
import numpy as np
import pytest

from tests.helpers.compare import assert_close
from tests.helpers.gradcheck import numerical_input_gradient
from minicnn import (AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d,
                     ReLU)

DTYPES = [np.float64, np.float32]


def torch_forward_backward(fn, x, grad_out):
    """PyTorch's fn(x) and d(sum(fn(x) * grad_out))/dx as numpy arrays."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # keep torch's thread pool out of BLAS's way
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt)
    out.backward(torch.tensor(grad_out))
    return out.detach().numpy(), xt.grad.numpy()


def check_against_torch(layer, fn, x, rng):
    out = layer.forward(x)
    grad_out = rng.standard_normal(out.shape).astype(x.dtype)
    out_t, grad_t = torch_forward_backward(fn, x, grad_out)
    assert out.dtype == x.dtype
    assert_close(out, out_t, x.dtype, what=f"{layer!r} forward")
    grad = layer.backward(grad_out)
    assert grad.dtype == x.dtype
    assert_close(grad, grad_t, x.dtype, what=f"{layer!r} backward")


def random_geometry(rng, pool):
    kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    padding = tuple(int(rng.integers(0, (k // 2 if pool else 2) + 1)) for k in kernel)
    H, W = (int(rng.integers(max(1, k - 2 * p), 12)) for k, p in zip(kernel, padding))
    return (int(rng.choice([1, 2])), int(rng.integers(1, 4)), H, W), kernel, stride, padding


# ----------------------------------------------------------------------------- against PyTorch

@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_matches_torch(kernel_name, dtype, rng):
    F = pytest.importorskip("torch.nn.functional")
    for _ in range(25):
        shape, kernel, stride, padding = random_geometry(rng, pool=False)
        layer = Conv2d(shape[1], int(rng.integers(1, 5)), kernel, stride, padding,
                       bias=bool(rng.random() < 0.7), dtype=dtype, rng=rng)
        x = rng.standard_normal(shape).astype(dtype)
        torch = pytest.importorskip("torch")
        w = torch.tensor(layer.weight)
        b = None if layer.bias is None else torch.tensor(layer.bias)
        check_against_torch(layer, lambda t: F.conv2d(t, w, b, stride, padding), x, rng)


def test_conv2d_unused_last_rows_get_zero_gradient(kernel_name):
    """(H + 2p - KH) % stride != 0: the last input rows are in no window."""
    layer = Conv2d(1, 1, 2, stride=3, dtype=np.float64)
    x = np.ones((1, 1, 7, 7))  # windows cover rows 0-1 and 3-4; rows 2, 5, 6 are unused
    layer.forward(x)
    grad = layer.backward(np.ones((1, 1, 2, 2)))
    assert np.all(grad[0, 0, [2, 5, 6], :] == 0) and np.all(grad[0, 0, :, [2, 5, 6]] == 0)
    assert np.all(grad[0, 0, :2, :2] != 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_matches_torch(kernel_name, dtype, rng):
    F = pytest.importorskip("torch.nn.functional")
    for trial in range(30):
        shape, kernel, stride, padding = random_geometry(rng, pool=True)
        layer = MaxPool2d(kernel, stride, padding)
        if trial % 3 == 0:
            x = rng.integers(0, 3, shape).astype(dtype)  # ties everywhere
        elif trial % 3 == 1:
            x = np.full(shape, -2.5, dtype)  # constant input: every window is one big tie
        else:
            x = rng.standard_normal(shape).astype(dtype)
        check_against_torch(layer, lambda t: F.max_pool2d(t, kernel, stride, padding), x, rng)


def test_maxpool2d_tie_goes_to_first_maximum(kernel_name):
    layer = MaxPool2d(2)
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]]]])  # three tied maxima; row-major first is (0, 1)
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 1], [0, 0]])


def test_maxpool2d_padding_is_minus_infinity(kernel_name):
    layer = MaxPool2d(2, stride=2, padding=1)
    x = -np.ones((1, 1, 2, 2))  # all negative: zero padding would win, -inf padding never does
    out = layer.forward(x)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_avgpool2d_matches_torch(kernel_name, dtype, rng):
    F = pytest.importorskip("torch.nn.functional")
    for _ in range(25):
        shape, kernel, stride, padding = random_geometry(rng, pool=True)
        layer = AvgPool2d(kernel, stride, padding)
        x = rng.standard_normal(shape).astype(dtype)
        check_against_torch(layer, lambda t: F.avg_pool2d(t, kernel, stride, padding), x, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_size, out_size", [
    ((7, 7), (3, 3)), ((5, 5), (7, 7)), ((7, 5), (2, 3)), ((6, 9), (6, 9)), ((1, 1), (3, 2)),
    ((14, 14), (7, 7)), ((3, 8), (5, 1))])
def test_adaptive_avgpool2d_matches_torch(kernel_name, dtype, in_size, out_size, rng):
    F = pytest.importorskip("torch.nn.functional")
    for N in (1, 3):
        x = rng.standard_normal((N, 2) + in_size).astype(dtype)
        check_against_torch(AdaptiveAvgPool2d(out_size),
                            lambda t: F.adaptive_avg_pool2d(t, out_size), x, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_linear_flatten_dropout_match_torch(dtype, rng):
    F = pytest.importorskip("torch.nn.functional")
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 2, 5, 4)).astype(dtype)
    x[0, 0, 0, :2] = 0.0  # ReLU'(0) = 0 in both
    check_against_torch(ReLU(), F.relu, x, rng)
    check_against_torch(Flatten(), lambda t: torch.flatten(t, 1), x, rng)
    check_against_torch(Dropout(0.3), lambda t: F.dropout(t, 0.3, training=False), x, rng)
    for N, bias in [(1, True), (4, False)]:
        layer = Linear(7, 5, bias=bias, dtype=dtype, rng=rng)
        w = torch.tensor(layer.weight)
        b = None if layer.bias is None else torch.tensor(layer.bias)
        check_against_torch(layer, lambda t: F.linear(t, w, b),
                            rng.standard_normal((N, 7)).astype(dtype), rng)


# ----------------------------------------------------------------------------- finite differences

def away_from_kinks(rng, shape):
    """Distinct values, none near 0, so ReLU and max-pool are differentiable with margin."""
    values = (rng.permutation(int(np.prod(shape))) + 1.0) * 0.05  # steps of 0.05 >> h
    return (values * rng.choice([-1.0, 1.0], values.size)).reshape(shape)


@pytest.mark.parametrize("make_layer, shape", [
    (lambda: Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dtype=np.float64, rng=0), (2, 2, 5, 4)),
    (lambda: Conv2d(1, 2, 4, stride=3, dtype=np.float64, rng=1), (1, 1, 8, 6)),
    (lambda: ReLU(), (2, 3, 3, 2)),
    (lambda: MaxPool2d(3, stride=2, padding=1), (2, 2, 5, 6)),
    (lambda: MaxPool2d((2, 3), stride=(1, 2)), (1, 2, 4, 5)),
    (lambda: AvgPool2d(3, stride=2, padding=1), (2, 2, 5, 6)),
    (lambda: AdaptiveAvgPool2d((3, 4)), (1, 2, 7, 5)),
    (lambda: Flatten(), (2, 2, 2, 3)),
    (lambda: Linear(6, 4, dtype=np.float64, rng=2), (3, 6)),
    (lambda: Dropout(0.5), (2, 5)),
], ids=["conv-rect", "conv-stride3", "relu", "maxpool-pad", "maxpool-rect", "avgpool",
        "adaptive", "flatten", "linear", "dropout"])
def test_backward_matches_finite_differences(kernel_name, make_layer, shape, rng):
    layer = make_layer()
    x = away_from_kinks(rng, shape)
    grad_out = rng.standard_normal(layer.forward(x).shape)
    numerical = numerical_input_gradient(layer.forward, x, grad_out)
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(grad_out), numerical, rtol=1e-7, atol=1e-8)


# ----------------------------------------------------------------------------- ReLU rules

def test_relu_rules_on_known_arrays():
    layer = ReLU()
    layer.forward(np.array([[-1.0, 2.0, 0.0, 3.0, 4.0]]))
    grad_out = np.array([[5.0, -4.0, 7.0, 6.0, -1.0]])
    # "gradient": where the forward input was > 0 (x == 0 blocks: ReLU'(0) = 0)
    np.testing.assert_array_equal(layer.backward(grad_out), [[0, -4, 0, 6, -1]])
    # "deconvnet": where the incoming gradient is > 0, whatever the forward input was
    np.testing.assert_array_equal(layer.backward(grad_out, rule="deconvnet"), [[5, 0, 7, 6, 0]])
    # "guided": both
    np.testing.assert_array_equal(layer.backward(grad_out, rule="guided"), [[0, 0, 0, 6, 0]])


def test_guided_and_deconvnet_differ_where_the_input_was_negative():
    layer = ReLU()
    layer.forward(np.array([-3.0, 1.0]))
    g = np.array([2.0, 2.0])
    assert layer.backward(g, rule="deconvnet").tolist() == [2.0, 2.0]
    assert layer.backward(g, rule="guided").tolist() == [0.0, 2.0]


def test_relu_unknown_rule():
    layer = ReLU()
    layer.forward(np.ones(3))
    with pytest.raises(ValueError, match=r"ReLU: unknown backward rule 'smooth'; valid rules are "
                                         r"\('gradient', 'deconvnet', 'guided'\)"):
        layer.backward(np.ones(3), rule="smooth")


# ----------------------------------------------------------------------------- bad input

def test_bad_input_messages():
    conv = Conv2d(3, 4, 3)
    with pytest.raises(TypeError, match=r"Conv2d: input must be a numpy.ndarray shaped \(N, C, H, W\), got list"):
        conv.forward([[1.0]])
    with pytest.raises(TypeError, match=r"Conv2d: input must have dtype float32 or float64, got int64"):
        conv.forward(np.ones((1, 3, 5, 5), dtype=np.int64))
    with pytest.raises(TypeError, match=r"got float16"):
        conv.forward(np.ones((1, 3, 5, 5), dtype=np.float16))
    with pytest.raises(TypeError, match=r"got object"):
        conv.forward(np.ones((1, 3, 5, 5), dtype=object))
    with pytest.raises(ValueError, match=r"Conv2d: input must be 4-D, shaped \(N, C, H, W\), got shape \(3, 5, 5\)"):
        conv.forward(np.ones((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: expected 3 input channels, got input of shape \(1, 4, 5, 5\)"):
        conv.forward(np.ones((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: kernel \(3, 3\) is larger than the padded input \(2, 5\)"):
        conv.forward(np.ones((1, 3, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d: kernel \(4, 4\) is larger than the padded input \(3, 3\)"):
        MaxPool2d(4, padding=0).forward(np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"Linear: expected input of shape \(N, 8\), got \(2, 7\)"):
        Linear(8, 2).forward(np.ones((2, 7)))
    with pytest.raises(ValueError, match=r"AvgPool2d: padding must be at most half the kernel size"):
        AvgPool2d(2, padding=2)


def test_backward_state_messages():
    conv = Conv2d(1, 2, 3)
    conv.name = "features.0"  # as a Sequential names it
    with pytest.raises(ValueError, match=r"Conv2d 'features.0': backward called before forward"):
        conv.backward(np.ones((1, 2, 3, 3), np.float32))
    conv.forward(np.ones((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d 'features.0': grad_out must have the forward "
                                         r"output's shape \(1, 2, 3, 3\), got \(1, 2, 3, 4\)"):
        conv.backward(np.ones((1, 2, 3, 4), np.float32))
    with pytest.raises(TypeError, match=r"grad_out must have dtype float32 or float64, got int32"):
        conv.backward(np.ones((1, 2, 3, 3), np.int32))


def test_float64_input_casts_float32_weights_once():
    layer = Linear(3, 2)  # float32 weights
    x = np.ones((1, 3))
    out = layer.forward(x)
    assert out.dtype == np.float64
    cast = layer._weight_as("weight", np.dtype(np.float64))
    assert layer._weight_as("weight", np.dtype(np.float64)) is cast  # cached
    np.testing.assert_allclose(out, x @ layer.weight.astype(np.float64).T + layer.bias, rtol=1e-15)
    layer.weight = np.zeros((2, 3), np.float32)  # a new array invalidates the cache
    np.testing.assert_allclose(layer.forward(x), np.broadcast_to(layer.bias, (1, 2)), rtol=1e-7)
