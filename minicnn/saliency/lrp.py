"""Layer-wise relevance propagation (Bach et al. 2015, PLoS ONE 10(7):e0130140; Montavon,
Binder, Lapuschkin, Samek & Mueller 2019, "Layer-Wise Relevance Propagation: An Overview").

One forward pass, then one backward pass that carries *relevance* instead of a gradient: it
starts as the explained score itself (the one-hot times S_c) and each layer shares the
relevance of its outputs among its inputs by a rule, so that what reaches the pixels adds up
to the score, less what the biases and stabilisers took (the ledger says how much, layer by
layer). The rules are written in each layer's backward, beside its chain rule
(``minicnn.engine.layers.rules``); this module names them and their usual combinations:

- single rules, for every layer with weights (other layers take their defaults: relevance
  passes through activations and to the winner of a max-pool, and is shared in proportion
  through additions and average pools): "lrp-0", "epsilon", "gamma", "z-plus",
  "alpha1-beta0" (the same as z-plus), "alpha2-beta1";
- composites, under zennit's names (Anders et al. 2021, arXiv:2106.13200):
  EpsilonPlus ("epsilon-plus", the default): z-plus in convolutions, epsilon in dense layers;
  EpsilonGammaBox ("epsilon-gamma-box"): gamma in convolutions, the box rule z^B in the
  first one, epsilon in dense layers; EpsilonAlpha2Beta1 ("epsilon-alpha2-beta1");
  EpsilonPlusFlat ("epsilon-plus-flat"): EpsilonPlus with the flat rule in the first layer;
- your own: a dict {node name, layer type or type name: rule} (e.g. {"features.0": Flat(),
  "Conv2d": ZPlus(), "Linear": Epsilon(0.25)}), or a ``Composite``.

The box rule needs the input's bounds: a composite made without them takes them from the
model's preprocessing (pixels 0..1, normalised: (0 - mean) / std .. (1 - mean) / std).

``lrp(model, x, target, rule)`` is the method (in the registry as "lrp"); ``lrp_ledger``
returns the relevance and the ledger together, for one image or many.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from minicnn._checks import check_images
from minicnn.engine.layers import Conv2d, Linear
from minicnn.engine.layers.rules import (AlphaBeta, Composite, Epsilon, Flat, Gamma,
                                         RelevanceRule, ZBox, ZPlus)
from minicnn.saliency.gradient import in_chunks, one_hot

__all__ = ["lrp", "lrp_ledger", "relevance_seed", "resolve_rule", "input_bounds",
           "EpsilonPlus", "EpsilonGammaBox", "EpsilonAlpha2Beta1", "EpsilonPlusFlat",
           "COMPOSITES", "RULES", "DEFAULT_RULE", "rule_names", "describe_rule"]

DEFAULT_RULE = "epsilon-plus"


# ============================================================================ zennit's composites

def EpsilonPlus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """z-plus in every convolution, epsilon in every dense layer (zennit's EpsilonPlus)."""
    return Composite(name="epsilon-plus", stabilizer=stabilizer,
                     layers=((Conv2d, ZPlus(stabilizer)), (Linear, Epsilon(epsilon))))


def EpsilonGammaBox(low=None, high=None, epsilon: float = 1e-6, gamma: float = 0.25,
                    stabilizer: float = 1e-6) -> Composite:
    """The box rule z^B in the first convolution (inputs in [low, high]; None: from the
    model's preprocessing, see ``lrp``), gamma in the other convolutions, epsilon in dense
    layers (zennit's EpsilonGammaBox)."""
    return Composite(name="epsilon-gamma-box", stabilizer=stabilizer,
                     layers=((Conv2d, Gamma(gamma, stabilizer)), (Linear, Epsilon(epsilon))),
                     first=((Conv2d, ZBox(low, high, stabilizer)),))


def EpsilonAlpha2Beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """alpha 2, beta 1 in every convolution, epsilon in dense layers (zennit's
    EpsilonAlpha2Beta1)."""
    return Composite(name="epsilon-alpha2-beta1", stabilizer=stabilizer,
                     layers=((Conv2d, AlphaBeta(2, 1, stabilizer)), (Linear, Epsilon(epsilon))))


def EpsilonPlusFlat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """EpsilonPlus, with the flat rule in the first layer with weights (zennit's
    EpsilonPlusFlat)."""
    return Composite(name="epsilon-plus-flat", stabilizer=stabilizer,
                     layers=((Conv2d, ZPlus(stabilizer)), (Linear, Epsilon(epsilon))),
                     first=(((Conv2d, Linear), Flat(stabilizer)),))


# The names the command line takes (``--rule``): composites, and single rules for every layer
# with weights.
COMPOSITES = {"epsilon-plus": EpsilonPlus, "epsilon-gamma-box": EpsilonGammaBox,
              "epsilon-alpha2-beta1": EpsilonAlpha2Beta1, "epsilon-plus-flat": EpsilonPlusFlat}
RULES = {"lrp-0": Epsilon(0.0), "epsilon": Epsilon(), "gamma": Gamma(), "z-plus": ZPlus(),
         "alpha1-beta0": AlphaBeta(1, 0), "alpha2-beta1": AlphaBeta(2, 1)}


def describe_rule(rule) -> str:
    """How a figure or a table names a rule: a composite's or rule's name, "your mapping"."""
    if isinstance(rule, dict):
        return "your mapping"
    return str(resolve_rule(rule) if isinstance(rule, str) else rule)


def rule_names() -> list[str]:
    """Every name ``resolve_rule`` knows: the composites, then the single rules."""
    return [*COMPOSITES, *RULES]


# ============================================================================ resolving a rule

def input_bounds(model):
    """(low, high), each one number per input channel: the normalised values of pixels 0
    and 1 under the model's preprocessing (``meta["preprocess"]``: (0 - mean) / std and
    (1 - mean) / std); None if the model does not say how its inputs were made."""
    prep = (model.meta or {}).get("preprocess")
    if not isinstance(prep, dict) or "mean" not in prep or "std" not in prep:
        return None
    mean, std = np.asarray(prep["mean"], np.float64), np.asarray(prep["std"], np.float64)
    return (0.0 - mean) / std, (1.0 - mean) / std


def resolve_rule(rule, model=None):
    """A rule as ``Graph.backward`` takes it, from what a user gives:

    - a name: a composite or a single rule (``rule_names()``); anything else is a
      ValueError listing the known names;
    - an LRP rule (``Epsilon(0.25)``), a ``Composite``, or a dict {node name, layer type or
      type name: rule or rule name}: as they are.
    With a model, a box rule made without bounds gets the model's (``input_bounds``)."""
    if isinstance(rule, str):
        key = rule.strip().lower().replace("_", "-")
        if key in COMPOSITES:
            rule = COMPOSITES[key]()
        elif key in RULES:
            rule = RULES[key]
        else:
            raise ValueError(f"unknown LRP rule or composite {rule!r}: composites are "
                             f"{', '.join(COMPOSITES)}; rules (for every layer with weights) "
                             f"are {', '.join(RULES)}")
    elif isinstance(rule, dict):
        rule = {key: resolve_rule(value) if isinstance(value, str) else value
                for key, value in rule.items()}
        if not all(isinstance(value, RelevanceRule) for value in rule.values()):
            bad = next(v for v in rule.values() if not isinstance(v, RelevanceRule))
            raise TypeError(f"lrp: a mapping's values are LRP rules or their names, got "
                            f"{bad!r}")
    elif not isinstance(rule, (RelevanceRule, Composite)):
        raise TypeError(f"lrp: rule must be a name ({', '.join(rule_names())}), an LRP rule, "
                        f"a Composite or a dict of rules, got {rule!r}")
    return rule if model is None else _with_bounds(rule, model)


def _with_bounds(rule, model):
    """``rule`` with every box rule that has no bounds given the model's (if it has them)."""
    bounds = input_bounds(model)
    if bounds is None:
        return rule

    def bound(r):
        if isinstance(r, ZBox) and r.low is None:
            return ZBox(bounds[0], bounds[1], r.stabilizer)
        return r
    if isinstance(rule, Composite):
        return dataclasses.replace(
            rule, layers=tuple((t, bound(r)) for t, r in rule.layers),
            first=tuple((t, bound(r)) for t, r in rule.first),
            names=tuple((n, bound(r)) for n, r in rule.names),
            otherwise=None if rule.otherwise is None else bound(rule.otherwise))
    if isinstance(rule, dict):
        return {key: bound(r) for key, r in rule.items()}
    return bound(rule)


# ============================================================================ the method

def relevance_seed(scores, targets) -> np.ndarray:
    """The relevance at the output: the one-hot on each image's target times its score,
    (N, K), in the scores' dtype."""
    seed = one_hot(targets, scores.shape[1], scores.dtype)
    seed *= scores
    return seed


def lrp(model, x, target=None, rule=DEFAULT_RULE) -> np.ndarray:
    """Layer-wise relevance propagation of the pre-softmax score, shaped like x (N, C, H, W).

    - target: None (each image's predicted class), an int, or a sequence of N ints
    - rule: a name (``rule_names()``: "epsilon-plus", the default, "epsilon-gamma-box",
      "epsilon-alpha2-beta1", "epsilon-plus-flat", "lrp-0", "epsilon", "gamma", "z-plus",
      "alpha1-beta0", "alpha2-beta1"), an LRP rule, a ``Composite`` or a dict of rules (see
      the module docstring)
    One forward and one backward pass per image. Each image's relevance adds up to its
    score, less what biases and stabilisers absorbed (``lrp_ledger`` says what).
    """
    return lrp_ledger(model, x, target, rule)[0]


def lrp_ledger(model, x, target=None, rule=DEFAULT_RULE) -> tuple:
    """``lrp``'s relevance and its ledger: (relevance (N, C, H, W), ledger), the ledger as
    ``Graph.ledger`` gives it (from the score's node back to the input, a dict per node) with
    each value an array over all N images."""
    x = check_images(x)
    rule = resolve_rule(rule, model)
    parts = []

    def backward(xc, scores, targets):                             # after each chunk's forward
        relevance = model.backward(relevance_seed(scores, targets), rule=rule)
        parts.append(model.ledger())
        return (relevance,)
    relevance = in_chunks(model, x, target, backward)[2]
    ledger = [{key: (np.concatenate([part[k][key] for part in parts])
                     if isinstance(value, np.ndarray) else value)
               for key, value in entry.items()} for k, entry in enumerate(parts[0])]
    return relevance, ledger
