"""Weights that cannot change behind the engine's back.

A layer keeps arrays computed from its weights: a float64 copy for float64 inputs
(``Layer.weight_as``), and, in the fast kernels, each 3x3 layer's Winograd-transformed
filters. If the weights could be edited in place (``layer.weight[:16] = 0``,
``layer.weight *= 3``), those derived arrays would silently keep the old values. So a layer's
weights are read-only, and the way to change them is to assign a new array, which the layer
copies and freezes, dropping what it derived from the old one::

    w = layer.weight.copy()      # an ordinary, writable array
    w[:16] = 0                   # ablate 16 filters
    layer.weight = w             # the next pass uses them

An in-place edit raises a ``ValueError`` that says exactly that. The frozen array is a thin
subclass of ``numpy.ndarray`` (``FrozenArray``) only so that the message can name the layer
and the fix; anything computed from it (``w * 2``, ``w.copy()``, ``w.sum()``) is a plain
ndarray, and NumPy's own read-only flag is what really stops a write.

``is_frozen(a)`` tells a cache whether ``a`` can be trusted to stay as it is: it and every
array it is a view of are read-only. Caches key derived data by the array's identity only
for such arrays, and recompute it otherwise.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FrozenArray", "freeze", "is_frozen", "placeholder"]

# NumPy functions that write into their first argument; called on a frozen array, they get
# the message below instead of NumPy's generic "assignment destination is read-only".
_WRITERS = {np.copyto, np.place, np.putmask, np.put, np.put_along_axis, np.fill_diagonal}


class FrozenArray(np.ndarray):
    """A read-only ndarray that says how to change it (see the module docstring)."""

    owner = "this array"  # what str() of it says: e.g. "Conv2d 'features.4'.weight"

    def __array_finalize__(self, obj):
        self.owner = getattr(obj, "owner", "this array")  # views keep their owner's name

    def _refuse(self):
        raise ValueError(
            f"{self.owner} is read-only: minicnn keeps arrays computed from it (casts, "
            f"transformed filters) that an in-place edit would leave stale. Edit a copy and "
            f"assign it: w = layer.weight.copy(); w[...] = ...; layer.weight = w")

    def __setitem__(self, index, value):
        if not self.flags.writeable:
            self._refuse()
        super().__setitem__(index, value)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if out is not None:
            if any(isinstance(o, FrozenArray) and not o.flags.writeable for o in out):
                self._refuse()  # w *= 3, w += noise, np.multiply(w, 3, out=w)
            kwargs["out"] = tuple(_plain(o) for o in out)
        return getattr(ufunc, method)(*(_plain(a) for a in inputs), **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in _WRITERS and args and isinstance(args[0], FrozenArray) \
                and not args[0].flags.writeable:
            self._refuse()
        result = super().__array_function__(func, types, args, kwargs)
        return _plain(result) if isinstance(result, FrozenArray) and result.flags.owndata \
            else result

    def fill(self, value):
        if not self.flags.writeable:
            self._refuse()
        super().fill(value)

    # Copies are ordinary arrays: writable, and no longer the layer's.
    def copy(self, order="C"):
        return np.array(_plain(self), order=order, copy=True)

    def astype(self, dtype, *args, **kwargs):
        return _plain(self).astype(dtype, *args, **kwargs)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __repr__(self):
        return repr(_plain(self))

    def __reduce__(self):  # pickled (Dask, deepcopy) as the plain array it holds
        return _plain(self).__reduce__()


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, FrozenArray) else a


def freeze(value, owner, dtype=None, copy: bool = True) -> FrozenArray:
    """``value`` as a C-contiguous, read-only FrozenArray, called ``str(owner)`` in messages.

    copy=True (the default) copies it, so that no one else holds writable memory under it.
    copy=False takes it as it is when it is C-contiguous, of the right dtype and owns its
    memory (an array just read from a file), and makes it read-only in place; otherwise it
    copies anyway. An array that is frozen already is taken as it is: no one can write to
    it, so it can be shared."""
    if isinstance(value, FrozenArray) and is_frozen(value) and (
            dtype is None or value.dtype == np.dtype(dtype)):
        return value
    a = np.asarray(_plain(value))
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    if copy or a.dtype != dtype or not a.flags.c_contiguous or not _owns_memory(a):
        a = np.array(a, dtype=dtype, order="C", copy=True)
    a.flags.writeable = False
    frozen = a.view(FrozenArray)
    frozen.owner = owner
    return frozen


def placeholder(shape, dtype) -> FrozenArray:
    """A frozen array of ``shape`` holding no memory (every element is one shared 0): the
    weights of a layer built only to have weights loaded into it."""
    zero = np.zeros((), dtype=dtype)
    zero.flags.writeable = False
    frozen = np.broadcast_to(zero, shape).view(FrozenArray)
    frozen.owner = "a placeholder for weights not loaded yet"
    return frozen


def _owns_memory(a) -> bool:
    """True if no other writable array shares a's memory: a owns it, or it is a view of
    bytes (np.frombuffer of a file's contents)."""
    return a.base is None or isinstance(a.base, bytes)


def is_frozen(a) -> bool:
    """True if ``a`` and every array it is a view of are read-only (or views of bytes): no
    write can change its values, so data derived from it may be cached by its identity."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return a is None or isinstance(a, bytes)
