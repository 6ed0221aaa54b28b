"""Test helper: a tiny random network shared by the class-model and fooling tests."""
import numpy as np

import minicnn

SHAPE = (3, 15, 15)


def small_net(seed=0):
    """Conv/ReLU/MaxPool/Linear with random float64 weights, (N, 3, 15, 15) -> (N, 4)."""
    rng = np.random.default_rng(seed)
    model = minicnn.Sequential([minicnn.Conv2d(3, 5, 3, padding=1), minicnn.ReLU(),
                                minicnn.MaxPool2d(3), minicnn.Flatten(),
                                minicnn.Linear(5 * 5 * 5, 12), minicnn.ReLU(),
                                minicnn.Linear(12, 4)])
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.5, size=value.shape))
    model.meta = {"input_shape": list(SHAPE)}
    return model
