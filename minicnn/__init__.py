"""minicnn: a from-scratch CNN engine (NumPy + Numba) with explicit backward passes, for
learning how backprop saliency maps work (Simonyan, Vedaldi & Zisserman 2013,
arXiv:1312.6034)."""
from minicnn.engine.kernels import use_kernels
from minicnn.engine.layers import (AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d, Concat, Conv2d,
                                   Dropout, Flatten, Layer, Linear, MaxPool2d, ReLU)
from minicnn.engine.model import Graph, Sequential
from minicnn.io.torch_import import fold_batchnorm, from_torch
from minicnn.io.weights import load, save

__all__ = [
    "use_kernels",
    "Layer", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
    "Linear", "Dropout", "BatchNorm2d", "Add", "Concat",
    "Graph", "Sequential",
    "from_torch", "fold_batchnorm",
    "save", "load",
]
