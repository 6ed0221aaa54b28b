"""Sanity checks for saliency maps: does the map change when the model is destroyed?

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018 ("Sanity Checks for Saliency Maps",
arXiv:1810.03292, §3, "cascading randomization"): re-initialise the network's parameters
layer by layer, from the top (the last layer) down to the input, and compare each method's
map on the damaged network with its map on the trained one. A method that explains the
model must change as the model is destroyed; one whose map hardly changes (they found
guided backprop among them) shows something else, e.g. the image's edges.

- ``cascading_randomization``: the sequence of damaged copies; step k has the last k
  parametrised layers (Conv2d, Linear) re-initialised with random values from their own
  initial distribution, PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias;
- ``spearman``: Spearman rank correlation of two maps (ties get their average rank);
- ``ssim``: the structural similarity index (Wang, Bovik, Sheikh & Simoncelli 2004) of two
  maps, each first scaled to [0, 1];
- ``sanity_checks``: maps and both similarities for every step and method.
Adebayo et al. compare absolute maps (``abs=True``, the default here) and signed ones.
"""
from __future__ import annotations

import math

import numpy as np

from minicnn.engine.layers import Conv2d, Linear
from minicnn._progress import progress_bar
from minicnn.saliency import resolve_targets, to_map

__all__ = [
    "copy_model",
    "parametrized_layers",
    "reinitialize",
    "cascading_randomization",
    "rank",
    "spearman",
    "ssim",
    "sanity_checks",
]


def copy_model(model):
    """An independent copy (same architecture, copied weights and dtype, same meta)."""
    state = model.state_dict()
    dtype = next(iter(state.values())).dtype if state else np.float32
    copy = type(model).from_config(model.config(), init=False, dtype=dtype)
    copy.load_state_dict(state)
    copy.meta = dict(model.meta)
    return copy


def parametrized_layers(model) -> list[str]:
    """Names of the layers with weights (Conv2d and Linear), input to output."""
    return [name for name, layer in zip(model.names, model.layers)
            if isinstance(layer, (Conv2d, Linear))]


def reinitialize(layer, rng) -> None:
    """Replace a Conv2d's or Linear's weight and bias with fresh draws from PyTorch's default
    initial distribution, U(-b, b) with b = 1/sqrt(fan_in), fan_in = weight.size / out."""
    fan_in = layer.weight[0].size                                  # C*KH*KW or in_features
    bound = 1.0 / math.sqrt(fan_in)
    for name, value in layer.parameters().items():
        setattr(layer, name, rng.uniform(-bound, bound, size=value.shape).astype(value.dtype))


def cascading_randomization(model, seed=0):
    """Yield (layer_name, damaged_copy) for the cascade, top layer first.

    Step 0 is ("original", a copy of the model); step k re-initialises one more layer of
    ``parametrized_layers`` from the end, on top of the damage of step k-1. Layer i's values
    come from numpy.random.default_rng([seed, i]), so a layer gets the same random values
    whatever the order. The model passed in is never changed.
    """
    damaged = copy_model(model)
    yield "original", damaged
    for name in reversed(parametrized_layers(model)):
        damaged = copy_model(damaged)
        reinitialize(damaged[name], np.random.default_rng([seed, model.index(name)]))
        yield name, damaged


# ============================================================================ similarity

def rank(values) -> np.ndarray:
    """Ranks 1..n of a flat array, ties sharing their average rank -> float64 (n,)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    # runs of equal values: each gets the mean of the positions it spans (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])       # (R,)
    ends = np.r_[starts[1:], len(v)]                                          # (R,)
    run_rank = (starts + 1 + ends) / 2.0                            # mean of start+1..end
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation of two maps of equal shape: Pearson's r of their ranks.

    In [-1, 1]; nan if either map is constant (its ranks have no spread).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"spearman: shapes differ, {a.shape} and {b.shape}")
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else float("nan")


def _unit_range(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _gaussian_filter_valid(m, kernel) -> np.ndarray:
    """Correlate (H, W) with the separable kernel's outer product, 'valid' part only."""
    k = len(kernel)
    H, W = m.shape
    rows = sum(kernel[i] * m[i:H - k + 1 + i, :] for i in range(k))         # (H-k+1, W)
    return sum(kernel[j] * rows[:, j:W - k + 1 + j] for j in range(k))      # (H-k+1, W-k+1)


