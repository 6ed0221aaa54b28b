"""Build a minicnn.Sequential from a PyTorch model, weights included.

``from_torch(module)`` accepts

- a ``torch.nn.Sequential``, nested Sequentials allowed: layer names become the dotted paths
  of PyTorch's state_dict ("0", "3.1", ...);
- a module shaped like torchvision's VGG / AlexNet, with attributes ``features``, ``avgpool``
  and ``classifier``: it becomes features.* -> "avgpool" -> "flatten" -> classifier.*, the
  Flatten standing for the ``torch.flatten(x, 1)`` in their forward (it has no weights, so the
  state_dict keys stay torchvision's).

A ``BatchNorm2d`` directly after a ``Conv2d`` is folded into the conv with its running
statistics (eval-mode semantics), see ``fold_batchnorm``; the folded conv keeps the conv's
name and the BatchNorm disappears. Anything else that minicnn does not implement exactly is
refused with an error that names the module, its position and what is supported, rather than
imported approximately.

torch is imported inside ``from_torch`` only: ``import minicnn`` works without it.
"""
from __future__ import annotations

import numpy as np

from minicnn.engine.layers import (AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, Linear,
                            MaxPool2d, ReLU)
from minicnn.engine.model import Sequential

__all__ = ["from_torch", "fold_batchnorm"]

SUPPORTED = ("Conv2d (+ BatchNorm2d right after it), ReLU, MaxPool2d, AvgPool2d, "
             "AdaptiveAvgPool2d, Flatten, Linear, Dropout, nested Sequential")


def fold_batchnorm(conv_w, conv_b, bn_weight, bn_bias, running_mean, running_var, eps):
    """Fold an eval-mode BatchNorm2d into the convolution before it.

    BN(conv(x)) = gamma * (w*x + b - mean) / sqrt(var + eps) + beta
                = (w * s) * x + ((b - mean) * s + beta),   s = gamma / sqrt(var + eps)

    Input (numpy arrays):
    - conv_w: (F, C, KH, KW); conv_b: (F,) or None (treated as zeros)
    - bn_weight (gamma), bn_bias (beta): (F,) or None (an affine=False BatchNorm: 1 and 0)
    - running_mean, running_var: (F,); eps: float
    Returns:
    - (w', b'): (F, C, KH, KW) and (F,), in conv_w's dtype
    """
    F = conv_w.shape[0]
    dtype = conv_w.dtype
    gamma = np.ones(F, dtype) if bn_weight is None else np.asarray(bn_weight, dtype)
    beta = np.zeros(F, dtype) if bn_bias is None else np.asarray(bn_bias, dtype)
    b = np.zeros(F, dtype) if conv_b is None else np.asarray(conv_b, dtype)
    scale = gamma / np.sqrt(np.asarray(running_var, dtype) + dtype.type(eps))  # (F,)
    w = conv_w * scale.reshape(F, 1, 1, 1)  # (F, C, KH, KW)
    return w, (b - np.asarray(running_mean, dtype)) * scale + beta


