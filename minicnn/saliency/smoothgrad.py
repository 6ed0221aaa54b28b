"""SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825): a gradient method averaged over noisy
copies of the image; also SmoothGrad-squared and VarGrad (Adebayo et al. 2018).
Re-exported by ``minicnn.saliency``.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_array, check_choice, check_images, check_int, check_number
from minicnn._progress import progress_bar
from minicnn.saliency.gradient import (accumulate_per_image, check_targets, gradient,
                                       in_chunks, row_batches)

__all__ = ["smoothgrad", "SMOOTHGRAD_KINDS", "DEFAULT_SAMPLES"]


# ============================================================================ SmoothGrad

SMOOTHGRAD_KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")
DEFAULT_SAMPLES = 50


def smoothgrad(model, x, target=None, method=gradient, n_samples=None, noise_level=0.15,
               seed=None, noise=None, kind="smoothgrad", batch_size=50,
               progress=False) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017): a method averaged over noisy copies of x.

    For each image n and sample s, the noisy copy is x_n + e_sn with e_sn ~ N(0, sigma_n^2)
    per pixel and sigma_n = noise_level * (max(x_n) - min(x_n)), the paper's relative noise
    level (it found 10-20% good). `method` runs on every copy, always for the class resolved
    on the CLEAN image (so `target=None` means the clean prediction, not each copy's).

    - method: any function (model, x, target) -> array shaped like x: ``gradient`` (the
      default), ``guided_backprop``, ``deconvnet``, ``input_x_gradient``, ... (for a method
      known by name, pass ``saliency.get_method(name)``)
    - n_samples: noisy copies per image; default 50, or noise.shape[0] when `noise` is given
    - seed: seeds numpy.random.default_rng; the noise is drawn in x's dtype, sample by sample
      in the order (s, n), so the result does not depend on batch_size
    - noise: the exact noise to add instead of drawing it (noise_level and seed then unused):
      shape (n_samples, N, C, H, W), or (n_samples, 1, C, H, W) for the same noise on every
      image; copy (s, n) is x[n] + noise[s, n]
    - kind: "smoothgrad" mean of the maps; "smoothgrad_sq" mean of their squares;
      "vargrad" their variance, mean of squares minus squared mean (Adebayo et al. 2018);
      the same three as Captum's NoiseTunnel
    - batch_size: noisy copies per forward/backward pass; at most this many copies (and
      their gradients) are in memory at once
    - progress: draw a progress bar on stderr
    Returns an array shaped like x (N, C, H, W), in x's dtype.
    """
    x = check_images(x)
    if not callable(method):
        hint = (f"; for a method known by name use saliency.get_method({method!r})"
                if isinstance(method, str) else "")
        raise TypeError(f"smoothgrad: method must be a function (model, x, target) -> "
                        f"attribution, got {type(method).__name__} {method!r}{hint}")
    kind = check_choice(kind, SMOOTHGRAD_KINDS, "smoothgrad kind")
    batch_size = check_int(batch_size, "batch_size", 1)
    if noise is None:
        n_samples = check_int(DEFAULT_SAMPLES if n_samples is None else n_samples,
                              "n_samples", 1)
        draw = _drawn_noise(x, noise_level, seed)
    else:
        noise = _check_noise(noise, x, n_samples)
        n_samples = noise.shape[0]
        draw = _given_noise(noise, len(x))
    if target is None:  # the clean images' predictions
        targets = in_chunks(model, x)[1]                         # (N,)
    else:  # no forward pass needed: `method` checks the range on the first batch
        targets = check_targets(target, len(x))                  # (N,)

    N = len(x)
    total = np.zeros(x.shape, np.float64)                          # sum of maps, per image
    total_sq = np.zeros(x.shape, np.float64) if kind != "smoothgrad" else None
    with progress_bar(n_samples * N, kind, progress) as bar:
        for rows in row_batches(n_samples * N, batch_size):
            image = rows % N                       # row r: sample r // N of image r % N
            noisy = x[image] + draw(rows)                          # (B, C, H, W)
            maps = np.asarray(method(model, noisy, targets[image]))
            if maps.shape != noisy.shape:
                raise ValueError(f"smoothgrad: method {getattr(method, '__name__', method)} "
                                 f"returned shape {maps.shape}, expected the input's shape "
                                 f"{noisy.shape}")
            accumulate_per_image(total, image, maps)
            if total_sq is not None:
                accumulate_per_image(total_sq, image, np.square(maps, dtype=np.float64))
            bar.update(len(rows))
    mean = total / n_samples
    if kind == "smoothgrad":
        return mean.astype(x.dtype)
    mean_sq = total_sq / n_samples
    return (mean_sq if kind == "smoothgrad_sq" else mean_sq - mean * mean).astype(x.dtype)


def _drawn_noise(x, noise_level, seed):
    """rows -> Gaussian noise (len(rows), C, H, W) scaled by each row's image's sigma."""
    noise_level = check_number(noise_level, "noise_level (a fraction of each image's value "
                               "range)", minimum=0)
    span = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))           # (N,)
    sigma = (noise_level * span).astype(x.dtype).reshape(-1, 1, 1, 1)  # (N, 1, 1, 1)
    rng = np.random.default_rng(seed)
    N = len(x)

    def draw(rows):
        e = rng.standard_normal((len(rows),) + x.shape[1:], dtype=x.dtype)  # (B, C, H, W)
        return e * sigma[rows % N]
    return draw


def _check_noise(noise, x, n_samples) -> np.ndarray:
    """noise shaped (S, N or 1, C, H, W), S == n_samples if that is given -> x's dtype."""
    N = len(x)
    noise = check_array(noise, "noise", dtypes=None)
    if noise.dtype.kind != "f":
        raise TypeError(f"noise must have a floating-point dtype, got {noise.dtype}")
    if noise.ndim != 5 or noise.shape[1] not in (1, N) or noise.shape[2:] != x.shape[1:]:
        raise ValueError(f"noise must be shaped (n_samples, {N}, *{x.shape[1:]}) or "
                         f"(n_samples, 1, *{x.shape[1:]}), got {noise.shape}")
    if n_samples is not None and check_int(n_samples, "n_samples", 1) != noise.shape[0]:
        raise ValueError(f"noise holds {noise.shape[0]} samples but n_samples={n_samples}; "
                         f"leave n_samples out when passing noise")
    return noise.astype(x.dtype, copy=False)


def _given_noise(noise, N):
    """rows -> noise[s, n] for row r = s * N + n (n = 0 when one noise serves every image)."""
    def draw(rows):
        image = rows % N if noise.shape[1] == N else np.zeros_like(rows)
        return noise[rows // N, image]                             # (B, C, H, W)
    return draw
