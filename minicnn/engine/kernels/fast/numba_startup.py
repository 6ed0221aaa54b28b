"""Numba's start-up without SciPy: ~0.5 s off the first gradient of every new process.

When Numba first compiles or loads a function it imports its NumPy support, and one module
of it, ``numba.np.arraymath``, checks at import whether a BLAS is reachable by importing
``scipy.linalg.cython_blas``. With SciPy installed, that import pulls in all of scipy.linalg
(~0.5 s measured here) although no jitted loop of minicnn calls BLAS: the matrix products
are NumPy's, outside Numba.

``hide_scipy_from_numba()`` imports that module while SciPy is hidden (a ``None`` entry in
``sys.modules`` makes an import fail at once), then unhides it, so SciPy imports normally
for everyone afterwards. The only lasting effect, inside Numba: jitted ``np.convolve`` and
``np.correlate`` use a plain loop instead of BLAS's dot product. Jitted ``np.dot`` and
``np.linalg`` look for SciPy again when they are compiled, and work as usual.
"""
from __future__ import annotations

import sys

__all__ = ["hide_scipy_from_numba"]

_SCIPY_MODULES = ("scipy", "scipy.linalg", "scipy.linalg.cython_blas")


def hide_scipy_from_numba() -> None:
    """Import numba.np.arraymath with SciPy hidden, unless either is already imported."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    hidden = [name for name in _SCIPY_MODULES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # "import name" now raises ImportError at once
    try:
        import numba.np.arraymath  # noqa: F401  (its BLAS check finds no SciPy)
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
