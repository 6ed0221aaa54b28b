"""Integrated gradients (Sundararajan, Taly & Yan 2017, arXiv:1703.01365): gradients along the
straight path from a baseline to the image, times (image - baseline), and the quadrature rules
it uses. The baselines themselves (zeros, a blurred image) are in ``baselines.py``.
Re-exported by ``minicnn.saliency``.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_choice, check_images, check_int
from minicnn._progress import progress_bar
from minicnn.saliency.baselines import baseline_like
from minicnn.saliency.gradient import accumulate_per_image, gradient, in_chunks, row_batches

__all__ = ["integrated_gradients", "integration_points", "IG_METHODS"]


# ============================================================================ integrated gradients

IG_METHODS = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle",
              "gausslegendre")


def integration_points(steps: int, method: str = "gausslegendre"):
    """Where on the path, and with what weight, integrated gradients samples the gradient.

    Returns (alphas, weights), two float64 arrays of shape (steps,): the path points
    baseline + alpha * (x - baseline) and the quadrature weights. The rules are Captum's, so
    that results match its IntegratedGradients with the same n_steps and method:

    - riemann_left, riemann_right, riemann_middle: alphas = linspace(0, 1 - 1/n),
      linspace(1/n, 1), linspace(1/(2n), 1 - 1/(2n)), all n points; weights 1/n;
    - riemann_trapezoid: alphas = linspace(0, 1, n), weights 1/n halved at both ends. NOTE:
      Captum's rule; the points are 1/(n-1) apart, so the weights sum to (n-1)/n rather
      than 1 and this method's completeness gap shrinks only like 1/n;
    - gausslegendre: numpy's Gauss-Legendre nodes and weights, mapped from [-1, 1] to [0, 1].
    Riemann rules need steps >= 2 (Captum asserts it), Gauss-Legendre steps >= 1.
    Captum computes the Riemann points with float32 torch.linspace and rounds the weights to
    float32; here both are exact float64, so float64 results agree with Captum's to about
    1e-7 relative, not to the last bit.
    """
    method = check_choice(method, IG_METHODS, "integrated gradients method")
    n = check_int(steps, "steps", 1)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1), 0.5 * weights
    if n < 2:
        raise ValueError(f"steps must be >= 2 for {method} (Captum's rule), got {n}")
    weights = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n), weights
    first, last = {"riemann_left": (0.0, 1 - 1 / n), "riemann_right": (1 / n, 1.0),
                   "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n))}[method]
    return np.linspace(first, last, n), weights


def integrated_gradients(model, x, target=None, baseline=None, steps=50,
                         method="gausslegendre", batch_size=50, return_gap=False,
                         progress=False):
    """Integrated gradients (Sundararajan, Taly & Yan 2017), shaped like x (N, C, H, W).

    IG_i = (x_i - b_i) * integral over a in [0, 1] of dS_c/dx_i at b + a (x - b), the
    integral replaced by sum_k w_k * gradient at alpha_k (``integration_points``).
    Completeness: the attributions sum to S_c(x) - S_c(b), up to the quadrature error.

    - baseline b: None or 0 (black in the model's input space: zeros), "zeros", "blur"
      (``baselines.blur(x)``: each image Gaussian-blurred, sigma = BLUR_SIGMA pixels), a
      number, or an array broadcastable to x's shape (e.g. (C, 1, 1) channel means or
      (N, C, H, W))
    - steps, method: the quadrature, see ``integration_points`` (method is one of IG_METHODS)
    - batch_size: path points per forward/backward pass (bounded memory)
    - return_gap: also return the completeness gap per image, (N,) float64:
      sum of the attributions - (S_c(x) - S_c(b)); Captum's convergence delta
    - progress: draw a progress bar on stderr
    Returns attributions (N, C, H, W) in x's dtype, or (attributions, gap).
    """
    x = check_images(x)
    alphas, weights = integration_points(steps, method)
    batch_size = check_int(batch_size, "batch_size", 1)
    base = baseline_like(x, baseline)                                 # (N, C, H, W)
    scores, targets = in_chunks(model, x, target)                 # (N, K), (N,)
    N = len(x)
    diff = x - base                                               # (N, C, H, W)
    total = np.zeros(x.shape, np.float64)                         # sum_k w_k grad_k, per image
    with progress_bar(len(alphas) * N, "integrated gradients", progress) as bar:
        for rows in row_batches(len(alphas) * N, batch_size):
            step, image = rows // N, rows % N                     # step-major, as Captum
            a = alphas[step].astype(x.dtype).reshape(-1, 1, 1, 1)   # (B, 1, 1, 1)
            grad = gradient(model, base[image] + a * diff[image], targets[image])
            w = weights[step].reshape(-1, 1, 1, 1)                # (B, 1, 1, 1)
            accumulate_per_image(total, image, w * grad)
            bar.update(len(rows))
    attributions = (total * diff).astype(x.dtype)
    if not return_gap:
        return attributions
    rows = np.arange(N)
    change = scores[rows, targets] - in_chunks(model, base)[0][rows, targets]
    gap = attributions.sum(axis=(1, 2, 3), dtype=np.float64) - change
    return attributions, gap
