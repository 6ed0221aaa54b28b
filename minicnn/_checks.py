"""The checks at minicnn's public boundary, written once so that the same mistake gets the same
exception and the same words everywhere.

The rule: a wrong *type* (a list where an array is wanted, 2.5 where an int is wanted, an int64
array where floats are wanted) is a ``TypeError``; a right type with a wrong *value* (a
negative count, an unknown name, a wrong shape, NaN) is a ``ValueError``. Every message names
what was checked, what was expected and what was given::

    n_samples must be an int >= 1, got 2.5                     (TypeError)
    n_samples must be an int >= 1, got 0                       (ValueError)
    x must be a numpy.ndarray shaped (N, C, H, W), got list    (TypeError)
    x must have dtype float32 or float64, got int64            (TypeError)
    x must be 4-D, shaped (N, C, H, W), got shape (3, 8, 8)    (ValueError)
    unknown kind 'mean'; valid choices are smoothgrad, smoothgrad_sq, vargrad   (ValueError)

``what`` is the name a user would recognise: an argument (``"n_samples"``) or a layer's input
(``"Conv2d 'features.0': input"``). This module imports nothing else of minicnn, so every
part of the package can use it. ``assert`` stays for internal invariants only.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

__all__ = ["FLOAT_DTYPES", "SettingError", "check_array", "check_images", "check_finite",
           "check_int", "check_number", "check_choice"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class SettingError(ValueError):
    """A bad value in one of minicnn's environment variables (``MINICNN_WINOGRAD``,
    ``MINICNN_SPIN_US``, ``MINICNN_NUM_THREADS``, ``MINICNN_KERNELS``): the user's setting,
    not the model or the input, so it is reported as it is wherever it surfaces (the command
    line: one line, exit 2). None is raised by ``import minicnn``: each when first needed."""


def _dtype_names(dtypes) -> str:
    return " or ".join(str(np.dtype(d)) for d in dtypes)


def check_array(value, what: str, ndim: int | None = None, shape: str = "",
                dtypes=FLOAT_DTYPES) -> np.ndarray:
    """``value`` itself if it is a numpy array of one of ``dtypes`` with ``ndim`` axes.

    - shape: how the axes are called, for the message, e.g. "(N, C, H, W)"
    - dtypes: the allowed dtypes (default float32, float64); None allows any
    TypeError for a non-array or a wrong dtype, ValueError for a wrong number of axes.
    """
    shaped = f" shaped {shape}" if shape else ""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray{shaped}, got {type(value).__name__}")
    if dtypes is not None and value.dtype not in tuple(np.dtype(d) for d in dtypes):
        raise TypeError(f"{what} must have dtype {_dtype_names(dtypes)}, got {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{what} must be {ndim}-D{',' + shaped if shaped else ''}, got shape "
                         f"{value.shape}")
    return value


def check_images(x, what: str = "x") -> np.ndarray:
    """A batch of images: a float32/float64 numpy array shaped (N, C, H, W)."""
    return check_array(x, what, 4, "(N, C, H, W)")


def check_finite(x: np.ndarray, what: str) -> np.ndarray:
    """ValueError naming the first NaN or inf of ``x`` (by index), if there is one."""
    if not np.isfinite(x).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"{what} contains NaN or inf (first at index {bad}: {x[bad]})")
    return x


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def check_int(value, what: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``int(value)`` for an integer within [minimum, maximum] (either bound may be None).

    Bools are not integers here (``steps=True`` is a mistake). TypeError for a non-integer,
    ValueError for one out of range; both messages say the same thing.
    """
    if minimum is not None and maximum is not None:
        expected = f"an int in {minimum}..{maximum}"
    elif minimum is not None:
        expected = f"an int >= {minimum}"
    elif maximum is not None:
        expected = f"an int <= {maximum}"
    else:
        expected = "an int"
    if not _is_int(value):
        raise TypeError(f"{what} must be {expected}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{what} must be {expected}, got {value!r}")
    return int(value)


def check_number(value, what: str, minimum: float | None = None,
                 maximum: float | None = None, above: float | None = None) -> float:
    """``float(value)`` for a real number with minimum <= value <= maximum and value > above.

    TypeError for a non-number (bools included), ValueError for NaN or a value out of range.
    """
    bounds = [f">= {minimum}" if minimum is not None else "", f"> {above}" if above is not None
              else "", f"<= {maximum}" if maximum is not None else ""]
    expected = "a number" + (" " + " and ".join(b for b in bounds if b) if any(bounds) else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{what} must be {expected}, got {value!r}")
    v = float(value)
    if (v != v or (minimum is not None and v < minimum) or (maximum is not None and v > maximum)
            or (above is not None and not v > above)):
        raise ValueError(f"{what} must be {expected}, got {value!r}")
    return v


def check_choice(value, choices, what: str):
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices are {', '.join(choices)}")
    return value
