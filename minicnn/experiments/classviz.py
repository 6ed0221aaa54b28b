"""Class model visualisation: the image the network finds most typical of a class.

Simonyan, Vedaldi & Zisserman 2013 (arXiv:1312.6034, §2) look for

    I* = argmax_I  S_c(I) - lambda ||I||^2

where S_c is the class score BEFORE the softmax and I lives in the network's normalised input
space, whose zero is the dataset's mean image (for minicnn's models: the mean colour). Starting
from I = 0, plain gradient ascent climbs the objective with the same backward pass that makes
a saliency map, only now the image is changed instead of looked at:

    g = dS_c/dI - 2 lambda I,        I <- I + lr * g.

The L2 term alone leaves high-frequency patterns that excite the network without looking like
anything. The CS231n class-visualisation exercise adds three image priors, all optional here:

- jitter: before each step the image is rolled by a random (dy, dx) in [-jitter, jitter]
  (wrapping around) and rolled back after, so a pattern must work at several shifts;
- blur: every ``blur_every`` steps the image is smoothed by a Gaussian (``saliency.blur``);
- clip: after each step the pixels are clipped to the valid range, [0, 1] before
  normalisation, i.e. [-mean / std, (1 - mean) / std] per channel.
With jitter, blur or clip the steps no longer follow the objective's gradient exactly; with
none of them this is the paper's plain ascent.
"""
from __future__ import annotations

import numpy as np

from minicnn._checks import check_int
from minicnn._progress import progress_bar
from minicnn.io.images import Preprocess
from minicnn.saliency import blur, one_hot

__all__ = ["class_model", "class_models", "objective_and_gradient", "pixel_range",
           "PAPER_FIGURE_1"]

# The twelve ImageNet classes of the paper's Figure 1, by their names in minicnn's ImageNet
# class list (torchvision's): "washing machine" is ILSVRC's "washer, automatic washer,
# washing machine" and "husky" its "Eskimo dog, husky".
PAPER_FIGURE_1 = ("washer", "computer keyboard", "kit fox", "goose", "ostrich", "limousine",
                  "dumbbell", "cup", "dalmatian", "bell pepper", "lemon", "Eskimo dog")


def objective_and_gradient(model, image, target: int, l2: float):
    """The paper's objective at one image and its gradient.

    - image: (C, H, W), normalised input space
    Returns (J, S_c, g): J = S_c(I) - l2 * ||I||^2 (float), S_c the class score (float), and
    g = dJ/dI (C, H, W) = dS_c/dI - 2 l2 I, by one forward and one backward pass.
    """
    x = image[None]                                                # (1, C, H, W)
    scores = model.forward(x)                                      # (1, K)
    grad = model.backward(one_hot(np.array([target]), scores.shape[1], scores.dtype))[0]
    score = float(scores[0, target])
    objective = score - l2 * float(np.sum(image.astype(np.float64) ** 2))
    return objective, score, grad - 2 * l2 * image


def pixel_range(prep: Preprocess, dtype=np.float64):
    """(low, high), each (C, 1, 1): pixels 0 and 1 in normalised input space."""
    mean = np.asarray(prep.mean, dtype)[:, None, None]             # (C, 1, 1)
    std = np.asarray(prep.std, dtype)[:, None, None]               # (C, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def _input_shape(model, input_shape):
    if input_shape is None:
        input_shape = model.meta.get("input_shape")
    if input_shape is None and "preprocess" in model.meta:        # RGB at the crop size
        crop = Preprocess.from_meta(model.meta).crop
        input_shape = (3, crop, crop)
    if input_shape is None:
        raise ValueError("class_model: the model has no meta['input_shape'] or "
                         "meta['preprocess']; pass input_shape=(C, H, W)")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
    return shape


