"""The engine: layers with their forward and backward passes side by side, the model that runs
them, and the kernels (a readable NumPy reference and a fast Numba twin) under both.

Nothing here knows about saliency, files or figures: it imports no other part of minicnn
(only the shared boundary checks in ``minicnn._checks``).
"""
from minicnn.engine.kernels import use_kernels
from minicnn.engine.layers import (Activation, AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d,
                                   ChannelShuffle, ChannelSlice, Concat, Conv2d, Dropout, Flatten,
                                   Hardsigmoid, Hardswish, Hardtanh, Layer, Linear, MaxPool2d, Mul,
                                   ReLU, ReLU6, Sigmoid, SiLU, ZeroPad2d)
from minicnn.engine.model import Graph, Sequential

__all__ = ["use_kernels", "Layer", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "Flatten", "Linear", "Dropout", "BatchNorm2d", "Add", "Concat",
           "Activation", "ReLU6", "Hardtanh", "Hardswish", "Hardsigmoid", "SiLU", "Sigmoid",
           "Mul", "ZeroPad2d", "ChannelShuffle", "ChannelSlice", "Graph", "Sequential"]
