"""Sanity checks (Adebayo et al. 2018): randomise the model from the top layer down and watch
each saliency method's map. A map that explains the model should fall apart.

    python examples/sanity_checks.py --images 8 --out out/sanity

Writes sanity_maps.png (maps of the first image at every step, one row per method),
sanity_curves.png (mean Spearman rank correlation and SSIM with the original maps) and
sanity.csv.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minicnn  # noqa: E402
from minicnn import saliency  # noqa: E402
from minicnn.io.datasets import make_cluttered, DatasetNotFoundError  # noqa: E402
from minicnn.viz.experiments import sanity_curves, sanity_maps_figure  # noqa: E402
from minicnn.io.images import Preprocess, to_input  # noqa: E402
from minicnn.experiments.sanity import sanity_checks  # noqa: E402
from minicnn.viz import atomic_write, save_figure  # noqa: E402

DEFAULT_METHODS = "gradient,guided_backprop,input_x_gradient,grad_cam,guided_grad_cam,lrp"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, help="a minicnn .npz (default: the shipped model)")
    p.add_argument("--images", type=int, default=8, help="first N test images")
    p.add_argument("--methods", default=DEFAULT_METHODS)
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation")
    p.add_argument("--signed", action="store_true",
                   help="compare signed maps (sum over channels) instead of the paper's |.| maps")
    p.add_argument("--out", default="out/sanity")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the Fashion-MNIST *-ubyte.gz files (default: $MINICNN_FASHION_MNIST, "
                        "else /usr/share/datasets/fashion-mnist)")
    args = p.parse_args(argv)

    model = minicnn.load(args.weights)
    prep = Preprocess.from_meta(model.meta)
    seed = model.meta.get("dataset", {}).get("seed", 0)
    batch = make_cluttered(range(args.images), "test", seed, args.data_dir)
    x = to_input(batch.images, prep)
    methods = {m: saliency.get_method(m) for m in args.methods.split(",")}
    result = sanity_checks(model, x, batch.labels, methods, signed=args.signed, seed=args.seed,
                           progress=True)
    out = Path(args.out)
    print(save_figure(sanity_maps_figure(result, 0, batch.images[0]), out / "sanity_maps.png"))
    print(save_figure(sanity_curves(result), out / "sanity_curves.png"))
    lines = ["method,step,layer,spearman,ssim"]
    for m in methods:
        for s, layer in enumerate(result["steps"]):
            lines.append(f"{m},{s},{layer},{np.nanmean(result['spearman'][m][s]):.4f},"
                         f"{np.mean(result['ssim'][m][s]):.4f}")
    text = "\n".join(lines) + "\n"
    print(atomic_write(out / "sanity.csv", lambda tmp: Path(tmp).write_text(text)))


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as error:  # one line, with this script's own option
        print(f"sanity_checks.py: error: {error.for_option('--data-dir DIR')}", file=sys.stderr)
        sys.exit(2)
