"""Class model images (Simonyan et al. 2013, §2): the input each class scores highest on.

    python examples/classviz.py --out out/classviz            # the shipped model
    python examples/classviz.py --plain --out out/classviz    # the paper's L2 version only

Writes class_models.png (one image per class) and class_models.npz (the images in normalised
input space).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minicnn  # noqa: E402
from minicnn.experiments.classviz import class_models  # noqa: E402
from minicnn.saliency import softmax  # noqa: E402
from minicnn.viz import atomic_write, class_model_grid, save_figure, stretch  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, help="a minicnn .npz (default: the shipped model)")
    p.add_argument("--out", default="out/classviz")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--l2", type=float, default=1e-3)
    p.add_argument("--plain", action="store_true",
                   help="the paper's plain L2 ascent: no jitter, blur or clipping")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    model = minicnn.load(args.weights)
    priors = {} if args.plain else dict(jitter=4, blur_every=10, blur_sigma=0.5, clip=True)
    images = class_models(model, progress=True, steps=args.steps, lr=args.lr, l2=args.l2,
                          seed=args.seed, **priors)
    out = Path(args.out)
    names = model.meta.get("class_names", [str(k) for k in range(len(images))])
    scores = model.forward(images)                                 # (K, K): row c = class model c
    probs = softmax(scores.astype(np.float64))
    for c, name in enumerate(names):
        print(f"{name:>12}: score {scores[c, c]:8.2f}, p = {probs[c, c]:.3f}, "
              f"predicted {names[int(scores[c].argmax())]}")
    print(save_figure(class_model_grid(stretch(images), names), out / "class_models.png"))
    print(atomic_write(out / "class_models.npz",
                       lambda tmp: np.savez(tmp, images=images)))  # tmp ends in .npz


if __name__ == "__main__":
    main()
