"""kernels/fast/ against kernels/reference.py: same signatures, same answers, over many random
shapes."""
import numpy as np
import pytest

from minicnn.engine import kernels
from minicnn._checks import SettingError
from minicnn.engine.kernels import adaptive_bins, fast, reference
from minicnn.engine.kernels.fast import allocator, elementwise, winograd, winograd4
from minicnn.engine.kernels.fast import conv as fast_conv
from minicnn.engine.kernels.fast import pool as fast_pool

EXACT = {np.float64: 1e-12, np.float32: 1e-5}  # relative to the largest magnitude


def close(a, b, dtype):
    assert a.shape == b.shape and a.dtype == b.dtype == dtype
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    assert float(np.abs(a - b).max(initial=0.0)) <= EXACT[dtype] * scale


def random_window(rng, pool=False):
    """A random (x shape, kernel, stride, padding) with the kernel fitting the padded input."""
    kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    # PyTorch's pooling rule: padding <= kernel / 2
    padding = tuple(int(rng.integers(0, (k // 2 if pool else 2) + 1)) for k in kernel)
    H, W = (int(rng.integers(max(1, k - 2 * p), 13)) for k, p in zip(kernel, padding))
    shape = (int(rng.choice([1, 3])), int(rng.integers(1, 4)), H, W)
    return shape, kernel, stride, padding


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_convolutions_match(dtype):
    rng = np.random.default_rng(1)
    for _ in range(40):
        shape, kernel, stride, padding = random_window(rng)
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((int(rng.integers(1, 5)), shape[1]) + kernel).astype(dtype)
        b = rng.standard_normal(w.shape[0]).astype(dtype) if rng.random() < 0.7 else None
        out = reference.conv2d_forward(x, w, b, stride, padding)
        close(fast.conv2d_forward(x, w, b, stride, padding), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.conv2d_backward_input(g, w, stride, padding, shape),
              reference.conv2d_backward_input(g, w, stride, padding, shape), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pools_match(dtype):
    rng = np.random.default_rng(3)
    for trial in range(40):
        shape, kernel, stride, padding = random_window(rng, pool=True)
        x = rng.standard_normal(shape).astype(dtype)
        if trial % 3 == 0:  # many ties: both must pick the same (first) maximum
            x = rng.integers(0, 3, shape).astype(dtype)
        out, argmax = reference.maxpool2d_forward(x, kernel, stride, padding)
        out_f, argmax_f = fast.maxpool2d_forward(x, kernel, stride, padding)
        np.testing.assert_array_equal(out_f, out)
        np.testing.assert_array_equal(argmax_f, argmax)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.maxpool2d_backward(g, argmax, shape), reference.maxpool2d_backward(g, argmax, shape), dtype)

        ceil, counted = bool(trial % 2), trial % 4 < 2  # every combination of the options
        out = reference.avgpool2d_forward(x, kernel, stride, padding, ceil, counted)
        close(fast.avgpool2d_forward(x, kernel, stride, padding, ceil, counted), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.avgpool2d_backward(g, kernel, stride, padding, shape, ceil, counted),
              reference.avgpool2d_backward(g, kernel, stride, padding, shape, ceil, counted),
              dtype)

        size = tuple(int(s) for s in rng.integers(1, 9, 2))
        out = reference.adaptive_avgpool2d_forward(x, size)
        close(fast.adaptive_avgpool2d_forward(x, size), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.adaptive_avgpool2d_backward(g, shape), reference.adaptive_avgpool2d_backward(g, shape), dtype)


def test_adaptive_bins_follow_pytorch():
    assert adaptive_bins(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert adaptive_bins(5, 7) == [(0, 1), (0, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 5)]
    assert adaptive_bins(14, 7) == [(2 * i, 2 * i + 2) for i in range(7)]


def test_signatures_are_identical_both_ways():
    """Every reference kernel has a fast twin and every fast kernel a reference twin, with the
    same signature."""
    import inspect
    assert sorted(fast.__all__) == sorted(reference.__all__)
    for name in reference.__all__:
        assert inspect.signature(getattr(fast, name)) == inspect.signature(getattr(reference, name)), name


def test_maxpool_backward_rejects_out_of_range_argmax():
    g = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"argmax values must lie in \[0, 16\)"):
        fast.maxpool2d_backward(g, np.full((1, 1, 2, 2), 16), (1, 1, 4, 4))


def test_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 9, 8)).transpose(0, 1, 3, 2)  # a non-contiguous (3, 2, 8, 9)
    w = rng.standard_normal((2, 2, 3, 3))
    close(fast.conv2d_forward(x, w, None, (1, 2), (1, 1)),
          reference.conv2d_forward(x, w, None, (1, 2), (1, 1)), np.float64)
    np.testing.assert_array_equal(fast.maxpool2d_forward(x, (2, 2), (2, 2), (1, 0))[0],
                                  reference.maxpool2d_forward(x, (2, 2), (2, 2), (1, 0))[0])


def test_switch():
    previous = kernels.active_name()
    with kernels.use_kernels("reference"):
        assert kernels.active() is reference
        with kernels.use_kernels("fast"):
            assert kernels.active() is fast
        assert kernels.active_name() == "reference"
    assert kernels.active_name() == previous
    with pytest.raises(SettingError, match=r"MINICNN_KERNELS must be fast or reference, got 'numpy'"):
        kernels.use_kernels("numpy")
    assert kernels.active_name() == previous


def test_both_dtypes_are_cached_on_disk():
    """cache=True: after a call in each dtype, every jitted loop has machine code for both."""
    loops = [fast_conv._im2col_loops, fast_conv._col2im_loops, fast_pool._maxpool_forward_loops,
             fast_pool._maxpool_backward_loops, fast_pool._avgpool_forward_loops,
             fast_pool._avgpool_backward_loops, fast_pool._adaptive_forward_loops,
             fast_pool._adaptive_backward_loops, fast_conv._pad_flat_loops, fast_conv._shift_cols_loops,
             fast_conv._crop_bias_loops, elementwise._relu_forward_loops, elementwise._relu_backward_loops,
             fast_pool._maxpool2x2_forward_loops, fast_pool._maxpool3x3s2_forward_loops,
             fast_pool._maxpool_values_loops, fast_pool._maxpool2x2_values_loops,
             fast_pool._maxpool3x3s2_values_loops,
             winograd.pad_loops, winograd._input_transform_loops,
             winograd._output_transform_loops, winograd4._input_transform_loops,
             winograd4._output_transform_loops]  # (their helpers _bt6, _at6 are compiled into them)
    for dtype in (np.float32, np.float64):
        x = np.ones((1, 1, 4, 4), dtype)
        w = np.ones((1, 1, 2, 2), dtype)
        fast.conv2d_backward_input(fast.conv2d_forward(x, w, None, (1, 1), (0, 0)), w, (1, 1), (0, 0), x.shape)
        fast.conv2d_backward_input(fast.conv2d_forward(x, w, None, (2, 2), (0, 0)), w, (2, 2),
                                   (0, 0), x.shape)  # strided: im2col and col2im
        out, argmax = fast.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0))
        fast.maxpool2d_backward(out, argmax, x.shape)
        fast.maxpool2d_forward(x, (3, 3), (1, 1), (1, 1))
        fast.maxpool2d_forward(x, (3, 3), (2, 2), (1, 1))
        for kernel, stride, padding in (((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)),
                                        ((3, 3), (1, 1), (1, 1))):
            fast.maxpool2d_values(x, kernel, stride, padding)
        fast.avgpool2d_backward(fast.avgpool2d_forward(x, (2, 2), (2, 2), (0, 0)), (2, 2), (2, 2), (0, 0), x.shape)
        fast.adaptive_avgpool2d_backward(fast.adaptive_avgpool2d_forward(x, (3, 3)), x.shape)
        fast.relu_backward(fast.relu_forward(x), x, "guided")
        x16, w16 = np.ones((1, 2, 4, 4), dtype), np.ones((2, 2, 3, 3), dtype)
        winograd.conv3x3(x16, w16, None, (1, 1))
        winograd4.conv3x3(x16, w16, None, (1, 1))
    for loop in loops:
        assert loop._cache.__class__.__name__ == "FunctionCache"
        dtypes = {sig[0].dtype.name for sig in loop.signatures}
        assert {"float32", "float64"} <= dtypes, (loop.__name__, loop.signatures)
        assert len(loop.signatures) == 2, (loop.__name__, loop.signatures)  # no stray specialisations


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_in_row_bands(monkeypatch, dtype):
    """fast.py builds columns one band of output rows at a time; force tiny bands (by the
    columns' size, and by the stride-1 lowering's wide scratch)."""
    monkeypatch.setattr(fast_conv, "BAND_BYTES", 64)
    monkeypatch.setattr(fast_conv, "WIDE_BYTES", 64)
    rng = np.random.default_rng(5)
    for _ in range(15):
        shape, kernel, stride, padding = random_window(rng)
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((3, shape[1]) + kernel).astype(dtype)
        out = reference.conv2d_forward(x, w, None, stride, padding)
        close(fast.conv2d_forward(x, w, None, stride, padding), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.conv2d_backward_input(g, w, stride, padding, shape),
              reference.conv2d_backward_input(g, w, stride, padding, shape), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_rules_and_linear_match(dtype):
    rng = np.random.default_rng(6)
    x = rng.integers(-2, 3, (4, 3, 5, 5)).astype(dtype)  # many exact zeros: ReLU'(0) = 0
    g = rng.integers(-2, 3, x.shape).astype(dtype)
    np.testing.assert_array_equal(fast.relu_forward(x), reference.relu_forward(x))
    for rule in ("gradient", "deconvnet", "guided"):
        np.testing.assert_array_equal(fast.relu_backward(g, x, rule),
                                      reference.relu_backward(g, x, rule))
    x2, w, b = (rng.standard_normal(s).astype(dtype) for s in ((3, 7), (5, 7), (5,)))
    for bias in (b, None):
        close(fast.linear_forward(x2, w, bias), reference.linear_forward(x2, w, bias), dtype)
    g2 = rng.standard_normal((3, 5)).astype(dtype)
    close(fast.linear_backward_input(g2, w), reference.linear_backward_input(g2, w), dtype)


def test_relu_rules_by_hand():
    """The three rules on one example each (Springenberg et al. 2014, figure 1's logic)."""
    x = np.array([1.0, -1.0, 2.0, -2.0, 0.0])
    g = np.array([3.0, 3.0, -3.0, -3.0, 3.0])
    for k in (reference, fast):
        np.testing.assert_array_equal(k.relu_backward(g, x, "gradient"), [3, 0, -3, 0, 0])
        np.testing.assert_array_equal(k.relu_backward(g, x, "deconvnet"), [3, 3, 0, 0, 3])
        np.testing.assert_array_equal(k.relu_backward(g, x, "guided"), [3, 0, 0, 0, 0])


@pytest.fixture
def every_kernel_threaded(monkeypatch, engine_setting):
    """Make the fast kernels split every kernel, however small, over 3 threads (an odd
    count, so that chunks are uneven), as they do for large layers."""
    from minicnn.engine.kernels.fast import threads
    if not threads.parallel_ok() and threads.num_threads() > 1:
        pytest.skip("the BLAS library's threads cannot be limited here")
    engine_setting("num_threads", 3)
    monkeypatch.setattr(threads, "_blas_found", None)
    monkeypatch.setattr(threads, "PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(threads, "PARALLEL_MIN_ELEMENTS", 0)
    assert threads.n_threads(1, 0) == 3


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_direct_3x3_first_layers_match_reference(request, monkeypatch, dtype, threaded):
    """The direct loop of RGB-like first layers: 1-4 channels, padding 0-2, odd sizes,
    batches of 1 (filters split over the threads) and more."""
    if threaded:
        request.getfixturevalue("every_kernel_threaded")
    called = []
    real = fast_conv._direct3x3_loops
    monkeypatch.setattr(fast_conv, "_direct3x3_loops", lambda *a: called.append(1) or real(*a))
    rng = np.random.default_rng(19)
    for _ in range(12):
        padding = tuple(int(p) for p in rng.integers(0, 3, 2))
        H, W = (int(rng.integers(max(1, 3 - 2 * p), 12)) for p in padding)
        x = rng.standard_normal((int(rng.choice([1, 2, 5])), int(rng.integers(1, 5)), H, W))
        w = rng.standard_normal((int(rng.integers(1, 9)), x.shape[1], 3, 3))
        b = rng.standard_normal(w.shape[0]) if rng.random() < 0.7 else None
        x, w = x.astype(dtype), w.astype(dtype)
        b = None if b is None else b.astype(dtype)
        close(fast.conv2d_forward(x, w, b, (1, 1), padding),
              reference.conv2d_forward(x, w, b, (1, 1), padding), dtype)
    assert called  # the direct loop ran, not im2col
    x = rng.standard_normal((1, fast_conv.DIRECT_MAX_CHANNELS + 1, 6, 6)).astype(dtype)
    called.clear()
    fast.conv2d_forward(x, rng.standard_normal((2, x.shape[1], 3, 3)).astype(dtype), None,
                        (1, 1), (1, 1))
    assert not called  # more channels: im2col (or Winograd)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threaded_kernels_match_reference(every_kernel_threaded, dtype):
    rng = np.random.default_rng(7)
    for trial in range(30):
        shape, kernel, stride, padding = random_window(rng)
        shape = (int(rng.choice([1, 2, 3, 7])), int(rng.integers(1, 6))) + shape[2:]
        if trial % 2:  # the stride-1 lowering
            stride = (1, 1)
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((int(rng.integers(1, 5)), shape[1]) + kernel).astype(dtype)
        b = rng.standard_normal(w.shape[0]).astype(dtype)
        out = reference.conv2d_forward(x, w, b, stride, padding)
        close(fast.conv2d_forward(x, w, b, stride, padding), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.conv2d_backward_input(g, w, stride, padding, shape),
              reference.conv2d_backward_input(g, w, stride, padding, shape), dtype)

        shape, kernel, stride, padding = random_window(rng, pool=True)
        x = rng.integers(0, 3, (int(rng.choice([1, 2, 5])),) + shape[1:]).astype(dtype)
        out, argmax = reference.maxpool2d_forward(x, kernel, stride, padding)
        out_f, argmax_f = fast.maxpool2d_forward(x, kernel, stride, padding)
        np.testing.assert_array_equal(out_f, out)
        np.testing.assert_array_equal(argmax_f, argmax)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.maxpool2d_backward(g, argmax, x.shape),
              reference.maxpool2d_backward(g, argmax, x.shape), dtype)
        close(fast.avgpool2d_backward(g, kernel, stride, padding, x.shape),
              reference.avgpool2d_backward(g, kernel, stride, padding, x.shape), dtype)
        close(fast.adaptive_avgpool2d_forward(x, (3, 2)),
              reference.adaptive_avgpool2d_forward(x, (3, 2)), dtype)
        for rule in ("gradient", "deconvnet", "guided"):
            np.testing.assert_array_equal(fast.relu_backward(g, g[::-1].copy(), rule),
                                          reference.relu_backward(g, g[::-1].copy(), rule))
    x2, w2 = rng.standard_normal((3, 11)).astype(dtype), rng.standard_normal((7, 11)).astype(dtype)
    close(fast.linear_forward(x2, w2, None), reference.linear_forward(x2, w2, None), dtype)
    g2 = rng.standard_normal((3, 7)).astype(dtype)
    close(fast.linear_backward_input(g2, w2), reference.linear_backward_input(g2, w2), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_maxpool_2x2_fast_path_keeps_ties_and_nans(dtype):
    """fast.py has a separate loop for 2x2 windows with stride 2 (VGG's pooling)."""
    rng = np.random.default_rng(11)
    for shape in [(2, 3, 8, 6), (1, 2, 7, 9), (3, 1, 2, 2)]:  # odd sizes drop a row/column
        x = rng.integers(0, 3, shape).astype(dtype)  # ties everywhere
        x.flat[rng.integers(0, x.size, 3)] = np.nan
        out, argmax = reference.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0))
        out_f, argmax_f = fast.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0))
        np.testing.assert_array_equal(out_f, out)  # (NaN == NaN for assert_array_equal)
        np.testing.assert_array_equal(argmax_f, argmax)



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_maxpool_3x3_stride_2_fast_path_keeps_ties_and_nans(dtype):
    """fast_pool.py has a separate loop for 3x3 windows with stride 2 (AlexNet's, ResNet's
    with padding 1 and SqueezeNet's with ceil_mode): whole windows, clipped border windows,
    ties and NaNs must all come out as in the reference."""
    rng = np.random.default_rng(12)
    for shape in [(2, 3, 9, 9), (1, 2, 8, 11), (3, 1, 3, 3), (1, 2, 14, 7)]:
        for padding in [(0, 0), (1, 1), (1, 0)]:
            for ceil_mode in (False, True):
                x = rng.integers(0, 3, shape).astype(dtype)  # ties everywhere
                x.flat[rng.integers(0, x.size, 3)] = np.nan
                out, argmax = reference.maxpool2d_forward(x, (3, 3), (2, 2), padding, ceil_mode)
                out_f, argmax_f = fast.maxpool2d_forward(x, (3, 3), (2, 2), padding, ceil_mode)
                np.testing.assert_array_equal(out_f, out)
                np.testing.assert_array_equal(argmax_f, argmax)
                z = rng.choice(np.array([0.0, -0.0, -1.0], dtype), shape)  # 0.0 == -0.0 ties
                out, argmax = reference.maxpool2d_forward(z, (3, 3), (2, 2), padding, ceil_mode)
                out_f, argmax_f = fast.maxpool2d_forward(z, (3, 3), (2, 2), padding, ceil_mode)
                np.testing.assert_array_equal(argmax_f, argmax)
                np.testing.assert_array_equal(np.signbit(out_f), np.signbit(out))

