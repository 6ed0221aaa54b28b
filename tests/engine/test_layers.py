"""Every layer's forward and input gradient against PyTorch (torch.nn.functional + autograd)
and against central finite differences, on both kernel implementations."""
import numpy as np
import pytest

from tests.helpers.compare import assert_close
from tests.helpers.gradcheck import numerical_input_gradient
from minicnn import (AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d, Concat, Conv2d, Dropout,
                     Flatten, Linear, MaxPool2d, ReLU)

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


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_ceil_mode_matches_torch(kernel_name, dtype, rng):
    F = pytest.importorskip("torch.nn.functional")
    for trial in range(30):
        shape, kernel, stride, padding = random_geometry(rng, pool=True)
        layer = MaxPool2d(kernel, stride, padding, ceil_mode=True)
        x = (rng.integers(0, 3, shape) if trial % 2 else rng.standard_normal(shape)).astype(dtype)
        check_against_torch(layer, lambda t: F.max_pool2d(t, kernel, stride, padding,
                                                          ceil_mode=True), x, rng)
    # SqueezeNet's pools, and the case where the last window would start in the right padding
    for size, k, s, p, want in [(109, 3, 2, 0, 54), (55, 3, 2, 0, 27), (5, 2, 2, 1, 3),
                                (5, 3, 3, 1, 2), (6, 3, 2, 0, 3), (6, 2, 2, 0, 3)]:
        x = rng.standard_normal((1, 2, size, size)).astype(dtype)
        layer = MaxPool2d(k, s, p, ceil_mode=True)
        assert layer.forward(x).shape[2:] == (want, want), (size, k, s, p)
        check_against_torch(layer, lambda t: F.max_pool2d(t, k, s, p, ceil_mode=True), x, rng)


def test_maxpool2d_ceil_mode_last_window_is_partial(kernel_name):
    layer = MaxPool2d(2, ceil_mode=True)
    x = np.array([[[[-1.0, -2.0, -3.0, -4.0, -5.0]]]]).transpose(0, 1, 3, 2) * np.ones((1, 1, 1, 2))
    out = layer.forward(x)                      # rows [0, 1], [2, 3] and the partial [4]
    np.testing.assert_array_equal(out[0, 0, :, 0], [-1.0, -3.0, -5.0])
    grad = layer.backward(np.ones(out.shape))
    np.testing.assert_array_equal(grad[0, 0, :, 0], [1, 0, 1, 0, 1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm2d_eval_matches_torch(dtype, rng):
    F = pytest.importorskip("torch.nn.functional")
    torch = pytest.importorskip("torch")
    layer = BatchNorm2d(3, eps=1e-3, dtype=dtype)
    layer.weight, layer.bias = (rng.uniform(0.5, 1.5, 3).astype(dtype),
                                rng.uniform(-1, 1, 3).astype(dtype))
    layer.running_mean, layer.running_var = (rng.uniform(-1, 1, 3).astype(dtype),
                                             rng.uniform(0.2, 2, 3).astype(dtype))
    params = [torch.tensor(getattr(layer, a)) for a in ("running_mean", "running_var",
                                                        "weight", "bias")]
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    check_against_torch(layer, lambda t: F.batch_norm(t, *params, training=False, eps=1e-3),
                        x, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_and_concat_match_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    xs = [rng.standard_normal((2, c, 3, 4)).astype(dtype) for c in (3, 1, 2)]
    grad_out = rng.standard_normal((2, 6, 3, 4)).astype(dtype)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    torch.cat(ts, 1).backward(torch.tensor(grad_out))
    layer = Concat()
    assert_close(layer.forward(*xs), np.concatenate(xs, axis=1), dtype)
    for got, t_ in zip(layer.backward(grad_out), ts):
        assert_close(got, t_.grad.numpy(), dtype)
    same = [rng.standard_normal((2, 3, 4)).astype(dtype) for _ in range(3)]
    ts = [torch.tensor(x, requires_grad=True) for x in same]
    g = rng.standard_normal((2, 3, 4)).astype(dtype)
    (ts[0] + ts[1] + ts[2]).backward(torch.tensor(g))
    add = Add()
    assert_close(add.forward(*same), same[0] + same[1] + same[2], dtype)
    grads = add.backward(g)
    assert len(grads) == 3
    for got, t_ in zip(grads, ts):
        assert_close(got, t_.grad.numpy(), dtype)


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
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool2d_matches_torch(kernel_name, dtype, ceil_mode, count_include_pad, rng):
    """Every window rule: padding counted or not, and ceil_mode's last, partial windows,
    which divide by their part inside the padded input (or by their real inputs)."""
    F = pytest.importorskip("torch.nn.functional")
    for _ in range(25):
        shape, kernel, stride, padding = random_geometry(rng, pool=True)
        layer = AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad)
        x = rng.standard_normal(shape).astype(dtype)
        check_against_torch(layer, lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode,
                                                          count_include_pad), x, rng)


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
    (lambda: MaxPool2d(3, stride=2, ceil_mode=True), (2, 2, 6, 7)),
    (lambda: AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
    (lambda: Conv2d(3, 4, 1, stride=2, dtype=np.float64, rng=3), (2, 3, 5, 6)),
    (lambda: _batchnorm(), (2, 3, 4, 2)),
    (lambda: AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     (2, 2, 6, 7)),
], ids=["conv-rect", "conv-stride3", "relu", "maxpool-pad", "maxpool-rect", "avgpool",
        "adaptive", "flatten", "linear", "dropout", "maxpool-ceil", "global-avgpool",
        "conv1x1-stride2", "batchnorm", "avgpool-ceil-nopad"])
