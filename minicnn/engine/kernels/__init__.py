"""The kernel switch: every hot loop of minicnn exists twice, and this module picks one.

- ``minicnn.engine.kernels.reference``: the definitions, written as plain loops over NumPy arrays.
  Slow, and meant to be read.
- ``minicnn.engine.kernels.fast``: the same functions with identical signatures; the loops are
  compiled by Numba and each convolution is one BLAS matrix product (im2col, Chellapilla,
  Puri & Simard 2006, "High Performance Convolutional Neural Networks for Document Processing").

Layers never import either module: they call ``kernels.active()`` at every forward/backward,
so the whole engine can be switched for teaching or debugging::

    MINICNN_KERNELS=reference python my_script.py      # environment, read at import

    minicnn.use_kernels("reference")                   # from now on
    with minicnn.use_kernels("reference"):             # only inside the block
        model.forward(x)

Shared shape rules live here (``output_size``, ``adaptive_bins``) so that both
implementations compute sizes the same way. The fast module is imported on first use, so
``MINICNN_KERNELS=reference`` never imports Numba.
"""
from __future__ import annotations

import importlib
import os

from minicnn._checks import SettingError

__all__ = ["KERNEL_NAMES", "active", "active_name", "get", "use_kernels",
           "output_size", "adaptive_bins"]

KERNEL_NAMES = ("fast", "reference")


def output_size(size: int, kernel: int, stride: int, padding: int,
                ceil_mode: bool = False) -> int:
    """Length of one output axis of a conv or pool window sliding over ``size`` inputs.

    ``1 + (size + 2 * padding - kernel) // stride``, as in PyTorch with ceil_mode=False. If
    ``(size + 2*padding - kernel) % stride != 0`` the last rows/columns of the padded input are
    never covered by a window (their gradient is zero unless another window covers them).

    ceil_mode=True (pooling only) rounds the division up instead, so a last, partial window
    covers them; PyTorch keeps that window only if it starts inside the input or its left
    padding, i.e. drops it when ``(out - 1) * stride >= size + padding``.
    """
    if not ceil_mode:
        return 1 + (size + 2 * padding - kernel) // stride
    out = 1 + -(-(size + 2 * padding - kernel) // stride)
    return out - 1 if (out - 1) * stride >= size + padding else out


def adaptive_bins(size: int, out_size: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling bins: bin i covers [floor(i*size/out), ceil((i+1)*size/out)).

    Bins may overlap (7 -> 3: [0,3), [2,5), [4,7)) and repeat inputs when upsampling
    (5 -> 7: some inputs fall into two bins).
    """
    return [((i * size) // out_size, -((-(i + 1) * size) // out_size)) for i in range(out_size)]


def _check_name(name: str) -> str:
    if name not in KERNEL_NAMES:
        raise ValueError(f"minicnn kernels: expected one of {KERNEL_NAMES}, got {name!r}")
    return name


def _from_environment() -> str | None:
    """$MINICNN_KERNELS, or None if it names no kernels: then the first layer to run raises
    the SettingError (not ``import minicnn``, so that the command line can report it as one
    line) until ``use_kernels`` picks a valid name."""
    name = os.environ.get("MINICNN_KERNELS", "fast")
    return name if name in KERNEL_NAMES else None


_modules: dict = {}
_active_name = _from_environment()


def get(name: str):
    """The kernel module called ``name`` ("fast" or "reference"), imported on first use."""
    _check_name(name)
    if name not in _modules:
        _modules[name] = importlib.import_module(f"minicnn.engine.kernels.{name}")
    return _modules[name]


def active():
    """The kernel module the layers use right now."""
    return get(active_name())


def active_name() -> str:
    """ "fast" or "reference"."""
    if _active_name is None:
        raise SettingError(f"MINICNN_KERNELS must be one of {KERNEL_NAMES}, got "
                           f"{os.environ.get('MINICNN_KERNELS')!r}")
    return _active_name


class use_kernels:
    """Switch every layer to the "fast" or "reference" kernels.

    Takes effect immediately; used as a context manager it restores the previous choice on
    exit. Not thread-safe: the choice is global to the process.
    """

    def __init__(self, name: str):
        global _active_name
        self.previous = _active_name
        _active_name = _check_name(name)
        get(name)  # import now, so a broken install fails here and not inside a layer

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global _active_name
        _active_name = self.previous
        return False
