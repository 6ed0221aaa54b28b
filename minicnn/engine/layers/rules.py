"""The rules of a backward pass: what a layer passes back from its output to its input.

The chain rule is one rule among several. ``backward(grad_out, rule)`` of every layer takes
one of these, and each layer says, beside its chain rule, what every rule that applies to it
does there:

- the strings "gradient", "guided", "deconvnet": the derivative, and the two saliency rules
  that change it at the rectifiers (``activations.py``); every other layer passes the
  gradient under all three;
- the LRP rules below (layer-wise relevance propagation: Bach et al. 2015, PLoS ONE
  10(7):e0130140; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview", in
  Explainable AI, LNCS 11700): the signal is *relevance* R, a share of the explained score,
  and a rule says how the R of each output is divided among the inputs that made it;
- ``Rescale``, DeepLIFT's rule (Shrikumar, Greenside & Kundaje 2017, arXiv:1704.02685): the
  signal is a *multiplier*, a difference quotient (f(x) - f(x0)) / (x - x0) against a
  reference input x0.

A rule is a small named object (a frozen dataclass), as in zennit (Anders et al. 2021,
arXiv:2106.13200), whose names these are. A *composite* (``Composite``) picks a rule per
node of a model: by the node's name, by its layer's type, by position (the first layer with
weights), and otherwise each layer's own default (``Layer.default_relevance_rule``: Pass
through activations and max-pools, Epsilon through additions and average pools).

The LRP rules of a layer with weights, z = W x + b (Conv2d, Linear), are written once, here
(``linear_relevance``), in terms of the layer's own forward and transposed kernels, so that a
grouped or depthwise convolution, and the fast kernels, need nothing more. With R the
relevance of the outputs and c = R / stabilised(z'), every rule is

    R_in = x' * (W'^T c)

for a modified input x' and modified weights W' (and z' = W' x' + b'), or a sum of such
terms (one per sign of the input, for the rules that split x into x+ and x-):

- Epsilon(e):      x' = x, W' = W, z' = z; the denominator z + e sign(z). e = 0 is LRP-0.
- ZPlus():         the positive contributions only: z' = W+ x+ + W- x- + b+, relevance to
                   x+ through W+ and to x- through W- (for inputs >= 0: W+ x only).
- AlphaBeta(a, b): a times ZPlus's share minus b times the same for the negative
                   contributions W- x+ + W+ x- + b-; AlphaBeta(1, 0) is ZPlus.
- Gamma(g):        W + g W+ (positive contributions favoured) for units with z > 0, W + g W-
                   for z < 0 (zennit's generalised gamma, Andeol et al. 2021); for inputs
                   >= 0 and z > 0 this is Montavon et al.'s gamma rule.
- ZBox(low, high): for the first layer, inputs bounded in [low, high] (Montavon et al. 2017,
                   "Explaining nonlinear classification decisions with deep Taylor
                   decomposition", Pattern Recognition 65): z' = W x - W+ low - W- high.
- Flat():          every weight 1, every input 1: relevance spread evenly over the
                   receptive field (Lapuschkin et al. 2019, Nat. Commun. 10:1096).
- WSquare():       in proportion to w^2, inputs ignored (Montavon et al. 2017).

Stabilisers: a denominator d becomes d + e sign(d), with sign(0) = +1 (zennit's and Captum's
convention); LRP-0 (e = 0) gives the outputs whose z is exactly 0 no relevance to pass on.

What is not conserved: the bias's share (c * b), the stabiliser's (c * e sign(z)), and, at a
BatchNorm2d node with its own rule, its shift's. Each layer reports them for the model's
relevance ledger (``Graph.ledger``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

__all__ = ["RelevanceRule", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat",
           "WSquare", "Pass", "Rescale", "Composite", "WEIGHT_RULES", "absorbed",
           "linear_relevance", "divide", "times", "per_image", "halves", "rescale_quotient",
           "rule_name"]


def _number(owner, what, value, low=None, strict=False):
    """A finite real number (not a bool), >= low (> low if strict), as a float."""
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        raise TypeError(f"{owner}: {what} must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{owner}: {what} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


# ============================================================================ the rule objects

class RelevanceRule:
    """Base of the LRP rules: each is a frozen dataclass of its parameters."""

    def __str__(self):
        return rule_name(self)


@dataclass(frozen=True)
class Epsilon(RelevanceRule):
    """LRP-epsilon: R_in = x * W^T (R / (z + epsilon sign(z))). epsilon = 0 is LRP-0; a larger
    epsilon lets weak or contradictory outputs pass on less. Through an Add, an average pool
    or a BatchNorm2d: each input's share in proportion to its contribution, stabilised."""

    epsilon: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "epsilon", _number("Epsilon", "epsilon", self.epsilon, 0))


