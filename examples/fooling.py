"""Fooling images: the smallest gradient push that makes the model call an image another class.

    python examples/fooling.py --index 0 --target 5 --out out/fooling

Takes test image `index` of the cluttered dataset (the model's recorded seed) and writes
fooling.png: original | perturbation (magnified) | fooled image.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minicnn  # noqa: E402
from minicnn.io.datasets import DatasetNotFoundError, make_cluttered  # noqa: E402
from minicnn.saliency import softmax  # noqa: E402
from minicnn.viz.experiments import fooling_figure  # noqa: E402
from minicnn.experiments.fooling import fool  # noqa: E402
from minicnn.io.images import Preprocess, to_input, to_pixels  # noqa: E402
from minicnn.viz import save_figure  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, help="a minicnn .npz (default: the shipped model)")
    p.add_argument("--index", type=int, default=0, help="test image index")
    p.add_argument("--target", type=int, default=None,
                   help="class to fool into (default: the next class after the prediction)")
    p.add_argument("--lr", type=float, default=0.5, help="L2 length of each step")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--magnify", type=float, default=10.0)
    p.add_argument("--out", default="out/fooling")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the Fashion-MNIST *-ubyte.gz files (default: $MINICNN_FASHION_MNIST, "
                        "else /usr/share/datasets/fashion-mnist)")
    args = p.parse_args(argv)

    model = minicnn.load(args.weights)
    prep = Preprocess.from_meta(model.meta)
    seed = model.meta.get("dataset", {}).get("seed", 0)
    batch = make_cluttered([args.index], "test", seed, args.data_dir)
    x, label = to_input(batch.images, prep)[0], batch.labels[0]           # (3, H, W), int
    names = model.meta.get("class_names")
    pred = int(model.forward(x[None]).argmax())
    target = (pred + 1) % len(names) if args.target is None else args.target
    r = fool(model, x, target, lr=args.lr, max_steps=args.max_steps)
    status = f"{r.steps} steps" if r.fooled else f"not fooled after {r.steps} steps"
    print(f"{names[r.original_class]} -> {names[r.predicted_class]} (target {names[target]}): "
          f"{status}, |perturbation| = {float((r.perturbation ** 2).sum()) ** 0.5:.3f}")
    std = np.asarray(prep.std)[:, None, None]                      # (3, 1, 1)
    perturbation = (r.perturbation * std).transpose(1, 2, 0)        # pixel units, (H, W, 3)
    before, after = softmax(np.asarray(r.scores, np.float64)[[0, -1]])   # (K,) each
    true, fooled = int(label), int(r.predicted_class)
    norm = float((perturbation ** 2).sum()) ** 0.5
    fig = fooling_figure(
        to_pixels(x, prep)[0], perturbation, to_pixels(r.image, prep)[0],
        [f"original, true class {names[true]}\npredicted {names[r.original_class]}: "
         f"p({names[true]}) = {before[true]:.2f}, p({names[target]}) = {before[target]:.2f}",
         f"perturbation x{args.magnify:g}\n(L2 norm {norm:.2f} in pixel units)",
         f"fooled: predicted {names[fooled]} ({status})\n"
         f"p({names[target]}) = {after[target]:.2f}, p({names[true]}) = {after[true]:.2f}"],
        args.magnify)
    print(save_figure(fig, Path(args.out) / "fooling.png"))


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as error:  # one line, with this script's own option
        print(f"fooling.py: error: {error.for_option('--data-dir DIR')}", file=sys.stderr)
        sys.exit(2)
