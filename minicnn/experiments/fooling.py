"""Fooling images: the smallest push along the gradient that changes the network's answer.

The same backward pass that makes a saliency map (Simonyan, Vedaldi & Zisserman 2013,
arXiv:1312.6034) tells how to change the image to raise any class score. Following it from a
real image to a wrong class gives a picture that looks unchanged to us and is classified as
the wrong class (Szegedy et al. 2014, "Intriguing properties of neural networks",
arXiv:1312.6199); the CS231n exercise does it with normalised gradient ascent:

    g = dS_target/dI,        I <- I + lr * g / ||g||_2

(S before the softmax), stopping as soon as the model predicts the target. Every step moves
the image by exactly lr in L2 norm, so the number of steps measures how far the nearest
fooling image is along this path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minicnn._checks import check_array, check_int, check_number
from minicnn.saliency import backprop

__all__ = ["FoolingResult", "fool"]


@dataclass
class FoolingResult:
    """What ``fool`` found.

    - image: (C, H, W), the fooling image (normalised input space); after ``steps`` steps
    - perturbation: (C, H, W), image - original
    - steps: gradient steps taken (0 if the original is already predicted as the target)
    - fooled: whether the model predicts the target for ``image``
    - original_class, predicted_class: the model's answer before and after
    - scores: (steps + 1, K) the scores at every visited image
    """

    image: np.ndarray
    perturbation: np.ndarray
    steps: int
    fooled: bool
    original_class: int
    predicted_class: int
    scores: np.ndarray


def fool(model, image, target: int, lr: float = 1.0, max_steps: int = 100) -> FoolingResult:
    """Normalised-gradient steps on S_target until the model predicts `target`.

    - image: (C, H, W) or (1, C, H, W), normalised input, float32 or float64
    - target: the class to be predicted
    - lr: L2 length of every step (in normalised input units)
    - max_steps: give up after this many steps (then ``fooled`` is False)
    The prediction is checked before every step, so ``steps`` is the smallest number of
    steps of this path after which the model says `target` (ties in the scores go to the
    lower class index, as argmax). No clipping to the pixel range: the CS231n version does
    none, and a valid-range fooling image is one ``np.clip`` away if wanted.
    """
    x = check_array(image, "fool: image")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"fool: image must be one image shaped (C, H, W) or (1, C, H, W), "
                         f"got shape {image.shape}")
    max_steps = check_int(max_steps, "fool: max_steps", 0)
    lr = check_number(lr, "fool: lr", above=0)
    original = x.copy()
    current = x.copy()
    history = []
    K = model.forward(current[None]).shape[1]
    target = check_int(target, "fool: target (a class index)", 0, K - 1)
    for step in range(max_steps + 1):
        # one forward pass gives the scores to check and the state for the backward pass
        g, scores, _ = backprop(model, current[None], int(target))  # (1, C, H, W), (1, K)
        history.append(scores[0].copy())
        predicted = int(np.argmax(scores[0]))
        if predicted == target or step == max_steps:
            break
        g = g[0]                                                   # (C, H, W)
        norm = float(np.linalg.norm(g))
        if norm == 0:                                              # flat: no direction to go
            break
        current = (current + (lr / norm) * g).astype(x.dtype)
    scores = np.stack(history)                                     # (steps + 1, K)
    return FoolingResult(image=current, perturbation=current - original, steps=len(history) - 1,
                         fooled=predicted == target, original_class=int(np.argmax(scores[0])),
                         predicted_class=predicted, scores=scores)
