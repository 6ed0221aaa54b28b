"""Layers of a CNN, each with its forward pass and the backward pass to its input side by side.

Every layer follows PyTorch's semantics, layouts and attribute names (NCHW, conv ``weight``
(F, C, KH, KW), linear ``weight`` (out, in), ``bias``, BatchNorm's ``running_mean``), so
weights load without transposes and PyTorch can serve as the test oracle. A layer has

- ``forward(x) -> out``: computes the output and keeps only what ``backward`` needs;
- ``backward(grad_out) -> grad_in``: the chain rule, d(loss)/d(input) from d(loss)/d(output).

``Add``, ``Concat`` and ``Mul`` join branches of a graph (``minicnn.engine.model.Graph``): they
take several inputs, ``forward(a, b, ...)``, and their ``backward`` returns one gradient per
input. Every layer's backward takes a second argument, ``backward(grad_out, rule)``: the
gradient by default, the saliency methods' rules at the activations, the LRP rules and
DeepLIFT's Rescale (``rules.py``); each layer says, beside its chain rule, which rules apply
to it and what they do there (``relevance_rules``, ``rescale``).

Only gradients with respect to the input are computed: minicnn explains trained networks
(saliency maps), it does not train them, so there are no parameter gradients and no training
mode (``Dropout`` is the identity).

Dtypes: a layer computes in the dtype of its input (float32 or float64). If its weights have
another dtype they are cast once and the cast is cached. Any other input dtype is a TypeError.

Weights are read-only (``minicnn.engine.frozen``): to change them, assign a new array
(``layer.weight = w``); the layer copies it and forgets what it derived from the old one.
An in-place edit (``layer.weight[:16] = 0``) raises a ValueError that says so, because the
engine keeps arrays computed from the weights (casts, Winograd's transformed filters) that
such an edit would silently leave stale.

Hot loops are not here but in ``minicnn.engine.kernels``, reached through ``kernels.active()``
so that the readable reference kernels (``kernels/reference.py``, where the maths is) can
replace the fast ones (``kernels/fast/``) everywhere.

The layers live one family per module: ``conv.py``, ``activations.py``, ``pooling.py``,
``dense.py``, ``norm.py``, ``joins.py`` and ``shape.py`` (padding, channel shuffles and
slices), on the shared ``base.py``.

Adding a layer, the checklist:
1. a class in the module of its family with ``forward(x)`` and ``backward(grad_out)`` side by side, a docstring
   with the shapes and PyTorch's semantics (and the subgradient convention, if any),
   ``config()`` returning its constructor arguments, and ``_params`` naming its weights;
   an activation subclasses ``Activation`` and defines ``function``, ``chain`` and whether
   it is a rectifier or a gate (what the saliency rules do with it: ``activations.py``);
2. its entry in ``LAYER_TYPES`` (so weights files and ``from_config`` know it);
3. if it has a loop: the kernel in ``kernels/reference.py`` (readable) and the same
   signature in ``kernels/fast/`` (Numba: conv.py, pool.py, elementwise.py, ...), exported
   by ``kernels/fast/__init__.py``, tested equal both ways;
4. its import in ``minicnn.io.torch_import`` (from the torch module) and in the tests'
   torch twin, and tests in ``tests/engine/test_layers.py``: forward and input gradient
   against torch.nn.functional + autograd and against central finite differences in
   float64, odd sizes, strides, paddings, batch 1 and > 1, and its bad-input messages.

References: CS231n assignment 2 (layer/kernel split, shape docstrings); Simonyan, Vedaldi &
Zisserman 2013 (arXiv:1312.6034) for the vanilla gradient; Zeiler & Fergus 2014 (deconvnet) and
Springenberg et al. 2014 (arXiv:1412.6806, guided backpropagation) for the backward rules.
"""
from __future__ import annotations

import numpy as np

from minicnn.engine.kernels import RELU_RULES
from minicnn.engine.layers.activations import (BACKWARD_RULES, Activation, Hardsigmoid,
                                               Hardswish, Hardtanh, ReLU, ReLU6, Sigmoid, SiLU)
from minicnn.engine.layers.base import Layer, pair
from minicnn.engine.layers.conv import Conv2d
from minicnn.engine.layers.dense import Dropout, Flatten, Linear
from minicnn.engine.layers.joins import Add, Concat, Mul
from minicnn.engine.layers.norm import (LRN, BatchNorm2d, batchnorm_scale_shift,
                                        fold_batchnorm)
from minicnn.engine.layers.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from minicnn.engine.layers.rules import (AlphaBeta, Composite, Epsilon, Flat, Gamma, Pass,
                                         RelevanceRule, Rescale, WSquare, ZBox, ZPlus)
from minicnn.engine.layers.shape import ChannelShuffle, ChannelSlice, ZeroPad2d

__all__ = [
    "Layer", "Conv2d", "Activation", "ReLU", "ReLU6", "Hardtanh", "Hardswish", "Hardsigmoid",
    "SiLU", "Sigmoid", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "Flatten", "Linear", "Dropout", "BatchNorm2d", "LRN", "Add", "Concat", "Mul", "ZeroPad2d",
    "ChannelShuffle", "ChannelSlice", "BACKWARD_RULES", "RELU_RULES",
    "LAYER_TYPES", "layer_from_config", "pair", "batchnorm_scale_shift", "fold_batchnorm",
    "RelevanceRule", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat", "WSquare",
    "Pass", "Rescale", "Composite",
]

LAYER_TYPES = {cls.__name__: cls for cls in
               (Conv2d, ReLU, ReLU6, Hardtanh, Hardswish, Hardsigmoid, SiLU, Sigmoid, MaxPool2d,
                AvgPool2d, AdaptiveAvgPool2d, Flatten, Linear, Dropout, BatchNorm2d, LRN, Add,
                Concat, Mul, ZeroPad2d, ChannelShuffle, ChannelSlice)}


def layer_from_config(config: dict, init: bool = True, dtype=np.float32) -> Layer:
    """Inverse of ``layer.config()``: {"type": "Conv2d", "in_channels": 3, ...} -> Conv2d(3, ...).

    Weights (in ``dtype``) are freshly initialised, or left uninitialised with init=False;
    load them with ``Sequential.load_state_dict``.
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"layer config must be a dict with a 'type' key, got {config!r}")
    kind = config["type"]
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}; known types are {sorted(LAYER_TYPES)}")
    args = {k: (tuple(v) if isinstance(v, list) else v)
            for k, v in config.items() if k not in ("type", "name")}
    if LAYER_TYPES[kind]._params:
        args.update(init=init, dtype=dtype)
    try:
        return LAYER_TYPES[kind](**args)
    except TypeError as error:
        raise ValueError(f"bad config for {kind}: {config!r} ({error})") from None
