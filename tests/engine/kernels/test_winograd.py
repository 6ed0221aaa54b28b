"""Winograd convolutions (kernels/winograd.py, winograd4.py): the matrices, the readable NumPy
twins against the reference loops, the compiled drivers against the twins (serial, threaded,
both schedules, forward and backward), the float32 error bounds, the filter cache, the choice."""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn.engine.frozen import freeze
from minicnn.engine.kernels import fast, reference
from minicnn.engine.kernels.fast import conv as fast_conv
from minicnn.engine.kernels.fast import threads, winograd, winograd4

ALGORITHMS = [winograd, winograd4]
EPS32 = float(np.finfo(np.float32).eps)


def relative_error(a, b):
    """max |a - b| relative to max |b|."""
    return float(np.abs(a - b).max(initial=0.0)) / max(float(np.abs(b).max(initial=0.0)), 1e-300)


def random_3x3(rng, dtype, max_channels=6, max_size=14):
    """A random 3x3 stride-1 case that Winograd handles (padding 0-2, odd and even sizes)."""
    padding = tuple(int(p) for p in rng.integers(0, 3, 2))
    H, W = (int(rng.integers(max(1, 3 - 2 * p), max_size)) for p in padding)
    N = int(rng.choice([1, 2, 5]))
    C, F = (int(rng.integers(1, max_channels)) for _ in range(2))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b, padding


# ----------------------------------------------------------------------------- the matrices

