"""Test helper: small random networks shared by several test modules."""
import numpy as np

import minicnn

TINY_SHAPE = (3, 15, 15)


def small_net(seed=0, dtype=np.float64):
    """Every layer kind the shipped model has, random weights: (N, 3, 23, 23) -> (N, 5)."""
    rng = np.random.default_rng(seed)
    layers = [minicnn.Conv2d(3, 6, 3, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(2),
              minicnn.Conv2d(6, 8, 3, stride=2, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(2),
              minicnn.Flatten(), minicnn.Linear(8 * 3 * 3, 16), minicnn.ReLU(),
              minicnn.Dropout(0.3), minicnn.Linear(16, 5)]
    model = minicnn.Sequential(layers)
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.5, size=value.shape).astype(dtype))
    return model


def mobile_net(seed=0, dtype=np.float64):
    """The blocks of the networks deployed on CPUs, small, random weights: (N, 3, 23, 23) ->
    (N, 5). A stem, a depthwise 3x3 stride-2 convolution, a squeeze-and-excitation gate (global
    pool, 1x1 down, ReLU, 1x1 up, Sigmoid, times the maps), a pointwise convolution, a grouped
    3x3 convolution (3 groups), max-pool and a classifier. Its rectifiers are ReLUs, so that
    Captum's guided backprop and deconvnet (which hook torch.nn.ReLU only) mean what minicnn's
    do."""
    rng = np.random.default_rng(seed)
    nodes = [("stem", minicnn.Conv2d(3, 8, 3, padding=1), ("input",)),
             ("stem_relu", minicnn.ReLU(), ("stem",)),
             ("dw", minicnn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), ("stem_relu",)),
             ("dw_relu", minicnn.ReLU(), ("dw",)),
             ("se.pool", minicnn.AdaptiveAvgPool2d(1), ("dw_relu",)),
             ("se.fc1", minicnn.Conv2d(8, 4, 1), ("se.pool",)),
             ("se.relu", minicnn.ReLU(), ("se.fc1",)),
             ("se.fc2", minicnn.Conv2d(4, 8, 1), ("se.relu",)),
             ("se.gate", minicnn.Sigmoid(), ("se.fc2",)),
             ("se.scale", minicnn.Mul(), ("se.gate", "dw_relu")),
             ("pw", minicnn.Conv2d(8, 12, 1), ("se.scale",)),
             ("pw_relu", minicnn.ReLU(), ("pw",)),
             ("grouped", minicnn.Conv2d(12, 12, 3, padding=1, groups=3), ("pw_relu",)),
             ("grouped_relu", minicnn.ReLU(), ("grouped",)),
             ("pool", minicnn.MaxPool2d(2), ("grouped_relu",)),
             ("flatten", minicnn.Flatten(), ("pool",)),
             ("fc", minicnn.Linear(12 * 6 * 6, 5), ("flatten",))]
    model = minicnn.Graph(nodes, meta={"cam_layer": "grouped_relu"})
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.5, size=value.shape).astype(dtype))
    return model


def tiny_net(seed=0):
    """Conv/ReLU/MaxPool/Linear with random float64 weights, (N, 3, 15, 15) -> (N, 4); its
    meta has the input shape (for class models and fooling images)."""
    rng = np.random.default_rng(seed)
    model = minicnn.Sequential([minicnn.Conv2d(3, 5, 3, padding=1), minicnn.ReLU(),
                                minicnn.MaxPool2d(3), minicnn.Flatten(),
                                minicnn.Linear(5 * 5 * 5, 12), minicnn.ReLU(),
                                minicnn.Linear(12, 4)], meta={"input_shape": list(TINY_SHAPE)})
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.5, size=value.shape))
    return model
