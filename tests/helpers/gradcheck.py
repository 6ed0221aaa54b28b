"""Central finite differences in float64: the oracle that needs no PyTorch."""
import numpy as np


def numerical_input_gradient(f, x, grad_out, h=1e-6):
    """d/dx of sum(f(x) * grad_out), one input element at a time: (L(x+h) - L(x-h)) / 2h.

    - f: a function of one float64 array (e.g. layer.forward), returning an array
    - x: float64 array; grad_out: shaped like f(x)
    Returns: an array shaped like x.
    """
    assert x.dtype == np.float64
    x = x.copy()
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + h
        plus = np.sum(f(x) * grad_out)
        flat_x[i] = saved - h
        minus = np.sum(f(x) * grad_out)
        flat_x[i] = saved
        flat_grad[i] = (plus - minus) / (2 * h)
    return grad
