"""Evaluate every saliency method on the cluttered test split (pointing game, localisation by
threshold and by the paper's graph cut, deletion/insertion), plus a few localisation pictures.

    python examples/evaluate.py --out out/evaluate                      # defaults, all 10,000
    python examples/evaluate.py --images 500 --methods gradient,grad_cam --out out/eval-small

Defaults: every method of saliency.METHODS on all 10,000 images, except the slow ones
(smoothgrad, integrated_gradients, occlusion) on the first 100; graph cut on the first 1,000;
deletion/insertion on the first 100. See minicnn/experiments/evaluate.py for the choices.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minicnn  # noqa: E402
from minicnn import saliency  # noqa: E402
from minicnn.io.datasets import make_cluttered, DatasetNotFoundError  # noqa: E402
from minicnn.experiments.evaluate import run_evaluation  # noqa: E402
from minicnn.viz.experiments import localization_figure  # noqa: E402
from minicnn.io.images import Preprocess, to_input  # noqa: E402
from minicnn.experiments.localize import localize  # noqa: E402
from minicnn.viz import save_figure, write_evaluation  # noqa: E402


def localization_examples(model, out: Path, count: int = 4, data_dir=None):
    """localize_<i>.png: vanilla-gradient map, threshold and graph-cut boxes, true box."""
    prep = Preprocess.from_meta(model.meta)
    batch = make_cluttered(range(count), "test", model.meta.get("dataset", {}).get("seed", 0),
                           data_dir)
    x = to_input(batch.images, prep)
    maps = saliency.saliency_map(saliency.gradient(model, x, batch.labels))
    names = model.meta.get("class_names")
    for i in range(count):
        results = {"threshold (top 10%)": localize(None, maps[i], "threshold", quantile=0.9)}
        try:
            results["graph cut"] = localize(batch.images[i], maps[i], "graphcut")
        except ImportError as e:
            print(f"skipping graph cut: {e}")
        fig = localization_figure(batch.images[i], maps[i], results, batch.boxes[i],
                                  f"test image {i}: {names[batch.labels[i]]}")
        print(save_figure(fig, out / f"localize_{i}.png"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, help="a minicnn .npz (default: the shipped model)")
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--methods", default=None, help="comma-separated (default: all)")
    p.add_argument("--slow-limit", type=int, default=100)
    p.add_argument("--graphcut-limit", type=int, default=1000)
    p.add_argument("--curve-limit", type=int, default=100)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--target", choices=("true", "predicted"), default="true")
    p.add_argument("--out", default="out/evaluate")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the Fashion-MNIST *-ubyte.gz files (default: $MINICNN_FASHION_MNIST, "
                        "else /usr/share/datasets/fashion-mnist)")
    args = p.parse_args(argv)

    model = minicnn.load(args.weights)
    out = Path(args.out)
    localization_examples(model, out, data_dir=args.data_dir)
    result = run_evaluation(model, n_images=args.images, methods=args.methods,
                            progress=True, target=args.target, batch_size=args.batch,
                            slow_limit=args.slow_limit, graphcut_limit=args.graphcut_limit,
                            curve_limit=args.curve_limit, data_dir=args.data_dir)
    write_evaluation(result, out)
    print((out / "results.md").read_text())
    print(f"{result['settings']['seconds']} s; outputs in {out}")


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as error:  # one line, with this script's own option
        print(f"evaluate.py: error: {error.for_option('--data-dir DIR')}", file=sys.stderr)
        sys.exit(2)