@dataclass(frozen=True)
class Gamma(RelevanceRule):
    """LRP-gamma: weights W + gamma W+ for outputs with z > 0 (W + gamma W- for z < 0), so
    that positive contributions get more of the relevance; gamma = 0 is LRP-0 (stabilised)."""

    gamma: float = 0.25
    stabilizer: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "gamma", _number("Gamma", "gamma", self.gamma, 0))
        object.__setattr__(self, "stabilizer",
                           _number("Gamma", "stabilizer", self.stabilizer, 0))


@dataclass(frozen=True)
class AlphaBeta(RelevanceRule):
    """LRP-alpha-beta: alpha times the relevance shared in proportion to the positive
    contributions, minus beta times that shared by the negative ones; alpha - beta = 1 so
    that what is passed on adds up to what came in. AlphaBeta(1, 0) is ZPlus."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self):
        alpha = _number("AlphaBeta", "alpha", self.alpha, 0)
        beta = _number("AlphaBeta", "beta", self.beta, 0)
        if abs(alpha - beta - 1) > 1e-12:
            raise ValueError(f"AlphaBeta: alpha - beta must be 1, got alpha={self.alpha!r}, "
                             f"beta={self.beta!r}")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "stabilizer",
                           _number("AlphaBeta", "stabilizer", self.stabilizer, 0))


@dataclass(frozen=True)
class ZPlus(RelevanceRule):
    """LRP-z+ (alpha 1, beta 0): relevance in proportion to the positive contributions,
    x+ w+ and x- w- (a signed input contributes positively through weights of its sign)."""

    stabilizer: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "stabilizer", _number("ZPlus", "stabilizer", self.stabilizer, 0))


@dataclass(frozen=True, eq=False)
class ZBox(RelevanceRule):
    """LRP-z^B, the box rule for a first layer whose inputs lie in [low, high]: z' = W x -
    W+ low - W- high. low, high: numbers, one number per input channel, or arrays that
    broadcast to one input image (C, H, W); None until known (a composite may be made before
    the input's bounds are)."""

    low: object = None
    high: object = None
    stabilizer: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "stabilizer", _number("ZBox", "stabilizer", self.stabilizer, 0))
        if (self.low is None) != (self.high is None):
            raise ValueError(f"ZBox: give both bounds or neither, got low={self.low!r}, "
                             f"high={self.high!r}")
        for what in ("low", "high"):
            value = getattr(self, what)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.size == 0 or not np.isfinite(arr).all():
                raise ValueError(f"ZBox: {what} must be finite numbers, got {value!r}")
            object.__setattr__(self, what, arr)
        if self.low is not None and np.any(self.low > self.high):
            raise ValueError(f"ZBox: low must not exceed high, got low={self.low.tolist()}, "
                             f"high={self.high.tolist()}")

    def bounds_like(self, x) -> tuple:
        """(low, high) broadcast to x (N, C, ...) in x's dtype; one number per channel becomes
        (C, 1, 1). ValueError naming the shapes if they do not fit."""
        out = []
        for value in (self.low, self.high):
            if value.ndim == 1 and x.ndim > 2 and value.shape[0] == x.shape[1] != 1:
                value = value.reshape((-1,) + (1,) * (x.ndim - 2))   # (C, 1, 1): per channel
            try:
                out.append(np.broadcast_to(value, x.shape).astype(x.dtype))
            except ValueError:
                raise ValueError(f"ZBox: bounds of shape {value.shape} do not fit the layer's "
                                 f"input of shape {x.shape}") from None
        return tuple(out)


