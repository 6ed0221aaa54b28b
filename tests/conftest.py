"""Shared fixtures: run a test on both kernel implementations, seeded generators, tolerances."""
import numpy as np
import pytest

import minicnn

# (rtol, atol) used when comparing with PyTorch or between kernels, per dtype
TOLERANCE = {np.float64: (1e-10, 1e-12), np.float32: (1e-5, 1e-6)}


@pytest.fixture(params=["fast", "reference"])
def kernel_name(request):
    """Run the test once on the Numba kernels and once on the readable reference kernels."""
    with minicnn.use_kernels(request.param):
        yield request.param


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so each test has its own fixed stream."""
    seed = sum(map(ord, request.node.nodeid))
    return np.random.default_rng(seed)


def assert_close(actual, expected, dtype, scale=None, what=""):
    """Compare with a tolerance relative to the largest magnitude of ``expected``."""
    rtol, atol = TOLERANCE[np.dtype(dtype).type]
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0))) if scale is None else scale
    err = float(np.abs(actual - expected).max(initial=0.0))
    assert err <= atol + rtol * scale, f"{what}: max abs error {err:.3g} (scale {scale:.3g})"
