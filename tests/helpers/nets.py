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