@pytest.mark.parametrize("module", ALGORITHMS, ids=["F2", "F4"])
def test_matrices_compute_one_dimensional_correlation(module):
    """F(m, 3) in one dimension: A^T [(G g) * (B^T d)] equals the m outputs of g over d."""
    rng = np.random.default_rng(8)
    m, T = module.AT.shape
    d, g = rng.standard_normal(T), rng.standard_normal(3)
    direct = np.array([d[i:i + 3] @ g for i in range(m)])
    np.testing.assert_allclose(module.AT @ ((module.G @ g) * (module.BT @ d)), direct, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_f4_line_transforms_are_the_matrices(dtype):
    """The compiled 1-D transforms of winograd4 are B^T and A^T, written out."""
    for k in range(6):
        unit = np.zeros(6, dtype)
        unit[k] = 1
        np.testing.assert_array_equal(np.array(winograd4._bt6(*unit)), winograd4.BT[:, k])
        np.testing.assert_array_equal(np.array(winograd4._at6(*unit)), winograd4.AT[:, k])
    for helper in (winograd4._bt6, winograd4._at6):  # float32 data is computed in float32
        returns = {str(sig.return_type) for sig in helper.nopython_signatures
                   if str(sig.args[0]) == np.dtype(dtype).name}
        assert returns == {f"UniTuple({np.dtype(dtype).name} x {4 if helper is winograd4._at6 else 6})"}


# ----------------------------------------------------------------------------- the NumPy twins

@pytest.mark.parametrize("module", ALGORITHMS, ids=["F2", "F4"])
def test_numpy_twins_are_the_convolution_and_its_gradient(module):
    rng = np.random.default_rng(9)
    for _ in range(15):
        x, w, b, padding = random_3x3(rng, np.float64)
        out = reference.conv2d_forward(x, w, b, (1, 1), padding)
        assert relative_error(module.conv3x3_numpy(x, w, b, padding), out) < 1e-12
        g = rng.standard_normal(out.shape)
        assert relative_error(module.conv3x3_backward_input_numpy(g, w, padding),
                              reference.conv2d_backward_input(g, w, (1, 1), padding, x.shape)) < 1e-12


@pytest.mark.parametrize("module", ALGORITHMS, ids=["F2", "F4"])
def test_fast_and_numpy_versions_have_the_same_signature(module):
    for name in ("conv3x3", "conv3x3_backward_input"):
        assert (inspect.signature(getattr(module, name))
                == inspect.signature(getattr(module, name + "_numpy"))), name


# ----------------------------------------------------------------------------- compiled drivers

@pytest.fixture
def three_threads(monkeypatch, engine_setting):
    """Every Winograd convolution, however small, split over 3 threads (uneven chunks)."""
    if not threads.parallel_ok() and threads.num_threads() > 1:
        pytest.skip("the BLAS library's threads cannot be limited here")
    engine_setting("num_threads", 3)
    monkeypatch.setattr(threads, "_blas_found", None)
    monkeypatch.setattr(threads, "PARALLEL_MIN_MACS", 0)


def check_against_twin(module, rng, dtype, cases=20, **sizes):
    tol = 1e-12 if dtype == np.float64 else 300 * EPS32  # float32: two roundings of one algorithm
    for _ in range(cases):
        x, w, b, padding = random_3x3(rng, dtype, **sizes)
        for bias in (b, None):
            out = module.conv3x3(x, w, bias, padding)
            assert out.dtype == dtype
            assert relative_error(out, module.conv3x3_numpy(x, w, bias, padding)) < tol
        g = rng.standard_normal(out.shape).astype(dtype)
        grad = module.conv3x3_backward_input(g, w, padding)
        assert grad.shape == x.shape and grad.dtype == dtype
        assert relative_error(grad, module.conv3x3_backward_input_numpy(g, w, padding)) < tol


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("module", ALGORITHMS, ids=["F2", "F4"])
def test_bands_schedule_matches_twin(monkeypatch, request, module, threaded):
    """Tiny bands (one tile row each, or image groups) on small random cases, float64."""
    if threaded:
        request.getfixturevalue("three_threads")
    monkeypatch.setattr(winograd, "MIN_BAND_COLUMNS", 1)
    monkeypatch.setattr(winograd, "BAND_BYTES", 0)
    monkeypatch.setattr(winograd, "_whole_layer", None)  # must not be taken
    check_against_twin(module, np.random.default_rng(10), np.float64, max_channels=3)
    monkeypatch.setattr(winograd, "MIN_BAND_COLUMNS", 12)  # several images per piece
    check_against_twin(module, np.random.default_rng(11), np.float64, max_channels=3)


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("module", ALGORITHMS, ids=["F2", "F4"])
def test_backward_with_the_forward_filters_turned_matches_twin(monkeypatch, request, module,
                                                               threaded):
    """The large layers' backward pass (no flipped filters cached: grad_out turned, the
    forward's U read transposed) on small random cases, float64 and float32."""
    if threaded:
        request.getfixturevalue("three_threads")
    monkeypatch.setattr(winograd, "BACKWARD_FILTERS_MAX_BYTES", 0)
    real = winograd.cached_filters

    def forward_filters_only(w, kind, transform):
        assert "backward" not in kind, f"the {kind} transform was asked for"
        return real(w, kind, transform)
    monkeypatch.setattr(winograd, "cached_filters", forward_filters_only)
    check_against_twin(module, np.random.default_rng(17), np.float64, cases=10)
    check_against_twin(module, np.random.default_rng(18), np.float32, cases=10)


def test_band_tasks_cover_every_tile_once_and_share_the_work_evenly():
    """Every (image, tile row) in exactly one piece, pieces of whole tile rows within about
    ``columns`` tiles, and the
    threads' shares (threads.split of the task list) within one tile row of each
    other whenever there are fewer images than threads (batch 1: ResNet's 56x56 layers)."""
    cases = [(1, 14, 14, 64, 2), (1, 56, 56, 64, 2), (1, 7, 7, 64, 2), (2, 14, 14, 64, 3),
             (1, 13, 9, 20, 3), (50, 8, 8, 64, 2), (3, 5, 5, 200, 2), (1, 1, 1, 64, 2)]
    for N, TH, TW, columns, n_threads in cases:
        tasks = winograd._band_tasks(N, TH, TW, columns, n_threads)
        covered = sorted((n, r) for n0, n1, r0, r1 in tasks for n in range(n0, n1)
                         for r in range(r0, r1))
        assert covered == [(n, r) for n in range(N) for r in range(TH)], (N, TH)
        rows = [(n1 - n0) * (r1 - r0) for n0, n1, r0, r1 in tasks]
        if N < n_threads:
            loads = [sum(rows[a:b]) for a, b in threads.split(len(tasks), n_threads)]
            assert max(loads) - min(loads) <= 1, (N, TH, tasks)
            assert all(r1 - r0 <= -(-columns // TW) for _, _, r0, r1 in tasks)  # whole rows


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("module", ALGORITHMS, ids=["F2", "F4"])
def test_whole_layer_schedule_matches_twin(monkeypatch, request, module, threaded):
    """Many channels on few tiles: every thread transforms some channels, then multiplies
    some filters."""
    if threaded:
        request.getfixturevalue("three_threads")
    monkeypatch.setattr(winograd, "_bands", None)  # must not be taken
    rng = np.random.default_rng(12)
    for _ in range(8):
        padding = (int(rng.integers(0, 3)), 1)
        # outputs and inputs of at most 4x6, so F*C > (C+F)*tiles for either size and direction
        H, W = int(rng.integers(max(1, 3 - 2 * padding[0]), 7 - 2 * padding[0])), 6
        C, F = int(rng.integers(20, 40)), int(rng.integers(20, 40))
        x, w = rng.standard_normal((1, C, H, W)), rng.standard_normal((F, C, 3, 3))
        b = rng.standard_normal(F)
        out = module.conv3x3(x, w, b, padding)
        assert relative_error(out, module.conv3x3_numpy(x, w, b, padding)) < 1e-12
        g = rng.standard_normal(out.shape)
        assert relative_error(module.conv3x3_backward_input(g, w, padding),
                              module.conv3x3_backward_input_numpy(g, w, padding)) < 1e-12


@pytest.mark.parametrize("module", ALGORITHMS, ids=["F2", "F4"])
def test_non_contiguous_input_and_float32(module):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 9, 8)).transpose(0, 1, 3, 2)  # non-contiguous (2, 3, 8, 9)
    w = rng.standard_normal((4, 3, 3, 3))
    assert relative_error(module.conv3x3(x, w, None, (1, 1)),
                          reference.conv2d_forward(x, w, None, (1, 1), (1, 1))) < 1e-12
    check_against_twin(module, rng, np.float32, cases=3)  # the bounds: see below


# ----------------------------------------------------------------------------- precision

def float32_errors(module, C, F, size, seed):
    """(forward, backward) max error of float32 against float64, relative to the largest
    output, on random data scaled like a trained layer (He-like weights, unit inputs)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, C, size, size))
    w = rng.standard_normal((F, C, 3, 3)) / np.sqrt(9 * C)
    b = 0.1 * rng.standard_normal(F)
    exact = reference.conv2d_forward(x, w, b, (1, 1), (1, 1)) if C * F <= 64 else \
        winograd4.conv3x3(x, w, b, (1, 1))  # float64 Winograd: exact to ~1e-13 (tested below)
    g = rng.standard_normal(exact.shape)
    exact_grad = winograd4.conv3x3_backward_input(g, w, (1, 1))
    f32 = [a.astype(np.float32) for a in (x, w, b, g)]
    forward = relative_error(module.conv3x3(f32[0], f32[1], f32[2], (1, 1)), exact)
    backward = relative_error(module.conv3x3_backward_input(f32[3], f32[1], (1, 1)), exact_grad)
    return forward, backward


# The bounds the module docstrings state, in float32 epsilons (max error / max |output|).
# Measured (BENCHMARKS.md): F(2x2) <= 6, F(4x4) 10-45 over 16-512 channels; im2col <= 6.
BOUND_EPS = {"F2": 16, "F4": 100}


@pytest.mark.parametrize("module,name", [(winograd, "F2"), (winograd4, "F4")], ids=["F2", "F4"])
def test_float32_error_is_within_the_stated_bound(module, name):
    for C, F, size, seed in [(16, 16, 32, 0), (64, 64, 28, 1), (256, 256, 28, 2)]:
        forward, backward = float32_errors(module, C, F, size, seed)
        assert forward <= BOUND_EPS[name] * EPS32, (C, F, forward / EPS32)
        assert backward <= BOUND_EPS[name] * EPS32, (C, F, backward / EPS32)


def test_float64_f4_is_exact_against_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    for C, F, size, padding in [(64, 64, 28, (1, 1)), (32, 48, 17, (0, 2)), (128, 16, 9, (2, 1))]:
        x = rng.standard_normal((2, C, size, size + 3))
        w = rng.standard_normal((F, C, 3, 3)) / np.sqrt(9 * C)
        b = rng.standard_normal(F)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = torch.nn.functional.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), padding=padding)
        g = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.from_numpy(g))
        assert relative_error(winograd4.conv3x3(x, w, b, padding), yt.detach().numpy()) < 1e-9
        assert relative_error(winograd4.conv3x3_backward_input(g, w, padding), xt.grad.numpy()) < 1e-9


# ----------------------------------------------------------------------------- filter cache

def test_filters_are_transformed_once_per_frozen_weight_array(monkeypatch):
    calls = []
    real = winograd.filter_transform
    monkeypatch.setattr(winograd, "filter_transform", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(15)
    x = rng.standard_normal((1, 4, 6, 6))
    w = freeze(rng.standard_normal((5, 4, 3, 3)), "w")  # as a layer holds its weights
    first = winograd4.conv3x3(x, w, None, (1, 1))
    np.testing.assert_array_equal(winograd4.conv3x3(x, w, None, (1, 1)), first)
    assert len(calls) == 1
    winograd4.conv3x3_backward_input(first, w, (1, 1))  # the flipped filters, once
    winograd4.conv3x3_backward_input(first, w, (1, 1))
    assert len(calls) == 2
    monkeypatch.setattr(winograd, "BACKWARD_FILTERS_MAX_BYTES", 0)
    winograd4.conv3x3_backward_input(first, w, (1, 1))  # a large layer shares the forward's U
    winograd.conv3x3(x, w, None, (1, 1))
    assert len(calls) == 3  # one more for the other algorithm
    # a replaced array is a new entry: the layer's weights changed, the output must too
    w2 = freeze(2 * w, "w2")
    np.testing.assert_allclose(winograd4.conv3x3(x, w2, None, (1, 1)), 2 * first, rtol=1e-12)
    assert len(calls) == 4
    key = id(w2)
    del w2  # its entry goes with it
    assert key not in winograd._cache


def test_an_array_that_can_change_is_never_cached():
    """A writable array (or a read-only view of one) is transformed at every call, so an
    edit in place is seen at once: a stale transform cannot exist."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((1, 4, 6, 6))
    w = rng.standard_normal((5, 4, 3, 3))
    view = w.view()
    view.flags.writeable = False  # read-only, but w can still change under it
    for weights in (w, view):
        first = winograd4.conv3x3(x, weights, None, (1, 1))
        w[:2] = 0
        edited = winograd4.conv3x3(x, weights, None, (1, 1))
        np.testing.assert_array_equal(edited[:, :2], 0 * first[:, :2])
        assert relative_error(edited, reference.conv2d_forward(x, w, None, (1, 1), (1, 1))) < 1e-12
        w[...] = rng.standard_normal(w.shape)
        assert relative_error(winograd4.conv3x3_backward_input(first, weights, (1, 1)),
                              reference.conv2d_backward_input(first, w, (1, 1), (1, 1),
                                                              x.shape)) < 1e-12
    assert not winograd._cache or all(entry[0]() is not w for entry in winograd._cache.values())


def test_cache_entry_checks_shape_and_data():
    rng = np.random.default_rng(16)
    w = freeze(rng.standard_normal((2, 3, 3, 3)), "w")
    U = winograd4.cached_U(w)
    assert U.shape == (36, 2, 3) and winograd4.cached_U(w) is U
    w.shape = (3, 2, 3, 3)  # the same object and memory, another shape
    assert winograd4.cached_U(w).shape == (36, 3, 2)


# ----------------------------------------------------------------------------- the choice

def test_choice_follows_the_measured_rules(engine_setting):
    engine_setting("winograd", "4")
    assert fast_conv.winograd_for(1, 64, 64, 224, 224, (3, 3), (1, 1), (1, 1)) is winograd4
    assert fast_conv.winograd_for(1, 512, 512, 28, 28, (3, 3), (1, 1), (1, 1)) is winograd4
    assert fast_conv.winograd_for(50, 64, 64, 32, 32, (3, 3), (1, 1), (1, 1)) is winograd4
    assert fast_conv.winograd_for(1, 64, 64, 28, 28, (3, 3), (1, 1), (1, 1)) is winograd4
    assert fast_conv.winograd_for(1, 128, 192, 8, 8, (3, 3), (1, 1), (1, 1)) is winograd  # few tiles
    assert fast_conv.winograd_for(50, 128, 192, 8, 8, (3, 3), (1, 1), (1, 1)) is winograd  # per image
    assert fast_conv.winograd_for(50, 128, 128, 16, 16, (3, 3), (1, 1), (1, 1)) is winograd
    assert fast_conv.winograd_for(4, 512, 512, 14, 14, (3, 3), (1, 1), (1, 1)) is winograd  # padding
    assert fast_conv.winograd_for(1, 192, 384, 13, 13, (3, 3), (1, 1), (1, 1)) is winograd
    assert fast_conv.winograd_for(1, 16, 16, 4, 4, (3, 3), (1, 1), (1, 1)) is winograd
    assert fast_conv.winograd_for(50, 3, 32, 64, 64, (3, 3), (1, 1), (1, 1)) is None  # RGB input
    assert fast_conv.winograd_for(50, 64, 64, 32, 32, (3, 3), (2, 2), (1, 1)) is None  # strided
    assert fast_conv.winograd_for(50, 64, 64, 32, 32, (5, 5), (1, 1), (2, 2)) is None
    assert not winograd.supported((3, 3), (1, 1), (3, 1))  # the backward would need padding -1
    engine_setting("winograd", "2")
    assert fast_conv.winograd_for(1, 64, 64, 224, 224, (3, 3), (1, 1), (1, 1)) is winograd
    assert fast_conv.winograd_for(1, 512, 512, 14, 14, (3, 3), (1, 1), (1, 1)) is winograd
    engine_setting("winograd", "off")
    assert fast_conv.winograd_for(1, 64, 64, 224, 224, (3, 3), (1, 1), (1, 1)) is None


@pytest.mark.parametrize("setting", ["2", "4", "off"])
def test_fast_conv_uses_the_chosen_algorithm(monkeypatch, engine_setting, setting):
    """Through fast.conv2d_forward/backward, each setting gives the convolution."""
    engine_setting("winograd", setting)
    monkeypatch.setattr(winograd, "F4_MIN_TILES", 0)
    monkeypatch.setattr(winograd, "F4_MAX_PADDING", 100)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    rng = np.random.default_rng(17)
    for _ in range(5):
        x, w, b, padding = random_3x3(rng, np.float64)
        out = reference.conv2d_forward(x, w, b, (1, 1), padding)
        assert relative_error(fast.conv2d_forward(x, w, b, (1, 1), padding), out) < 1e-12
        g = rng.standard_normal(out.shape)
        assert relative_error(fast.conv2d_backward_input(g, w, (1, 1), padding, x.shape),
                              reference.conv2d_backward_input(g, w, (1, 1), padding, x.shape)) < 1e-12
