"""What every layer shares: the ``Layer`` base class (naming, configuration, read-only
weights, the checks at the boundary), and the small helpers the layer modules use."""
from __future__ import annotations

import weakref

import numpy as np

from minicnn._checks import FLOAT_DTYPES, check_array
from minicnn.engine.frozen import freeze, placeholder
from minicnn.engine.kernels import RELU_RULES
from minicnn.engine.layers.rules import RelevanceRule, Rescale, ZBox, rule_name

__all__ = ["Layer", "pair", "uniform"]


def pair(value, what):
    """An int or a pair of ints -> (int, int), as PyTorch's ``_pair``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")


def uniform(rng, shape, bound, dtype, init=True):
    """U(-bound, bound) drawn directly in ``dtype`` (no float64 temporary for big layers).

    init=False: a read-only placeholder of that shape holding no memory, for weights about to
    be loaded (VGG16's 138 M values would otherwise be drawn, ~4 s and 0.5 GB, only to be
    overwritten; and a file that declares a giant layer fails on its shapes, not on memory)."""
    if not init:
        return placeholder(shape, dtype)
    values = rng.random(shape, dtype=dtype)
    values *= 2 * bound
    values -= bound
    return values


class _ArrayName:
    """How a layer's weight is called in messages, e.g. "Conv2d 'features.4'.weight": the
    layer's name as it is when the message is made (a model names its layers after they are
    built). A weak reference, so that the array does not keep its layer alive."""

    def __init__(self, layer, attr):
        self.layer, self.attr = weakref.ref(layer), attr

    def __str__(self):
        layer = self.layer()
        return f"{layer.describe() if layer is not None else 'a layer'}.{self.attr}"


class _ArrayAttribute:
    """A layer's weight or buffer: read from the layer, and stored read-only (a copy, by
    ``Layer.set_array``) when assigned, so that nothing the layer derived from the old one
    survives the assignment."""

    def __init__(self, attr):
        self.attr = attr

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        try:
            return layer.__dict__[self.attr]
        except KeyError:
            raise AttributeError(f"{type(layer).__name__} has no {self.attr} yet") from None

    def __set__(self, layer, value):
        layer.set_array(self.attr, value)


class Layer:
    """Base class. Subclasses define forward/backward and, if they have weights, ``_params``.

    ``name`` is set by the model (e.g. "features.0") so that error messages say which layer
    of a model failed.
    """

    name: str | None = None
    _params: tuple = ()  # names of the array attributes that hold weights
    _buffers: tuple = ()  # arrays that are not weights but load with them (running statistics)
    _kept: tuple = ()  # what forward keeps for backward only (``infer`` does not keep it)
    # The rules of the backward pass (``rules.py``) besides the gradient's: the LRP rules
    # this layer applies, {rule class: what it does here}, and what DeepLIFT's Rescale does
    # here (None: a layer minicnn does not know; every layer of minicnn's says).
    relevance_rules: dict = {}
    rescale: str | None = None

    def __init_subclass__(cls, **kwargs):
        """Each weight and buffer a layer class names (``_params``, ``_buffers``) becomes an
        ``_ArrayAttribute``: assigning it goes through ``set_array``. (A descriptor rather than
        a ``__setattr__`` of the class: the many other attributes a pass sets cost nothing.)"""
        super().__init_subclass__(**kwargs)
        for attr in cls._params + cls._buffers:
            if not isinstance(getattr(cls, attr, None), _ArrayAttribute):
                setattr(cls, attr, _ArrayAttribute(attr))

    def set_array(self, attr, value, copy=True, dtype=None):
        """Store ``value`` (in ``dtype``, default its own) as the weight or buffer ``attr``,
        read-only (``frozen.freeze``). copy=False takes the array itself when it can
        (C-contiguous, owning its memory: an array just read from a file, which the caller
        then no longer writes to)."""
        if value is not None:
            value = freeze(value, _ArrayName(self, attr), dtype, copy)
        self.__dict__.pop("_cast_cache", None)
        self.__dict__[attr] = value

    def __setstate__(self, state):
        """copy.deepcopy and pickle: the copy's weights are read-only again."""
        arrays = {k: state.pop(k) for k in list(state) if k in self._params + self._buffers}
        self.__dict__.update(state)
        for attr, value in arrays.items():
            setattr(self, attr, value)

    def __call__(self, *xs):
        return self.forward(*xs)

    def infer(self, *xs):
        """The forward output when no backward pass will follow (``Graph.predict``): the same
        values as ``forward``, without holding on to what only backward needs (``_kept``:
        the inputs a rule reads). Layers that compute something only for backward override
        it to skip that work (ReLU, MaxPool2d)."""
        out = self.forward(*xs)
        for attr in self._kept:
            setattr(self, attr, None)
        if self._kept:
            self._out_shape = None  # a backward now needs a new forward
        return out

    # --- description -------------------------------------------------------------------------

    def describe(self) -> str:
        """'Conv2d' or, inside a model, "Conv2d 'features.0'" (used in error messages)."""
        kind = type(self).__name__
        return kind if self.name is None else f"{kind} {self.name!r}"

    def config(self) -> dict:
        """The constructor arguments as a JSON-serialisable dict with a "type" key."""
        return {"type": type(self).__name__}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"

    # --- weights -----------------------------------------------------------------------------

    def parameters(self) -> dict:
        """{"weight": array, "bias": array, ...}: the arrays this layer loads and saves, its
        weights and buffers (only those it has)."""
        return {p: getattr(self, p) for p in self._params + self._buffers
                if getattr(self, p) is not None}

    def astype(self, dtype):
        """Cast the weights to float32 or float64 (in place on the layer); returns self."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self.describe()}: weights can be float32 or float64, got {dtype}")
        for p, value in self.parameters().items():
            if value.dtype != dtype:
                setattr(self, p, value.astype(dtype))
        return self

    def weight_as(self, attr, dtype):
        """The parameter ``attr`` in ``dtype``, for the kernels: a plain read-only ndarray (the
        ``FrozenArray`` subclass is there only to word an in-place edit's error; its Python
        hooks on every NumPy call cost a few microseconds each, which a batch-1 pass notices).
        A cast or view is made once and kept until the attribute is assigned again (the
        weights are read-only, so it cannot go stale), the same object every call, so that
        what the fast kernels derive from it by its identity (Winograd's transformed filters)
        is found again."""
        value = getattr(self, attr)
        if value is None:
            return None
        cache = self.__dict__.setdefault("_cast_cache", {})
        plain = cache.get((attr, dtype))
        if plain is None:
            frozen = value if value.dtype == dtype else freeze(value, _ArrayName(self, attr),
                                                               dtype)
            plain = cache[(attr, dtype)] = frozen.view(np.ndarray)
        return plain

    def derived(self, key, make):
        """An array derived from the weights, ``make()``, computed once and kept with the casts
        until a weight is assigned again; read-only, so that the fast kernels may keep what they
        derive from it in turn (Winograd's transformed filters). key: (attr, dtype, how), e.g.
        ("weight", float32, "positive") for an LRP rule's w+."""
        cache = self.__dict__.setdefault("_cast_cache", {})
        if key not in cache:
            cache[key] = freeze(make(), _ArrayName(self, key[0]), copy=False).view(np.ndarray)
        return cache[key]

    # --- rules of the backward pass ----------------------------------------------------------

    def default_relevance_rule(self, stabilizer: float):
        """The LRP rule a composite gives this layer unless told otherwise (``rules.Composite``);
        None for a layer whose rule must be chosen (one with weights)."""
        return None

    def check_rule(self, rule) -> None:
        """ValueError (TypeError for a rule of the wrong kind) unless ``backward`` can apply
        ``rule`` here; the message names the layer, the rule and what applies."""
        if isinstance(rule, str):
            if rule not in RELU_RULES:
                raise ValueError(f"{self.describe()}: unknown backward rule {rule!r}; valid "
                                 f"rules are {RELU_RULES}")
            return
        if isinstance(rule, Rescale):
            if self.rescale is None:
                raise ValueError(f"{self.describe()}: DeepLIFT's rescale rule does not know this "
                                 f"layer; give it a class attribute rescale and a backward that "
                                 f"takes the rule (minicnn/engine/layers/rules.py)")
            return
        if not isinstance(rule, RelevanceRule):
            raise TypeError(f"{self.describe()}: a backward rule is one of {RELU_RULES}, an LRP "
                            f"rule (Epsilon(), ZPlus(), ...) or Rescale(), got {rule!r}")
        if type(rule) not in self.relevance_rules:
            applies = "; ".join(f"{cls.__name__} ({what})"
                                for cls, what in self.relevance_rules.items()) or \
                "none: minicnn has no LRP rule for this layer"
            raise ValueError(f"{self.describe()}: the LRP rule {rule_name(rule)} does not apply "
                             f"to this layer; what applies here: {applies}")
        if isinstance(rule, ZBox) and rule.low is None:
            raise ValueError(f"{self.describe()}: the rule z-box needs the input's bounds, "
                             f"ZBox(low, high): the lowest and highest value each input can take "
                             f"(for an image normalised per channel, (0 - mean) / std and "
                             f"(1 - mean) / std); or use a first-layer rule that needs none, "
                             f"Flat() or WSquare()")

    # --- checks at the public boundary ------------------------------------------------------

    def _check_input(self, x, ndim=None, shape_hint=""):
        """TypeError unless x is a float32/float64 ndarray; ValueError on the wrong rank."""
        return check_array(x, f"{self.describe()}: input", ndim, shape_hint)

    def _remember(self, x, out):
        """Record the forward shapes and dtype, for backward's checks."""
        self._in_shape, self._out_shape, self._dtype = x.shape, out.shape, x.dtype

    def _check_backward(self, grad_out, rule):
        """``check_rule(rule)``, then ``_check_grad(grad_out)``: the start of every backward."""
        self.check_rule(rule)
        return self._check_grad(grad_out)

    def _check_grad(self, grad_out):
        """grad_out must match the last forward output's shape; it is cast to its dtype."""
        if getattr(self, "_out_shape", None) is None:
            raise ValueError(f"{self.describe()}: backward called before forward")
        check_array(grad_out, f"{self.describe()}: grad_out")
        if grad_out.shape != self._out_shape:
            raise ValueError(f"{self.describe()}: grad_out must have the forward output's shape "
                             f"{self._out_shape}, got {grad_out.shape}")
        return grad_out.astype(self._dtype, copy=False)

    def _check_window(self, x, kernel, padding):
        """ValueError unless the kernel fits inside the padded input."""
        H, W = x.shape[2:]
        if H + 2 * padding[0] < kernel[0] or W + 2 * padding[1] < kernel[1]:
            raise ValueError(
                f"{self.describe()}: kernel {kernel} is larger than the padded input "
                f"{(H + 2 * padding[0], W + 2 * padding[1])} (input H, W = {(H, W)}, "
                f"padding {padding})")
