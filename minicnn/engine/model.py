"""Sequential: a CNN as a list of named layers; forward runs it in order, backward in reverse.

This is where a saliency map is made (Simonyan, Vedaldi & Zisserman 2013, arXiv:1312.6034,
§3): ``scores = model(x)`` gives the class scores before the softmax, then
``model.backward(one_hot)`` carries d(score_c)/d(score) = one-hot back through every layer to
the pixels, d(score_c)/d(x), shaped like x.

After a pass, what flowed through the network can be read for any layer, by index or by name:

- ``model.activation(key)``: the output of that layer in the last forward pass;
- ``model.gradient_at(key)``: the gradient of the backward's start (e.g. score_c) with respect
  to that layer's output, from the last backward pass.

Names follow PyTorch's state_dict prefixes ("features.0", "classifier.6"); without names the
layers are called "0", "1", .... ``state_dict``/``load_state_dict`` use PyTorch's key names
("features.0.weight"), and ``config``/``from_config`` describe the architecture as JSON-able
data, so a model can be saved as arrays + a list of dicts without pickle.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_array, check_finite
from minicnn.engine.kernels.threads import blas_single_threaded
from minicnn.engine.layers import RELU_RULES, Layer, ReLU, layer_from_config

__all__ = ["Sequential"]


class Sequential:
    """A list of (name, layer) pairs run in order.

    ``Sequential([Conv2d(...), ReLU(), ...])`` names the layers "0", "1", ...;
    ``Sequential([("features.0", Conv2d(...)), ...])`` gives them your names.

    ``meta`` is a JSON-able dict about the model that travels with its weights file: class
    names, input shape, preprocessing, provenance (see ``minicnn.io.weights``); {} if none.
    """

    meta: dict

    def __init__(self, layers, meta: dict | None = None):
        pairs = []
        for i, item in enumerate(layers):
            if isinstance(item, Layer):
                pairs.append((str(i), item))
            elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                  and isinstance(item[1], Layer)):
                pairs.append(item)
            else:
                raise TypeError(f"Sequential: item {i} must be a Layer or a (name, Layer) pair, "
                                f"got {item!r}")
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential: layer names must be unique, got {names}")
        if len({id(layer) for _, layer in pairs}) != len(pairs):
            raise ValueError("Sequential: the same layer object appears twice; a layer keeps the "
                             "state of its last forward pass, so each position needs its own")
        self.names = names
        self.layers = [layer for _, layer in pairs]
        self._index = {name: i for i, name in enumerate(names)}
        for name, layer in pairs:
            layer.name = name
        self.meta = dict(meta or {})
        self._activations = None  # outputs of the last forward pass, one per layer
        self._gradients = None  # gradients w.r.t. those outputs, from the last backward pass

    # --- list-like access ---------------------------------------------------------------------

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, key):
        """model[3], model[-1] or model["features.0"] -> the layer."""
        return self.layers[self.index(key)]

    def index(self, key) -> int:
        """Position of a layer given by index (negative allowed) or by name."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -len(self) <= key < len(self):
                raise IndexError(f"Sequential: layer index {key} out of range for "
                                 f"{len(self)} layers")
            return int(key) % len(self)
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"Sequential: no layer named {key!r}; names are {self.names}")
            return self._index[key]
        raise TypeError(f"Sequential: a layer is selected by int index or str name, "
                        f"got {type(key).__name__}")

    def find(self, layer_type) -> list[str]:
        """Names of the layers of ``layer_type``, in order; e.g. ``model.find(Conv2d)[-1]`` is
        the last conv layer (the one Grad-CAM uses)."""
        return [name for name, layer in zip(self.names, self.layers)
                if isinstance(layer, layer_type)]

    def __repr__(self):
        lines = [f"  ({name}): {layer!r}" for name, layer in zip(self.names, self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"

    # --- forward and backward -----------------------------------------------------------------

    def forward(self, x):
        """x: (N, C, H, W) float32 or float64 -> scores (N, K) before the softmax.

        The computation runs in x's dtype. Every layer's output is kept for ``activation``.
        """
        check_array(x, "Sequential.forward: x")
        check_finite(x, "Sequential.forward: x")  # checked once here, not in every layer
        activations = []
        with blas_single_threaded():  # minicnn's threads share the cores, see kernels/threads.py
            for layer in self.layers:
                x = layer.forward(x)
                activations.append(x)
        self._activations, self._gradients = activations, None
        return x

    __call__ = forward

    def backward(self, grad_scores, relu_rule="gradient", stop_at=None):
        """Run the layers in reverse from d(start)/d(scores) and return d(start)/d(x).

        - grad_scores: shaped like the last forward output, (N, K); a one-hot row on class c
          gives the saliency gradient d(score_c)/d(x)
        - relu_rule: "gradient" (the true gradient), "deconvnet" or "guided", passed to every
          ReLU (see ``ReLU.backward``)
        - stop_at: a layer name or index; if given, stop there and return the gradient with
          respect to that layer's OUTPUT (e.g. the last conv's, for Grad-CAM)
        Returns: the gradient w.r.t. x, shaped like x (or like the stop_at layer's output).
        """
        if self._activations is None:
            raise ValueError("Sequential.backward: called before forward")
        if relu_rule not in RELU_RULES:
            raise ValueError(f"Sequential.backward: unknown relu_rule {relu_rule!r}; "
                             f"valid rules are {RELU_RULES}")
        scores = self._activations[-1]
        check_array(grad_scores, "Sequential.backward: grad_scores")
        if grad_scores.shape != scores.shape:
            raise ValueError(f"Sequential.backward: grad_scores must have the scores' shape "
                             f"{scores.shape}, got {grad_scores.shape}")
        stop = None if stop_at is None else self.index(stop_at)
        gradients = [None] * len(self)
        grad = grad_scores
        with blas_single_threaded():
            for i in reversed(range(len(self))):
                gradients[i] = grad  # d(start)/d(output of layer i)
                if i == stop:
                    break
                layer = self.layers[i]
                grad = layer.backward(grad, rule=relu_rule) if isinstance(layer, ReLU) \
                    else layer.backward(grad)
        self._gradients = gradients
        return grad

    # --- what flowed through the network ------------------------------------------------------

    def activation(self, key):
        """The output of layer ``key`` (index or name) in the last forward pass."""
        if self._activations is None:
            raise ValueError("Sequential.activation: no forward pass yet; call forward(x) first")
        return self._activations[self.index(key)]

    def gradient_at(self, key):
        """The gradient w.r.t. the output of layer ``key`` (index or name) from the last
        backward pass. ``gradient_at(-1)`` is grad_scores itself."""
        if self._gradients is None:
            raise ValueError("Sequential.gradient_at: no backward pass since the last forward; "
                             "call backward(grad_scores) first")
        i = self.index(key)
        if self._gradients[i] is None:
            raise ValueError(f"Sequential.gradient_at: the last backward stopped before layer "
                             f"{self.names[i]!r} (stop_at)")
        return self._gradients[i]

    # --- weights and dtype --------------------------------------------------------------------

    def astype(self, dtype):
        """Cast every weight to float32 or float64; returns self."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def state_dict(self) -> dict:
        """{"<name>.weight": array, "<name>.bias": array} with PyTorch's key names. The arrays
        are the model's own (not copies)."""
        return {f"{name}.{p}": value for name, layer in zip(self.names, self.layers)
                for p, value in layer.parameters().items()}

    def load_state_dict(self, state: dict, copy: bool = True):
        """Copy weights in, strictly: every key of ``state_dict()`` must be present with the
        same shape, and no other key. Values are cast to the model's current dtype.

        copy=False keeps the given arrays themselves when they are already C-contiguous in the
        right dtype (for a caller that owns them, like ``weights.load``)."""
        expected = self.state_dict()
        for key, value in expected.items():
            if key not in state:
                raise ValueError(f"load_state_dict: missing key {key!r} "
                                 f"(expected shape {value.shape})")
        for key, value in state.items():
            if key not in expected:
                raise ValueError(f"load_state_dict: unexpected key {key!r}; expected keys are "
                                 f"{sorted(expected)}")
            if not isinstance(value, np.ndarray):
                raise TypeError(f"load_state_dict: {key!r} must be a numpy.ndarray, "
                                f"got {type(value).__name__}")
            if value.dtype.kind != "f":
                raise TypeError(f"load_state_dict: {key!r} must hold floats, got {value.dtype}")
            if value.shape != expected[key].shape:
                raise ValueError(f"load_state_dict: {key!r} has shape {value.shape}, expected "
                                 f"{expected[key].shape}")
        for key, value in state.items():
            name, p = key.rsplit(".", 1)
            target = expected[key]
            value = np.array(value, dtype=target.dtype, order="C") if copy \
                else np.ascontiguousarray(value, dtype=target.dtype)  # copies only if it must
            setattr(self[name], p, value)
        return self

    # --- architecture as data -------------------------------------------------------------------

    def config(self) -> list:
        """[{"name": "features.0", "type": "Conv2d", "in_channels": 3, ...}, ...] (JSON-able)."""
        return [{"name": name, **layer.config()} for name, layer in zip(self.names, self.layers)]

    @classmethod
    def from_config(cls, config, init: bool = True, dtype=np.float32) -> "Sequential":
        """Inverse of ``config()``; weights (in ``dtype``) are freshly initialised (load them
        afterwards), or left uninitialised with init=False when they are about to be loaded
        anyway."""
        if not isinstance(config, (list, tuple)):
            raise TypeError(f"Sequential.from_config: expected a list of layer dicts, "
                            f"got {type(config).__name__}")
        pairs = []
        for i, item in enumerate(config):
            if not isinstance(item, dict) or "name" not in item:
                raise ValueError(f"Sequential.from_config: item {i} must be a dict with 'name' "
                                 f"and 'type' keys, got {item!r}")
            pairs.append((str(item["name"]), layer_from_config(item, init=init, dtype=dtype)))
        return cls(pairs)