@dataclass(frozen=True)
class Flat(RelevanceRule):
    """LRP-flat: every weight and input taken as 1, so each output's relevance is spread
    evenly over its receptive field (for a first layer: where, not what)."""

    stabilizer: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "stabilizer", _number("Flat", "stabilizer", self.stabilizer, 0))


@dataclass(frozen=True)
class WSquare(RelevanceRule):
    """LRP-w^2: relevance in proportion to w^2, inputs ignored (a first layer whose inputs
    are unbounded). The bias is left out of the denominator, as in Montavon et al. 2017
    (zennit squares it too unless told zero_params="bias")."""

    stabilizer: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "stabilizer",
                           _number("WSquare", "stabilizer", self.stabilizer, 0))


@dataclass(frozen=True)
class Pass(RelevanceRule):
    """Relevance goes back to where the value came from, unchanged: through an activation
    to the same element, through a max-pool to each window's winner, through a product
    (a gate times a signal) to the signal alone; and through the layers that only move
    values (Flatten, Concat, slices, shuffles, padding) to where they were."""


@dataclass(frozen=True)
class Rescale:
    """DeepLIFT's Rescale rule. The model's forward pass ran on the images stacked over their
    references (2N rows: x then x0), and the backward carries multipliers: through a linear
    layer the gradient, through a nonlinearity (f(x) - f(x0)) / (x - x0), or the derivative
    where |x - x0| < eps (Captum's eps: 1e-10)."""

    eps: float = 1e-10

    def __post_init__(self):
        object.__setattr__(self, "eps", _number("Rescale", "eps", self.eps, 0))

    def __str__(self):
        return "rescale"


# The rules a layer with weights (Conv2d, Linear) can take, and what each does there.
WEIGHT_RULES = {
    Epsilon: "R_in = x W^T (R / (z + e sign z)); e = 0 is LRP-0",
    Gamma: "positive weights favoured by gamma",
    AlphaBeta: "alpha x positive minus beta x negative contributions",
    ZPlus: "positive contributions only",
    ZBox: "the box rule, inputs in [low, high] (a first layer)",
    Flat: "spread evenly over the receptive field (a first layer)",
    WSquare: "in proportion to w^2 (a first layer)",
}


def rule_name(rule) -> str:
    """A rule as the command line names it: "lrp-0", "epsilon 1e-06", "gamma 0.25",
    "z-plus", "alpha2-beta1", "z-box", "flat", "w-square", "pass", "rescale", or a string
    rule itself."""
    if isinstance(rule, str):
        return rule
    if isinstance(rule, Epsilon):
        return "lrp-0" if rule.epsilon == 0 else f"epsilon {rule.epsilon:g}"
    if isinstance(rule, Gamma):
        return f"gamma {rule.gamma:g}"
    if isinstance(rule, AlphaBeta):
        return f"alpha{rule.alpha:g}-beta{rule.beta:g}"
    names = {ZPlus: "z-plus", ZBox: "z-box", Flat: "flat", WSquare: "w-square", Pass: "pass",
             Rescale: "rescale"}
    return names.get(type(rule), type(rule).__name__)


# ============================================================================ shared arithmetic