def from_torch(module) -> Sequential:
    """A minicnn.Sequential computing the same function as ``module`` (in eval mode), with the
    weights copied in the module's dtype (float32 or float64)."""
    import torch.nn as nn  # here only: minicnn itself does not need torch

    if isinstance(module, nn.Sequential):
        torch_layers = _walk(module, "", nn)
    elif all(hasattr(module, a) for a in ("features", "avgpool", "classifier")):
        avgpool = module.avgpool
        torch_layers = (_walk(module.features, "features.", nn)
                        + (_walk(avgpool, "avgpool.", nn) if isinstance(avgpool, nn.Sequential)
                           else [("avgpool", avgpool)])
                        + [("flatten", nn.Flatten())]
                        + _walk(module.classifier, "classifier.", nn))
    else:
        raise TypeError(f"from_torch: expected a torch.nn.Sequential or a VGG/AlexNet-shaped "
                        f"module (attributes features, avgpool, classifier), got "
                        f"{type(module).__name__}")

    dtypes = {p.dtype for p in module.parameters()} | {b.dtype for b in module.buffers()
                                                       if b.is_floating_point()}
    dtype = _numpy_dtype(dtypes)
    pairs, i = [], 0
    while i < len(torch_layers):
        name, m = torch_layers[i]
        following = torch_layers[i + 1][1] if i + 1 < len(torch_layers) else None
        if isinstance(m, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            pairs.append((name, _conv(m, name, dtype, batchnorm=(following, torch_layers[i + 1][0]))))
            i += 2
            continue
        pairs.append((name, _convert(m, name, dtype, nn)))
        i += 1
    return Sequential(pairs)


# ----------------------------------------------------------------------------- helpers

def _walk(seq, prefix, nn):
    """Flatten nested Sequentials into [(dotted name, leaf module)].

    Iterates ``_modules`` rather than ``named_children()``: the latter skips a module the
    second time it appears, so a ReLU instance used twice would silently lose a layer."""
    out = []
    for name, m in seq._modules.items():
        if isinstance(m, nn.Sequential):
            out += _walk(m, f"{prefix}{name}.", nn)
        else:
            out.append((f"{prefix}{name}", m))
    return out


def _numpy_dtype(torch_dtypes):
    import torch

    mapping = {torch.float32: np.float32, torch.float64: np.float64}
    if not torch_dtypes:
        return np.float32
    if len(torch_dtypes) > 1 or next(iter(torch_dtypes)) not in mapping:
        raise TypeError(f"from_torch: parameters must all be float32 or all float64, got "
                        f"{sorted(str(d) for d in torch_dtypes)}")
    return mapping[next(iter(torch_dtypes))]


def _array(tensor, dtype):
    return None if tensor is None else tensor.detach().cpu().numpy().astype(dtype, copy=True)


def _refuse(m, name, what):
    raise ValueError(f"from_torch: {type(m).__name__} at {name!r}: {what} is not supported")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv(m, name, dtype, batchnorm=None):
    if _pair(m.dilation) != (1, 1):
        _refuse(m, name, f"dilation={m.dilation} (only 1)")
    if m.groups != 1:
        _refuse(m, name, f"groups={m.groups} (only 1)")
    if m.padding_mode != "zeros":
        _refuse(m, name, f"padding_mode={m.padding_mode!r} (only 'zeros')")
    padding = m.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":  # symmetric only for odd kernels (stride is 1 for 'same')
        if any(k % 2 == 0 for k in m.kernel_size):
            _refuse(m, name, f"padding='same' with the even kernel {m.kernel_size} "
                             "(asymmetric padding; only odd kernels)")
        padding = tuple(k // 2 for k in m.kernel_size)
    conv = Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, padding,
                  bias=m.bias is not None or batchnorm is not None, dtype=dtype)
    w, b = _array(m.weight, dtype), _array(m.bias, dtype)
    if batchnorm is not None:
        bn, bn_name = batchnorm
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"from_torch: BatchNorm2d at {bn_name!r}: track_running_stats=False "
                             "is not supported (folding needs running statistics)")
        if bn.num_features != m.out_channels:
            raise ValueError(f"from_torch: BatchNorm2d at {bn_name!r} has {bn.num_features} "
                             f"features, the conv before it {m.out_channels} channels")
        w, b = fold_batchnorm(w, b, _array(bn.weight, dtype), _array(bn.bias, dtype),
                              _array(bn.running_mean, dtype), _array(bn.running_var, dtype),
                              bn.eps)
    conv.weight, conv.bias = np.ascontiguousarray(w), b
    return conv


def _convert(m, name, dtype, nn):
    if isinstance(m, nn.Conv2d):
        return _conv(m, name, dtype)
    if isinstance(m, nn.ReLU):
        return ReLU()
    if isinstance(m, nn.Dropout):
        return Dropout(m.p)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            _refuse(m, name, f"start_dim={m.start_dim}, end_dim={m.end_dim} (only 1, -1)")
        return Flatten()
    if isinstance(m, nn.Linear):
        layer = Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)
        layer.weight, layer.bias = _array(m.weight, dtype), _array(m.bias, dtype)
        return layer
    if isinstance(m, nn.MaxPool2d):
        if _pair(m.dilation) != (1, 1):
            _refuse(m, name, f"dilation={m.dilation} (only 1)")
        if m.ceil_mode:
            _refuse(m, name, "ceil_mode=True (only False)")
        if m.return_indices:
            _refuse(m, name, "return_indices=True (only False)")
        return MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode:
            _refuse(m, name, "ceil_mode=True (only False)")
        if not m.count_include_pad:
            _refuse(m, name, "count_include_pad=False (only True)")
        if m.divisor_override is not None:
            _refuse(m, name, f"divisor_override={m.divisor_override} (only None)")
        return AvgPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = _pair(m.output_size)
        if any(s is None for s in size):
            _refuse(m, name, f"output_size={m.output_size} (None entries; only ints)")
        return AdaptiveAvgPool2d(size)
    if isinstance(m, nn.BatchNorm2d):
        raise ValueError(f"from_torch: BatchNorm2d at {name!r}: only supported directly after a "
                         f"Conv2d (it is folded into the conv)")
    raise TypeError(f"from_torch: unsupported module {type(m).__name__} at {name!r}; "
                    f"supported: {SUPPORTED}")