def class_model(model, target: int, steps: int = 200, lr: float = 1.0, l2: float = 1e-3,
                jitter: int = 0, blur_every: int = 0, blur_sigma: float = 0.5,
                clip: bool = False, normalize: bool = False, prep: Preprocess | None = None,
                input_shape=None,
                seed=0, dtype=np.float32, progress: bool = False, return_history: bool = False):
    """Gradient ascent on S_target(I) - l2 ||I||^2 from the zero (mean) image.

    - target: the class index
    - steps, lr: number of ascent steps and step size (I += lr * g, g the full gradient)
    - normalize: step along g / ||g||_2 instead (every step has length lr, whatever the
      scale of the scores; as the fooling-image exercise)
    - l2: lambda, the weight of the L2 penalty
    - jitter: maximum random roll in pixels before each step (0: none)
    - blur_every, blur_sigma: Gaussian blur of sigma pixels every blur_every steps (0: never)
    - clip: clip to the valid pixel range after each step (needs the preprocessing)
    - prep: the model's Preprocess; None reads model.meta["preprocess"] (or the default)
    - input_shape: (C, H, W); None reads model.meta["input_shape"], else (3, crop, crop) of
      model.meta["preprocess"]
    - seed: seeds the jitter
    - dtype: float32 (fast) or float64 (exact checks)
    - return_history: also return a dict of per-step "objective" and "score" (steps + 1
      values each; entry k is measured before step k, the last after the final step)
    Returns the image (C, H, W) in normalised input space (``images.to_pixels`` shows it),
    or (image, history). ValueError if the score or the gradient becomes NaN or inf.
    """
    C, H, W = _input_shape(model, input_shape)
    K = _num_classes(model, (C, H, W), dtype)
    target = check_int(target, "target (a class index)", 0, K - 1)
    for name, value in (("steps", steps), ("jitter", jitter), ("blur_every", blur_every)):
        check_int(value, name, 0)
    if prep is None:
        prep = Preprocess.from_meta(model.meta)
    low, high = pixel_range(prep, dtype)
    if clip and low.shape[0] != C:
        raise ValueError(f"clip: the preprocessing has {low.shape[0]} channels, the input {C}")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype).type
    image = np.zeros((C, H, W), dtype)
    history = {"objective": [], "score": []}
    with progress_bar(steps, f"class model {target}", progress) as bar:
        for k in range(steps + 1):
            dy, dx = (rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0))
            moved = np.roll(image, (dy, dx), axis=(1, 2))           # (C, H, W)
            objective, score, g = objective_and_gradient(model, moved, int(target), l2)
            if not (np.isfinite(score) and np.isfinite(g).all()):
                raise ValueError(f"class_model: NaN or inf in the score or the gradient of "
                                 f"class {target} at step {k} (an overflow in the model?)")
            history["objective"].append(objective)
            history["score"].append(score)
            if k == steps:                                          # measured the final image
                break
            if normalize:
                g = g / max(float(np.linalg.norm(g)), 1e-12)
            image = np.roll(moved + dtype(lr) * g, (-dy, -dx), axis=(1, 2)).astype(dtype)
            if blur_every and (k + 1) % blur_every == 0:
                image = blur(image[None], blur_sigma)[0]
            if clip:
                image = np.clip(image, low, high).astype(dtype)
            bar.update()
    return (image, history) if return_history else image


def _num_classes(model, shape, dtype) -> int:
    return int(model.forward(np.zeros((1,) + shape, dtype)).shape[1])


def class_models(model, classes=None, progress: bool = False, **options) -> np.ndarray:
    """``class_model`` for several classes: -> (len(classes), C, H, W).

    classes: None means every class of the model; options go to ``class_model``.
    """
    if classes is None:
        C, H, W = _input_shape(model, options.get("input_shape"))
        classes = range(_num_classes(model, (C, H, W), options.get("dtype", np.float32)))
    classes = list(classes)
    images = []
    with progress_bar(len(classes), "class models", progress) as bar:
        for c in classes:
            images.append(class_model(model, c, **options))
            bar.update()
    return np.stack(images)                                        # (K, C, H, W)