def divide(R, d, epsilon, own=False):
    """c = R / (d + epsilon sign(d)), sign(0) = +1: the relevance of each output over its
    stabilised denominator (zennit's and Captum's stabiliser) -> (c, shift), shift being what
    was added: the number epsilon where d >= 0 everywhere (z-plus after a ReLU), else the
    array epsilon sign(d) (``absorbed`` turns it into the stabiliser's share).

    With epsilon = 0 (LRP-0) an output whose d is exactly 0 passes nothing on (c = 0 there,
    LRP-0's 0/0); its relevance is left for the ledger's residual. own=True: d is a fresh
    array of the caller's, which may be overwritten instead of copied."""
    if epsilon == 0:
        if d.all():
            return np.divide(R, d, out=d if own else None), 0.0
        zero = d == 0
        return np.divide(R, np.where(zero, 1, d)) * ~zero, 0.0
    if d.size == 0 or d.min() >= 0:                      # one sign: the shift is a number
        d = np.add(d, epsilon, out=d if own else None)
        return np.divide(R, d, out=d), float(epsilon)
    shift = np.copysign(d.dtype.type(epsilon), d)   # (an output of exactly -0.0 counts as < 0)
    d = np.add(d, shift, out=d if own else None)
    return np.divide(R, d, out=d), shift


def absorbed(c, shift, bias=None):
    """What a layer's bias and stabiliser took of the relevance, per image: (sum over the
    outputs of c * bias, sum of c * shift), each (N,) float64, for c (N, F, ...) from
    ``divide`` and a bias (F,) broadcast over any spatial axes (None: no bias). One pass over
    c: its sums per channel serve both."""
    N, F = c.shape[:2]
    if bias is None and not isinstance(shift, float):
        return np.zeros(N), _dot_per_image(c, shift)
    per_channel = c.reshape(N, F, math.prod(c.shape[2:])).sum(axis=2).astype(np.float64)
    took = np.zeros(N) if bias is None else per_channel @ np.asarray(bias, np.float64)
    if isinstance(shift, float):
        return took, shift * per_channel.sum(axis=1)
    return took, _dot_per_image(c, shift)


def _dot_per_image(a, b) -> np.ndarray:
    """sum of a * b per image, (N, ...) twice -> (N,) float64, without the product array."""
    n = math.prod(a.shape[1:])
    a, b = a.reshape(len(a), n), b.reshape(len(b), n)
    return np.array([np.dot(u, v) for u, v in zip(a, b)], np.float64).reshape(len(a))


def times(a, x):
    """a * x, written into a when a kernel's fresh result may be (no new array)."""
    if a.flags.writeable and a.shape == np.broadcast_shapes(a.shape, x.shape):
        a *= x
        return a
    return a * x


def per_image(a) -> np.ndarray:
    """The sum over everything but the batch axis: (N, ...) -> (N,) float64 (summed in a's
    own dtype, as its values were computed)."""
    return a.reshape(len(a), math.prod(a.shape[1:])).sum(axis=1).astype(np.float64)


def halves(a) -> tuple:
    """(first half, second half) along the batch axis: DeepLIFT's images and references.
    ValueError for an odd batch, which cannot be images stacked over their references."""
    if len(a) % 2:
        raise ValueError(f"the rescale rule needs the forward pass on the images stacked over "
                         f"their references (2N rows), got a batch of {len(a)}")
    n = len(a) // 2
    return a[:n], a[n:]


def rescale_quotient(grad_out, x, out, eps, chain):
    """DeepLIFT's Rescale through a layer taken elementwise, out = f(x): the incoming
    multipliers times (f(x) - f(x0)) / (x - x0), the same quotient for the images' half and
    the references' half of the batch; where |x - x0| < eps, ``chain()`` (the chain rule's
    result for the whole batch: each row its own derivative), as Captum's ``nonlinear``.

    grad_out, x, out: (2N, ...) -> (2N, ...)"""
    (xa, xr), (ya, yr) = halves(x), halves(out)
    dx = xa - xr
    near = np.abs(dx) < eps
    slope = (ya - yr) / np.where(near, 1, dx)                  # (N, ...)
    grad = grad_out * np.concatenate([slope, slope])           # (2N, ...)
    if near.any():
        grad = np.where(np.concatenate([near, near]), chain(), grad)
    return grad


