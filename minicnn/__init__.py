"""minicnn: a from-scratch CNN engine (NumPy + Numba) with explicit backward passes, for
learning how backprop saliency maps work (Simonyan, Vedaldi & Zisserman 2013,
arXiv:1312.6034)."""
from minicnn.engine.kernels import use_kernels
from minicnn.engine.layers import (Activation, AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d,
                                   ChannelShuffle, ChannelSlice, Concat, Conv2d, Dropout, Flatten,
                                   Hardsigmoid, Hardswish, Hardtanh, Layer, Linear, LRN, MaxPool2d,
                                   Mul, ReLU, ReLU6, Sigmoid, SiLU, ZeroPad2d)
from minicnn.engine.model import Graph, Sequential
from minicnn.io.torch_import import fold_batchnorm, from_torch
from minicnn.io.weights import load, save

__all__ = [
    "use_kernels",
    "Layer", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
    "Linear", "Dropout", "BatchNorm2d", "LRN", "Add", "Concat",
    "Activation", "ReLU6", "Hardtanh", "Hardswish", "Hardsigmoid", "SiLU", "Sigmoid", "Mul",
    "ZeroPad2d", "ChannelShuffle", "ChannelSlice",
    "Graph", "Sequential",
    "from_torch", "fold_batchnorm", "from_onnx",
    "save", "load", "fetch",
]


def fetch(name: str, **options):
    """``minicnn fetch NAME`` in Python: a pretrained ImageNet network ("mobilenet_v2",
    "efficientnet_lite0", torchvision's others) downloaded once, checked, converted and kept
    in the cache; returns the cached file's path, and ``minicnn.load(name)`` loads it from
    then on (``minicnn.io.convert.fetch_network``, imported on first use)."""
    from minicnn.io.convert import fetch_network
    return fetch_network(name, **options)


def from_onnx(path):
    """The network in the ONNX file ``path`` as a minicnn model (``minicnn.io.onnx``, imported
    on first use: it needs the onnx package, ``pip install "minicnn[onnx]"``)."""
    from minicnn.io.onnx import from_onnx as convert
    return convert(path)
