"""Test helper: comparisons with a tolerance relative to the largest expected magnitude."""
import numpy as np

# (rtol, atol) used when comparing with PyTorch or between kernels, per dtype
TOLERANCE = {np.float64: (1e-10, 1e-12), np.float32: (1e-5, 1e-6)}


def assert_close(actual, expected, dtype, scale=None, what=""):
    """|actual - expected| <= atol + rtol * scale, with (rtol, atol) from TOLERANCE[dtype] and
    scale the largest magnitude of ``expected`` (at least 1) unless given."""
    rtol, atol = TOLERANCE[np.dtype(dtype).type]
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0))) if scale is None else scale
    err = float(np.abs(actual - expected).max(initial=0.0))
    assert err <= atol + rtol * scale, f"{what}: max abs error {err:.3g} (scale {scale:.3g})"


def assert_relative(got, want, rtol=1e-10):
    """Equal up to rtol times the largest magnitude of ``want`` (at least 1), shaped alike."""
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)