# ============================================================================ layers with weights

def linear_relevance(layer, rule, R):
    """LRP through a layer z = W x + b (Conv2d or Linear) by one of ``WEIGHT_RULES``.

    The layer provides its forward input ``layer._x`` and output ``layer._z`` (kept by its
    forward pass), its weights, and its own kernels: ``layer._apply(x, w, b)`` (the layer's
    function with other weights) and ``layer._apply_transposed(c, w)`` (W^T c, shaped like
    x: the kernel of its chain rule). Modified weights are computed once per layer and kept
    (``layer.derived``).

    R: the relevance of the outputs (shape of z) -> (R_in shaped like x, {"bias": (N,),
    "stabiliser": (N,)}: what the bias and the stabiliser took, per image).
    """
    x, z = layer._x, layer._z
    dtype = R.dtype
    w, b = layer.weight_as("weight", dtype), layer.weight_as("bias", dtype)

    def weight(how):                                   # w+, w-, w + g w+, ... (cached)
        return layer.derived(("weight", dtype, how), lambda: _modify(w, how))

    apply, transpose = layer._apply, layer._apply_transposed
    if isinstance(rule, Epsilon):
        c, shift = divide(R, z, rule.epsilon)
        return times(transpose(c, w), x), _terms(*absorbed(c, shift, b))
    if isinstance(rule, (ZPlus, AlphaBeta)):
        alpha, beta = (1.0, 0.0) if isinstance(rule, ZPlus) else (rule.alpha, rule.beta)
        return _alpha_beta(x, R, alpha, beta, rule.stabilizer, b, weight, apply, transpose)
    if isinstance(rule, Gamma):
        return _gamma(x, z, R, rule, b, weight, apply, transpose)
    if isinstance(rule, ZBox):
        low, high = rule.bounds_like(x)
        wp, wn = weight("positive"), weight("negative")
        zb = (z if b is None else z - _as_bias(b, z)) - apply(low, wp, None) - apply(high, wn, None)
        c, shift = divide(R, zb, rule.stabilizer, own=True)   # the bias cancels: b - b+ - b- = 0
        R_in = x * transpose(c, w) - low * transpose(c, wp) - high * transpose(c, wn)
        return R_in, _terms(*absorbed(c, shift))
    if isinstance(rule, (Flat, WSquare)):
        w1 = weight("ones" if isinstance(rule, Flat) else "squared")
        c, shift = divide(R, apply(np.ones_like(x), w1, None), rule.stabilizer, own=True)
        return transpose(c, w1), _terms(*absorbed(c, shift))
    raise AssertionError(f"linear_relevance: {rule!r}")  # Layer.check_rule lets no other in


def _alpha_beta(x, R, alpha, beta, stabilizer, b, weight, apply, transpose):
    """alpha * (relevance by positive contributions) - beta * (by negative ones).

    Positive contributions: x+ through W+ and x- through W- (and b+); negative: x+ through
    W- and x- through W+ (and b-). The x- terms vanish, and are skipped, when x >= 0 (after
    a ReLU); then x+ is x itself."""
    wp, wn = weight("positive"), weight("negative")
    signed = x.size and x.min() < 0
    xp = np.maximum(x, 0) if signed else x
    xn = np.minimum(x, 0) if signed else None           # None: no negative inputs

    def share(w_pos_in, w_neg_in, bias):               # c and its transposes for one sign
        zs = apply(xp, w_pos_in, bias)
        if xn is not None:
            zs += apply(xn, w_neg_in, None)
        c, shift = divide(R, zs, stabilizer, own=True)
        R_in = times(transpose(c, w_pos_in), xp)
        if xn is not None:
            R_in += xn * transpose(c, w_neg_in)
        return (R_in, *absorbed(c, shift, bias))

    bp = None if b is None else np.maximum(b, 0)
    R_in, bias, stab = share(wp, wn, bp)
    if alpha != 1:
        R_in *= alpha
    if beta == 0:
        return R_in, _terms(alpha * bias, alpha * stab)
    bn = None if b is None else np.minimum(b, 0)
    R_neg, bias_n, stab_n = share(wn, wp, bn)
    R_in -= beta * R_neg
    return R_in, _terms(alpha * bias - beta * bias_n, alpha * stab - beta * stab_n)


