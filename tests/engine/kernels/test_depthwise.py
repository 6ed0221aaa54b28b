"""The fast grouped and depthwise convolutions (kernels/fast/depthwise.py, the grouped and
dilated paths of kernels/fast/conv.py) against kernels/reference.py, over many random
shapes, serially and split over threads."""
import numpy as np
import pytest

from minicnn.engine.kernels import fast, reference
from minicnn.engine.kernels.fast import depthwise
from tests.engine.kernels.test_kernels import close
from tests.engine.kernels.test_kernels import every_kernel_threaded  # noqa: F401 (a fixture)


def random_case(rng, depthwise_only=False, big=False):
    """(x, w, b, stride, padding, dilation, groups): groups 1, 2, 3 or C (1-3 filters per
    channel), kernels 1-5 (7 when big), strides 1-3, paddings 0-3, dilations 1-3, odd sizes,
    batches of 1-3; the dilated kernel fits the padded input."""
    groups = 0 if depthwise_only else int(rng.choice([0, 1, 2, 3]))  # 0: groups = C
    C = int(rng.integers(1, 9 if big else 6)) if not groups else groups * int(rng.integers(1, 4))
    groups = groups or C
    F = groups * int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.choice([1, 2, 3, 5, 7] if big else [1, 2, 3, 4, 5], 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    padding = tuple(int(p) for p in rng.integers(0, 4, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, 2))
    top = 40 if big else 14
    sizes = []
    for k, p, d in zip(kernel, padding, dilation):
        low = max(1, d * (k - 1) + 1 - 2 * p)
        sizes.append(int(rng.integers(low, max(low + 1, top))))
    x = rng.standard_normal((int(rng.choice([1, 2, 3])), C, *sizes))
    w = rng.standard_normal((F, C // groups) + kernel)
    b = rng.standard_normal(F) if rng.random() < 0.7 else None
    return x, w, b, stride, padding, dilation, groups


def check_case(case, dtype):
    x, w, b, stride, padding, dilation, groups = case
    x, w = x.astype(dtype), w.astype(dtype)
    b = None if b is None else b.astype(dtype)
    out = reference.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    close(fast.conv2d_forward(x, w, b, stride, padding, dilation, groups), out, dtype)
    g = np.random.default_rng(x.size).standard_normal(out.shape).astype(dtype)
    close(fast.conv2d_backward_input(g, w, stride, padding, x.shape, dilation, groups),
          reference.conv2d_backward_input(g, w, stride, padding, x.shape, dilation, groups),
          dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grouped_and_dilated_convolutions_match(dtype):
    rng = np.random.default_rng(21)
    for _ in range(60):
        check_case(random_case(rng), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_depthwise_on_larger_maps_match(dtype):
    """Maps up to 39x39 and 7x7 kernels: several bands of rows, both phases of stride 2."""
    rng = np.random.default_rng(22)
    for _ in range(12):
        check_case(random_case(rng, depthwise_only=True, big=True), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threaded_grouped_convolutions_match(every_kernel_threaded, dtype):  # noqa: F811
    """Every layer split over 3 threads: depthwise by (image, channel range), other groups
    by (image, group, band of rows)."""
    rng = np.random.default_rng(23)
    for _ in range(40):
        check_case(random_case(rng), dtype)
    for _ in range(6):
        check_case(random_case(rng, depthwise_only=True, big=True), dtype)


@pytest.fixture
def fresh_plans():
    """Plans made under this test's settings only (they are cached per geometry)."""
    depthwise._plan.cache_clear()
    yield
    depthwise._plan.cache_clear()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_depthwise_in_narrow_bands(monkeypatch, fresh_plans, dtype):
    """SPAN outputs per pass: with a tiny SPAN every band is one row (or a few), forward and
    backward, and the last band is short."""
    monkeypatch.setattr(depthwise, "SPAN", 16)
    rng = np.random.default_rng(24)
    for _ in range(15):
        check_case(random_case(rng, depthwise_only=True, big=True), dtype)


@pytest.mark.parametrize("short_rows", [0, 1000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_depthwise_by_rows_and_by_index_maps(monkeypatch, fresh_plans, dtype, short_rows):
    """Every map through the row loops (_split_rows, _merge_rows), then every map through
    the index maps of short rows (_scatter_channel, _gather_channel)."""
    monkeypatch.setattr(depthwise, "SHORT_ROWS", short_rows)
    rng = np.random.default_rng(28)
    for _ in range(20):
        check_case(random_case(rng, depthwise_only=True, big=bool(rng.random() < 0.3)), dtype)


def test_the_depthwise_loops_run_only_for_groups_equal_to_channels(monkeypatch):
    calls = []
    for name in ("_depthwise_forward_loops", "_depthwise_backward_loops"):
        real = getattr(depthwise, name)
        monkeypatch.setattr(depthwise, name,
                            lambda *a, real=real, name=name: calls.append(name) or real(*a))
    rng = np.random.default_rng(25)
    x, g = rng.standard_normal((2, 6, 9, 9)), rng.standard_normal((2, 12, 9, 9))
    for groups in (6, 3, 2, 1):
        calls.clear()
        w = rng.standard_normal((12, 6 // groups, 3, 3))
        fast.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), groups)
        fast.conv2d_backward_input(g, w, (1, 1), (1, 1), x.shape, (1, 1), groups)
        depthwise_loops = {"_depthwise_forward_loops", "_depthwise_backward_loops"}
        assert set(calls) == (depthwise_loops if groups == 6 else set()), (groups, calls)


def test_non_contiguous_and_read_only_inputs():
    """Read-only inputs only to the depthwise loops, which take every input read-only (the
    im2col loops take the caller's array as it is: a read-only one compiles them again)."""
    rng = np.random.default_rng(26)
    x = rng.standard_normal((2, 4, 11, 9)).transpose(0, 1, 3, 2)  # a non-contiguous (2, 4, 9, 11)
    x_ro = x.copy()
    x_ro.flags.writeable = False
    for groups, inputs in [(4, (x, x_ro)), (2, (x,))]:
        weights = rng.standard_normal((8, 4 // groups, 3, 3))
        for inp in inputs:
            out = reference.conv2d_forward(inp, weights, None, (2, 1), (1, 1), (1, 2), groups)
            close(fast.conv2d_forward(inp, weights, None, (2, 1), (1, 1), (1, 2), groups), out,
                  np.float64)
            g = out[:, :, ::-1]  # non-contiguous
            args = (weights, (2, 1), (1, 1), inp.shape, (1, 2), groups)
            close(fast.conv2d_backward_input(g, *args),
                  reference.conv2d_backward_input(g, *args), np.float64)


def test_groups_one_and_dilation_one_take_the_plain_path(monkeypatch):
    """groups=1, dilation=1 give exactly what the call without them gives, and Winograd
    (the special paths) still runs there; with a dilation it does not."""
    from minicnn.engine.kernels.fast import winograd4
    calls = []
    real = winograd4.conv3x3
    monkeypatch.setattr(winograd4, "conv3x3", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(27)
    x, w = rng.standard_normal((1, 16, 32, 32)), rng.standard_normal((16, 16, 3, 3))
    plain = fast.conv2d_forward(x, w, None, (1, 1), (1, 1))
    assert calls
    np.testing.assert_array_equal(fast.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), 1),
                                  plain)
    calls.clear()
    fast.conv2d_forward(x, w, None, (1, 1), (2, 2), (2, 2), 1)
    assert not calls


def test_depthwise_loops_are_cached_on_disk_for_both_dtypes():
    """cache=True, plain ints and read-only inputs, weights and plans: after a call in each
    dtype, with any mix of writable and read-only arrays, each loop has exactly one version
    per dtype. (The dilated im2col loops that the grouped layers use are in test_kernels'
    test_both_dtypes_are_cached_on_disk.)"""
    loops = [depthwise._depthwise_forward_loops, depthwise._depthwise_backward_loops]
    for dtype in (np.float32, np.float64):
        for stride, dilation in (((1, 1), (1, 1)), ((2, 2), (1, 2)), ((3, 1), (2, 1))):
            x = np.ones((1, 2, 9, 9), dtype)
            w = np.ones((4, 1, 3, 3), dtype)
            x_ro = x.copy()
            x_ro.flags.writeable = False
            for inp in (x, x[:, :, ::-1], x_ro):
                out = fast.conv2d_forward(inp, w, None, stride, (1, 1), dilation, 2)
                fast.conv2d_backward_input(out, w, stride, (1, 1), x.shape, dilation, 2)
                w2 = np.ones((4, 1, 3, 3), dtype)
                fast.conv2d_backward_input(out, w2, stride, (1, 1), x.shape, dilation, 2)
    for loop in loops:
        assert loop._cache.__class__.__name__ == "FunctionCache"
        dtypes = {sig[0].dtype.name for sig in loop.signatures}
        assert {"float32", "float64"} <= dtypes, (loop.__name__, loop.signatures)
        assert len(loop.signatures) == 2, (loop.__name__, loop.signatures)
