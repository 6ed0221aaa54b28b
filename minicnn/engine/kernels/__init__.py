"""The kernel switch: every hot loop of minicnn exists twice, and this module picks one.

- ``reference.py`` (beside this file): the definitions, written as plain loops over NumPy
  arrays. Slow, and meant to be read: this is where the maths of each layer is.
- ``fast/``: the same functions with identical signatures, compiled by Numba, most
  convolutions as BLAS matrix products (im2col, Chellapilla, Puri & Simard 2006; Winograd's
  minimal filtering, Lavin & Gray 2016), run on minicnn's own thread pool. Everything that
  exists only for speed lives there; nothing above it needs to be read to learn the maths.

Layers never import either module: they call ``kernels.active()`` at every forward/backward,
so the whole engine can be switched for teaching or debugging::

    MINICNN_KERNELS=reference python my_script.py      # environment, read at first use

    minicnn.use_kernels("reference")                   # from now on
    with minicnn.use_kernels("reference"):             # only inside the block
        model.forward(x)

Besides the kernels, each set provides ``pass_context()``: what a whole forward or backward
pass needs around it (the fast set keeps BLAS on one thread while its own threads share the
cores; the reference set needs nothing). ``Graph`` enters it once per pass.

Shared shape rules live here (``output_size``, ``dilated``, ``adaptive_bins``) so that both
implementations compute sizes the same way. The fast set is imported on first use, so
``MINICNN_KERNELS=reference`` never imports Numba.
"""
from __future__ import annotations

import importlib

from minicnn.engine import settings

__all__ = ["KERNEL_NAMES", "RELU_RULES", "active", "active_name", "get", "use_kernels",
           "output_size", "dilated", "pool_window", "window_ints", "adaptive_bins"]

KERNEL_NAMES = ("fast", "reference")
# How a ReLU passes a signal back (``layers.ReLU.backward``): the chain rule, or the rules of
# two later saliency methods. Kernels receive one of these names.
RELU_RULES = ("gradient", "deconvnet", "guided")


def output_size(size: int, kernel: int, stride: int, padding: int,
                ceil_mode: bool = False, dilation: int = 1) -> int:
    """Length of one output axis of a conv or pool window sliding over ``size`` inputs.

    ``1 + (size + 2 * padding - kernel) // stride``, as in PyTorch with ceil_mode=False. If
    ``(size + 2*padding - kernel) % stride != 0`` the last rows/columns of the padded input are
    never covered by a window (their gradient is zero unless another window covers them).

    ceil_mode=True (pooling only) rounds the division up instead, so a last, partial window
    covers them; PyTorch keeps that window only if it starts inside the input or its left
    padding, i.e. drops it when ``(out - 1) * stride >= size + padding``.

    dilation d (convolution) spaces the kernel's taps d apart, so the window spans
    ``dilated(kernel, d) = d * (kernel - 1) + 1`` inputs, and that span takes the kernel's
    place above: ``1 + (size + 2 * padding - d * (kernel - 1) - 1) // stride``.
    """
    kernel = dilated(kernel, dilation)
    if not ceil_mode:
        return 1 + (size + 2 * padding - kernel) // stride
    out = 1 + -(-(size + 2 * padding - kernel) // stride)
    return out - 1 if (out - 1) * stride >= size + padding else out


def dilated(kernel: int, dilation: int) -> int:
    """How many inputs a kernel of ``kernel`` taps spaced ``dilation`` apart spans:
    ``dilation * (kernel - 1) + 1`` (the kernel itself for dilation 1)."""
    return dilation * (kernel - 1) + 1


def pool_window(i: int, size: int, kernel: int, stride: int, padding: int,
                count_include_pad: bool = True) -> tuple[int, int, int]:
    """Average pooling's window i along one axis, as PyTorch's avg_pool2d: (start, end,
    count), the window's inputs being [start, end) of the unpadded axis.

    The window spans [i*stride - padding, + kernel), cut at the far edge of the padded input
    (a last, partial window of ceil_mode stops there). ``count``, what the mean divides by:
    with count_include_pad, the window's length within the padded input (``kernel`` except
    for such a partial window); without, only the real inputs in it, end - start."""
    start = i * stride - padding
    end = min(start + kernel, size + padding)
    count = end - start
    start, end = max(start, 0), min(end, size)
    return start, end, (count if count_include_pad else end - start)


def window_ints(kernel, stride, padding) -> tuple[int, ...]:
    """(KH, KW, sh, sw, ph, pw) as plain ints, the form compiled loops take (a tuple argument
    would make Numba compile a version per tuple type)."""
    return tuple(int(v) for v in (*kernel, *stride, *padding))


def adaptive_bins(size: int, out_size: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling bins: bin i covers [floor(i*size/out), ceil((i+1)*size/out)).

    Bins may overlap (7 -> 3: [0,3), [2,5), [4,7)) and repeat inputs when upsampling
    (5 -> 7: some inputs fall into two bins).
    """
    return [((i * size) // out_size, -((-(i + 1) * size) // out_size)) for i in range(out_size)]


def get(name: str):
    """The kernel module called ``name`` ("fast" or "reference"), imported on first use."""
    name = settings.SETTINGS["kernels"].check(name)
    if name not in _modules:
        _modules[name] = importlib.import_module(f"minicnn.engine.kernels.{name}")
    return _modules[name]


_modules: dict = {}


def active():
    """The kernel module the layers use right now (``MINICNN_KERNELS``, or ``use_kernels``)."""
    return get(settings.get("kernels"))


def active_name() -> str:
    """ "fast" or "reference"."""
    return settings.get("kernels")


class use_kernels:
    """Switch every layer to the "fast" or "reference" kernels.

    Takes effect immediately; used as a context manager it restores the previous choice on
    exit. The choice is global to the process (not per thread)."""

    def __init__(self, name: str):
        self.previous = settings.explicit("kernels")
        get(name)  # import now, so a broken install fails here and not inside a layer
        settings.set("kernels", name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.previous is None:
            settings.reset("kernels")
        else:
            settings.set("kernels", self.previous)
        return False
