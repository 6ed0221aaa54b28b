"""Shared fixtures: both kernel implementations, seeded generators, and the oracles.

Tests that need PyTorch or Captum take the ``torch`` or ``captum_attr`` fixture, which skips
only them when the library is missing: every other test (finite differences, bad-input
messages, the reference kernels) runs without torch.
"""
import numpy as np
import pytest

import minicnn


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


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the oracle for every gradient; the test is skipped without it."""
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def captum_attr(torch):
    """captum.attr, the oracle for the attribution methods; the test is skipped without it."""
    return pytest.importorskip("captum.attr")


@pytest.fixture
def engine_setting():
    """``engine_setting("num_threads", 3)``: an engine setting (``minicnn.engine.settings``)
    for this test only; what was set before is restored afterwards."""
    from minicnn.engine import settings
    saved = {}

    def put(name, value):
        saved.setdefault(name, settings.explicit(name))
        settings.set(name, value)
    yield put
    for name, value in saved.items():
        if value is None:
            settings.reset(name)
        else:
            settings.set(name, value)