def ssim(a, b, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004) of two maps (H, W), each first min-max scaled to [0, 1].

    For every window position (an 11 x 11 Gaussian window, sigma 1.5, positions where it
    fits entirely, as the paper's reference code): local means mu, variances s^2 and
    covariance s_ab, all Gaussian-weighted, and

        SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))

    with C1 = (k1 L)^2, C2 = (k2 L)^2 and dynamic range L = 1. Returns the mean over
    positions, in [-1, 1], 1 for identical maps. A constant map scales to all zeros.
    """
    a, b = _unit_range(a), _unit_range(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim: expected two maps of the same (H, W) shape, got {a.shape} and "
                         f"{b.shape}")
    if min(a.shape) < window:
        raise ValueError(f"ssim: maps {a.shape} are smaller than the {window}x{window} window")
    d = np.arange(window) - (window - 1) / 2
    kernel = np.exp(-d * d / (2 * sigma * sigma))
    kernel /= kernel.sum()
    c1, c2 = k1 ** 2, k2 ** 2
    mu_a, mu_b = _gaussian_filter_valid(a, kernel), _gaussian_filter_valid(b, kernel)
    var_a = _gaussian_filter_valid(a * a, kernel) - mu_a ** 2
    var_b = _gaussian_filter_valid(b * b, kernel) - mu_b ** 2
    cov = _gaussian_filter_valid(a * b, kernel) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1)
                                                     * (var_a + var_b + c2))
    return float(s.mean())


# ============================================================================ the experiment

def sanity_checks(model, x, target, methods, signed: bool = False, seed=0,
                  progress: bool = False) -> dict:
    """Cascading randomisation of `model`, maps of every method at every step, similarities.

    - x: (N, C, H, W) images; target: as for the methods (None: the ORIGINAL model's
      prediction, fixed for every step so the maps always explain the same class)
    - methods: {name: function (model, x, target) -> attribution}
    - signed: False compares the paper's |.| maps (max over channels of |.|, Adebayo et
      al.'s main figures); True compares signed maps (the sum over channels), see
      ``saliency.to_map``
    - seed: seeds the re-initialisation (see ``cascading_randomization``)
    Returns {"steps": [layer names, "original" first], "maps": {method: (S, N, H, W)},
    "spearman": {method: (S, N)}, "ssim": {method: (S, N)}} comparing step s with step 0.
    """
    targets = resolve_targets(target, model.predict(x))           # (N,)
    steps, maps = [], {m: [] for m in methods}
    n_steps = len(parametrized_layers(model)) + 1
    with progress_bar(n_steps * len(methods), "sanity checks", progress) as bar:
        for name, damaged in cascading_randomization(model, seed):
            steps.append(name)
            for method, fn in methods.items():
                maps[method].append(to_map(fn(damaged, x, targets), x.shape[2:], signed))
                bar.update()
    result = {"steps": steps, "maps": {}, "spearman": {}, "ssim": {}}
    for method, per_step in maps.items():
        stack = np.stack(per_step)                                 # (S, N, H, W)
        result["maps"][method] = stack
        result["spearman"][method] = np.array([[spearman(stack[0, n], stack[s, n])
                                                for n in range(len(x))]
                                               for s in range(len(stack))])       # (S, N)
        result["ssim"][method] = np.array([[ssim(stack[0, n], stack[s, n])
                                            for n in range(len(x))]
                                           for s in range(len(stack))])           # (S, N)
    return result