def _gamma(x, z, R, rule, b, weight, apply, transpose):
    """Generalised LRP-gamma. Outputs with z > 0 share their relevance in proportion to the
    contributions through W + g W+ for x+ and W + g W- for x- (the positive ones enlarged);
    outputs with z < 0 the other way round; an output with z = 0 passes nothing on (its
    relevance is left in the ledger's residual). Each half is skipped when no relevance
    reaches it (after a ReLU, the outputs with z <= 0 have none)."""
    g = rule.gamma
    signed = x.size and x.min() < 0
    xp = np.maximum(x, 0) if signed else x
    xn = np.minimum(x, 0) if signed else None
    R_in = np.zeros_like(x)
    bias = np.zeros(len(R))
    stab = np.zeros(len(R))
    for sign, for_xp, for_xn in ((1, "gamma+", "gamma-"), (-1, "gamma-", "gamma+")):
        Rs = np.where(z > 0, R, 0) if sign > 0 else np.where(z < 0, R, 0)
        if not Rs.any():
            continue
        wx, wy = weight((for_xp, g)), weight((for_xn, g))
        bs = None if b is None else (b + g * (np.maximum(b, 0) if sign > 0 else np.minimum(b, 0)))
        zs = apply(xp, wx, bs)
        if xn is not None:
            zs += apply(xn, wy, None)
        c, shift = divide(Rs, zs, rule.stabilizer, own=True)
        R_in += xp * transpose(c, wx)
        if xn is not None:
            R_in += xn * transpose(c, wy)
        took, stabilised = absorbed(c, shift, bs)
        bias += took
        stab += stabilised
    return R_in, _terms(bias, stab)


def _modify(w, how):
    """A modified copy of the weights w: "positive" w+ = max(w, 0), "negative" w- =
    min(w, 0), "ones", "squared" w^2, ("gamma+", g) w + g w+, ("gamma-", g) w + g w-."""
    if how == "positive":
        return np.maximum(w, 0)
    if how == "negative":
        return np.minimum(w, 0)
    if how == "ones":
        return np.ones_like(w)
    if how == "squared":
        return w * w
    kind, g = how
    return w + g * (np.maximum(w, 0) if kind == "gamma+" else np.minimum(w, 0))


def _as_bias(b, z):
    """b (F,) shaped to broadcast over z (N, F, ...)."""
    return np.asarray(b).reshape((-1,) + (1,) * (z.ndim - 2))


def _terms(bias, stabiliser) -> dict:
    """The ledger's terms of a layer with weights."""
    return {"bias": np.asarray(bias, np.float64), "stabiliser": np.asarray(stabiliser, np.float64)}


# ============================================================================ composites

def _layer_type_names(layer) -> list[str]:
    return [cls.__name__ for cls in type(layer).__mro__]