@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_maxpool_values_are_the_forward_maxima(request, dtype, threaded):
    """maxpool2d_values (Graph.predict's pooling, no argmax) gives maxpool2d_forward's out in
    both modules, on each of fast_pool's three loops: the same values, NaNs where the forward
    has them, and the same sign on tied zeros (the first one in the window)."""
    if threaded:
        request.getfixturevalue("every_kernel_threaded")
    rng = np.random.default_rng(13)
    windows = [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 3), (2, 2), (0, 0))]
    windows += [random_window(rng, pool=True)[1:] for _ in range(12)]
    for kernel, stride, padding in windows:
        for ceil_mode in (False, True):
            shape = (2, 3) + tuple(int(v) for v in rng.integers(max(kernel) + 1, 12, 2))
            normal = rng.standard_normal(shape).astype(dtype)
            ties = rng.integers(0, 3, shape).astype(dtype)
            for x in (normal, ties):
                x.flat[rng.integers(0, x.size, 2)] = np.nan
            zeros = rng.choice(np.array([0.0, -0.0, -1.0], dtype), shape)  # 0.0 == -0.0 ties
            for x in (normal, ties, zeros):
                out = reference.maxpool2d_forward(x, kernel, stride, padding, ceil_mode)[0]
                for k in (reference, fast):
                    got = k.maxpool2d_values(x, kernel, stride, padding, ceil_mode)
                    assert got.dtype == dtype
                    np.testing.assert_array_equal(got, out)  # NaN == NaN here
                    np.testing.assert_array_equal(np.signbit(got[~np.isnan(got)]),
                                                  np.signbit(out[~np.isnan(out)]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_forward_in_place(every_kernel_threaded, dtype):
    """relu_forward(x, out=x) overwrites x with what relu_forward(x) returns (NaN kept)."""
    x = np.random.default_rng(14).standard_normal((3, 4, 9, 7)).astype(dtype)
    x.flat[[0, 5]] = np.nan, -0.0
    for k in (reference, fast):
        y = x.copy()
        assert k.relu_forward(y, out=y) is y
        np.testing.assert_array_equal(y, reference.relu_forward(x))
    with pytest.raises(AssertionError, match="out needs"):
        fast.relu_forward(x, out=np.empty(x.shape[::-1], dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pointwise_convs_by_columns_and_by_channels(every_kernel_threaded, dtype):
    """1x1 layers cut over 3 threads by column bands (wide maps) or by channels (maps
    narrower than 3 x POINTWISE_MIN_COLUMNS), both directions, strides 1 and 2."""
    rng = np.random.default_rng(15)
    for N, size, stride in [(1, 16, 1), (1, 28, 2), (1, 5, 1), (2, 7, 2), (1, 14, 1)]:
        rows, columns = 7, -(-size // stride) ** 2
        tasks = fast_conv._pointwise_tasks(N, rows, columns, 3)
        by_channels = all(j0 == 0 and j1 == columns for _, _, _, j0, j1 in tasks)
        assert by_channels == (columns < 3 * fast_conv.POINTWISE_MIN_COLUMNS)
        x = rng.standard_normal((N, 5, size, size)).astype(dtype)
        w = rng.standard_normal((rows, 5, 1, 1)).astype(dtype)
        b = rng.standard_normal(rows).astype(dtype)
        out = reference.conv2d_forward(x, w, b, (stride, stride), (0, 0))
        close(fast.conv2d_forward(x, w, b, (stride, stride), (0, 0)), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.conv2d_backward_input(g, w, (stride, stride), (0, 0), x.shape),
              reference.conv2d_backward_input(g, w, (stride, stride), (0, 0), x.shape), dtype)


def test_release_scratch_frees_every_threads_buffers(every_kernel_threaded):
    x = np.ones((3, 2, 9, 9))
    fast.conv2d_forward(x, np.ones((2, 2, 3, 3)), None, (1, 1), (1, 1))
    assert sum(len(b) for b in allocator._every_thread_buffers) >= 2  # the caller's and a worker's
    allocator.release_scratch()
    assert all(len(b) == 0 for b in allocator._every_thread_buffers)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ceil_mode_pools_and_pointwise_convs_match(dtype):
    """The kernels the graph networks brought: max-pooling with ceil_mode (SqueezeNet), 1x1
    convolutions as one matrix product (ResNet, SqueezeNet) and the global average pool."""
    rng = np.random.default_rng(7)
    for trial in range(40):
        shape, kernel, stride, padding = random_window(rng, pool=True)
        x = rng.standard_normal(shape).astype(dtype)
        if trial % 3 == 0:
            x = rng.integers(0, 3, shape).astype(dtype)
        out, argmax = reference.maxpool2d_forward(x, kernel, stride, padding, True)
        out_f, argmax_f = fast.maxpool2d_forward(x, kernel, stride, padding, True)
        np.testing.assert_array_equal(out_f, out)
        np.testing.assert_array_equal(argmax_f, argmax)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.maxpool2d_backward(g, argmax, shape),
              reference.maxpool2d_backward(g, argmax, shape), dtype)
    for _ in range(20):
        N, C, F = (int(v) for v in rng.integers(1, 5, 3))
        H, W = (int(v) for v in rng.integers(1, 9, 2))
        stride = tuple(int(s) for s in rng.integers(1, 3, 2))
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = rng.standard_normal((F, C, 1, 1)).astype(dtype)
        b = rng.standard_normal(F).astype(dtype)
        out = reference.conv2d_forward(x, w, b, stride, (0, 0))
        close(fast.conv2d_forward(x, w, b, stride, (0, 0)), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.conv2d_backward_input(g, w, stride, (0, 0), x.shape),
              reference.conv2d_backward_input(g, w, stride, (0, 0), x.shape), dtype)
        out = reference.adaptive_avgpool2d_forward(x, (1, 1))
        close(fast.adaptive_avgpool2d_forward(x, (1, 1)), out, dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        close(fast.adaptive_avgpool2d_backward(g, x.shape),
              reference.adaptive_avgpool2d_backward(g, x.shape), dtype)


@pytest.mark.parametrize("groups", [1, 3, 6])
def test_a_batch_of_no_images(groups):
    """The saliency methods run an empty batch to learn a result's shape: every convolution
    path (dense, grouped, depthwise) gives an empty result of the right shape."""
    x = np.zeros((0, 6, 9, 9))
    w = np.ones((6, 6 // groups, 3, 3))
    for k in (fast, reference):
        out = k.conv2d_forward(x, w, None, (2, 2), (1, 1), (1, 1), groups)
        assert out.shape == (0, 6, 5, 5)
        assert k.conv2d_backward_input(out, w, (2, 2), (1, 1), x.shape, (1, 1), groups).shape \
            == x.shape


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bounds", [(0.0, 6.0), (-1.0, 1.0), (-0.3, 2.5)],
                         ids=["relu6", "hardtanh", "uneven"])
def test_hardtanh_matches_reference(dtype, bounds, every_kernel_threaded):
    """Hardtanh's (ReLU6's) loops against the NumPy definition, threaded: exactly equal,
    the kinks themselves included (x = min_val and x = max_val: f = the bound, f' = 0)."""
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.standard_normal(994) * 4, [*bounds, 0.0, -0.0, 7.0, -9.0]])
    x = x.reshape(2, 500).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    out = fast.hardtanh_forward(x, *bounds)
    np.testing.assert_array_equal(out, reference.hardtanh_forward(x, *bounds))
    assert out.dtype == dtype
    grad = fast.hardtanh_backward(g, x, *bounds)
    np.testing.assert_array_equal(grad, reference.hardtanh_backward(g, x, *bounds))
    assert grad.dtype == dtype and not grad[x == dtype(bounds[0])].any()
    for loop in (elementwise._hardtanh_forward_loops, elementwise._hardtanh_backward_loops):
        assert {sig[0].dtype.name for sig in loop.signatures} >= {np.dtype(dtype).name}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hardswish_matches_reference(dtype, every_kernel_threaded):
    """Hardswish's loops against the NumPy definition, threaded: exactly equal (the same
    operations in the same order), at the kinks x = -3 and x = 3 too (f' = 0 and 1)."""
    rng = np.random.default_rng(13)
    x = np.concatenate([rng.standard_normal(994) * 4, [-3.0, 3.0, 0.0, -1.5, 40.0, -40.0]])
    x = x.reshape(2, 500).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    out = fast.hardswish_forward(x)
    np.testing.assert_array_equal(out, reference.hardswish_forward(x))
    grad = fast.hardswish_backward(g, x)
    np.testing.assert_array_equal(grad, reference.hardswish_backward(g, x))
    assert out.dtype == grad.dtype == dtype
    assert not grad[x == -3].any() and np.array_equal(grad[x == 3], g[x == 3])
    for loop in (elementwise._hardswish_forward_loops, elementwise._hardswish_backward_loops):
        assert {sig[0].dtype.name for sig in loop.signatures} >= {np.dtype(dtype).name}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_silu_matches_reference(dtype, every_kernel_threaded):
    """SiLU's fused loop against the NumPy definition, threaded, over the whole range of x:
    large negative x (where exp(-x) overflows and the sigmoid is 0) and large positive x."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.standard_normal(996) * 5, [-1e4, -100.0, -30.0, 0.0, 30.0, 1e4]])
    x = x.reshape(2, 3, 167).astype(dtype)                    # 1002 values
    g = rng.standard_normal(x.shape).astype(dtype)
    (out, s), (out_ref, s_ref) = fast.silu_forward(x), reference.silu_forward(x)
    close(out, out_ref, dtype)
    close(s, s_ref, dtype)
    close(fast.silu_backward(g, x, s), reference.silu_backward(g, x, s_ref), dtype)
    forward = (elementwise._silu_forward_float32 if dtype == np.float32
               else elementwise._silu_forward_loops)
    for loop in (forward, elementwise._silu_backward_loops):   # the compiled loops ran
        assert {sig[0].dtype.name for sig in loop.signatures} >= {np.dtype(dtype).name}


def test_silu_float32_exp_is_within_a_few_ulps(every_kernel_threaded):
    """The float32 SiLU computes exp(-x) with its own polynomial (elementwise.py): s against
    sigmoid in float64, over every x where s is a normal float32, within 4 units in the last
    place (2^-21 relative; measured 1.3e-7, about NumPy's own float32 route). The bound holds
    whether or not the CPU fuses multiply-adds: each step's rounding is a fraction of an ulp.
    Below x = -87 s is 0 (the true value is under float32's smallest normal number)."""
    x = np.concatenate([np.linspace(-87, 87, 400_001), [-1e4, -88.0, 0.0, 88.0, 1e4]])
    x = x.astype(np.float32)
    out, s = fast.silu_forward(x)
    with np.errstate(over="ignore"):                           # exp(1e4): inf, truth 0
        truth = 1 / (1 + np.exp(-x.astype(np.float64)))
    normal = x >= -87
    assert float(np.max(np.abs(s[normal] - truth[normal]) / truth[normal])) <= 2.0 ** -21
    assert np.all(s[~normal] == 0) and np.all(s[x == 1e4] == 1) and np.all(s[x == 0] == 0.5)
    np.testing.assert_array_equal(out, x * s)                  # out is x s, rounded once