def test_backward_matches_finite_differences(kernel_name, make_layer, shape, rng):
    layer = make_layer()
    x = away_from_kinks(rng, shape)
    grad_out = rng.standard_normal(layer.forward(x).shape)
    numerical = numerical_input_gradient(layer.forward, x, grad_out)
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(grad_out), numerical, rtol=1e-7, atol=1e-8)


def _batchnorm():
    layer = BatchNorm2d(3, dtype=np.float64)
    layer.weight, layer.bias = np.array([0.5, -2.0, 1.5]), np.array([0.1, 0.0, -0.3])
    layer.running_mean, layer.running_var = np.array([1.0, -1.0, 0.0]), np.array([0.5, 2.0, 1.0])
    return layer


@pytest.mark.parametrize("layer, count", [(Add(), 2), (Add(), 3), (Concat(), 1), (Concat(), 3)])
def test_multi_input_backward_matches_finite_differences(layer, count, rng):
    xs = [rng.standard_normal((2, 2, 3, 3)) for _ in range(count)]
    out = layer.forward(*xs)
    grad_out = rng.standard_normal(out.shape)
    grads = layer.backward(grad_out)
    for k in range(count):
        def only_k(x, k=k):
            return layer.forward(*(x if i == k else xs[i] for i in range(count)))
        np.testing.assert_allclose(grads[k], numerical_input_gradient(only_k, xs[k], grad_out),
                                   rtol=1e-7, atol=1e-8)


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
    with pytest.raises(ValueError, match=r"Add: inputs must have one shape and dtype"):
        Add().forward(np.ones((1, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"Add: expected two or more inputs, got 1"):
        Add().forward(np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"Concat: inputs must agree in N, H, W and dtype"):
        Concat().forward(np.ones((1, 2, 3, 3)), np.ones((1, 2, 3, 4)))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 3 channels, got input of shape"):
        BatchNorm2d(3).forward(np.ones((1, 2, 3, 3), np.float32))


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
    cast = layer.weight_as("weight", np.dtype(np.float64))
    assert layer.weight_as("weight", np.dtype(np.float64)) is cast  # cached
    np.testing.assert_allclose(out, x @ layer.weight.astype(np.float64).T + layer.bias, rtol=1e-15)
    layer.weight = np.zeros((2, 3), np.float32)  # a new array invalidates the cache
    np.testing.assert_allclose(layer.forward(x), np.broadcast_to(layer.bias, (1, 2)), rtol=1e-7)