@dataclass(frozen=True, eq=False)
class Composite:
    """A rule for every node of a model, chosen (the first that applies) by

    1. ``names``: ((node name, rule), ...), a node by its name;
    2. ``first``: ((types, rule), ...), the FIRST node, in the model's order, whose layer is
       one of ``types`` (zennit's first-layer map: z-B or flat on the first convolution);
    3. ``layers``: ((types, rule), ...), by the layer's type, the first entry that matches;
       a type is a class or a class's name ("Conv2d", "Activation");
    4. the layer's own default (``Layer.default_relevance_rule(stabilizer)``): Pass through
       activations, max-pools and layers that move values, Epsilon(stabilizer) through
       additions, average pools and BatchNorm2d;
    5. ``otherwise``: the rule of every other layer with weights.
    A layer left without a rule is a ValueError naming it. ``name``: how messages and the
    ledger call the composite.
    """

    name: str = "composite"
    layers: tuple = ()
    first: tuple = ()
    names: tuple = ()
    otherwise: object = None
    stabilizer: float = 1e-6

    def __post_init__(self):
        _number(f"Composite {self.name!r}", "stabilizer", self.stabilizer, 0)
        for what in ("layers", "first", "names"):
            entries = tuple(getattr(self, what))
            for entry in entries:
                if not (isinstance(entry, tuple) and len(entry) == 2
                        and isinstance(entry[1], RelevanceRule)):
                    raise TypeError(f"Composite {self.name!r}: {what} must be (key, rule) "
                                    f"pairs with an LRP rule, got {entry!r}")
            object.__setattr__(self, what, entries)
        if self.otherwise is not None and not isinstance(self.otherwise, RelevanceRule):
            raise TypeError(f"Composite {self.name!r}: otherwise must be an LRP rule, got "
                            f"{self.otherwise!r}")

    def __str__(self):
        return self.name

    def rules_for(self, names, layers) -> list:
        """One rule per node (names and layers in the model's order), or a ValueError naming
        a key that matches no node or type of the model, or the nodes left without a rule."""
        by_name = dict(self.names)
        unknown = [n for n in by_name if n not in names]
        if unknown:
            raise ValueError(f"{self.name}: no node named {unknown[0]!r} in the model; nodes "
                             f"are {list(names)}")
        first = next((i for i, layer in enumerate(layers)
                      if any(_is(layer, types) for types, _ in self.first)), None)
        rules, missing = [], []
        for i, (name, layer) in enumerate(zip(names, layers)):
            rule = by_name.get(name)
            if rule is None and i == first:
                rule = next(r for types, r in self.first if _is(layer, types))
            if rule is None:
                rule = next((r for types, r in self.layers if _is(layer, types)), None)
            if rule is None and hasattr(layer, "default_relevance_rule"):
                rule = layer.default_relevance_rule(self.stabilizer)
            if rule is None:
                rule = self.otherwise
            if rule is None:
                missing.append(f"{name!r} ({type(layer).__name__})")
            rules.append(rule)
        if missing:
            raise ValueError(f"{self.name}: no rule for node{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)}; map its name or its layer type to a "
                             f"rule, e.g. {{'Linear': Epsilon()}}")
        return rules

    @classmethod
    def from_mapping(cls, mapping, names, layers, name="your mapping"):
        """{node name, layer type or type name: rule} -> a Composite. A string key is a node's
        name if the model has such a node, else a layer type name that some layer of the model
        has (its class or a base class: "Activation"); anything else is a ValueError."""
        if not mapping:
            raise ValueError(f"{name}: an empty mapping gives no layer a rule")
        by_name, by_type = [], []
        type_names = {t for layer in layers for t in _layer_type_names(layer)}
        for key, rule in mapping.items():
            if not isinstance(rule, RelevanceRule):
                raise TypeError(f"{name}: the rule for {key!r} must be an LRP rule (Epsilon(), "
                                f"ZPlus(), ...), got {rule!r}")
            if isinstance(key, str) and key in names:
                by_name.append((key, rule))
            elif isinstance(key, str) and key in type_names:
                by_type.append((key, rule))
            elif isinstance(key, type):
                by_type.append((key, rule))
            else:
                raise ValueError(f"{name}: key {key!r} is neither a node of the model nor a "
                                 f"layer type in it; nodes are {list(names)}, layer types "
                                 f"{sorted({type(layer).__name__ for layer in layers})}")
        return cls(name=name, layers=tuple(by_type), names=tuple(by_name))


def _is(layer, types) -> bool:
    """Is the layer one of ``types`` (a class, a class name, or a tuple of those)?"""
    types = types if isinstance(types, tuple) else (types,)
    return any(t in _layer_type_names(layer) if isinstance(t, str) else isinstance(layer, t)
               for t in types)

