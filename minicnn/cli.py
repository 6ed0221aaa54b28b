"""The ``minicnn`` command line.

    minicnn demo                         saliency figures for the shipped sample images
    minicnn saliency IMAGE [IMAGE ...]   top-5 classes, a figure and the raw map per image
        [--method NAME] [--model PATH] [--target CLASS] [--out DIR]
    minicnn compare IMAGE                every method side by side in one figure
        [--model PATH] [--target CLASS] [--out DIR]

``--method`` is any name in ``minicnn.saliency.METHODS`` (default: gradient). The map written
to ``.npy`` is (H, W): max |.| over channels for the signed methods (the paper's map), the
Grad-CAM heat map resized to the image for grad_cam. SmoothGrad, integrated gradients and
occlusion show a progress bar on stderr; SmoothGrad's noise is seeded, so a run repeats.

Bad input (a missing, non-image or truncated file, an unknown class, a broken weights file)
gets one line on stderr and exit code 2, never a traceback; with several images the others
are still processed. Every output file is written under a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

EXIT_BAD_INPUT = 2
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "examples" / "images"


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def _fail(message: str) -> None:
    print(f"minicnn: error: {message}", file=sys.stderr)


def _load_model(path):
    from .io.weights import load, WeightsFileError
    try:
        return load(path)
    except WeightsFileError as e:
        raise UsageError(str(e)) from None


def _class_names(model) -> list[str]:
    names = (getattr(model, "meta", None) or {}).get("class_names")
    return list(names) if names else []


def _num_classes(model) -> int:
    names = _class_names(model)
    if names:
        return len(names)
    from .io.images import Preprocess
    prep = Preprocess.from_meta(getattr(model, "meta", {}))
    return int(model.forward(np.zeros((1, 3, prep.crop, prep.crop), np.float32)).shape[1])


def parse_target(text, class_names: list[str], num_classes: int):
    """'3', 'Sneaker' or 'sneaker' -> class index; None -> None. UsageError if unknown."""
    if text is None:
        return None
    if text.strip().lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < num_classes:
            raise UsageError(f"unknown class index {index}: valid indices are 0..{num_classes - 1}")
        return index
    lowered = [n.lower() for n in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    choices = ", ".join(class_names) if class_names else f"indices 0..{num_classes - 1}"
    raise UsageError(f"unknown class {text!r}: choose one of {choices}")


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _top5_lines(scores, class_names) -> list[str]:
    probs = _softmax(scores.astype(np.float64))
    lines = []
    for rank, c in enumerate(np.argsort(-scores)[:5], start=1):
        name = class_names[c] if c < len(class_names) else str(c)
        lines.append(f"  {rank}. {name:<12s} score {scores[c]:8.3f}   p = {probs[c]:.3f}")
    return lines


LONG_METHODS = ("smoothgrad", "integrated_gradients", "occlusion")  # they get a progress bar
SMOOTHGRAD_SEED = 0  # the same noise every run, so the same command gives the same map


def check_method(name: str) -> str:
    """A method name from METHODS, or a UsageError naming the valid ones."""
    from .saliency import METHODS
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return name


def attribute(model, x, targets, method: str):
    """Run one method on x (1, C, H, W) for resolved targets.

    Returns (attributions or None, map (H, W), Grad-CAM at the layer's resolution or None):
    for grad_cam the map is the heat map resized to the image; for every other (signed)
    method it is max |.| over channels, as the paper shows the gradient.
    """
    from . import saliency
    if method == "grad_cam":
        cam = saliency.grad_cam(model, x, targets)                   # (1, h, w)
        return None, saliency.upsample_bilinear(cam, x.shape[2:])[0], cam[0]
    options = {"progress": True} if method in LONG_METHODS else {}
    if method == "smoothgrad":
        options["seed"] = SMOOTHGRAD_SEED
    attr = saliency.get_method(method)(model, x, targets, **options)  # (1, C, H, W)
    return attr, saliency.saliency_map(attr)[0], None


def _method_figure(method, model, pixels, attr, smap, cam, title, box):
    from . import saliency, viz
    if method == "grad_cam":
        return viz.heatmap_figure(pixels, cam, smap, title, saliency.default_cam_layer(model),
                                  box=box)
    if method == "gradient":
        labels = viz.SALIENCY_LABELS
    else:
        labels = ("image", f"{method} (signed, RGB)", f"{method} grayscale",
                  f"max |{method}| over image")
    return viz.saliency_figure(pixels, saliency.colored_gradient(attr)[0],
                               saliency.grayscale_gradient(attr)[0], smap, title, box=box,
                               labels=labels)


def saliency_one(model, path, target, out_dir: Path, box=None, quiet=False,
                 method="gradient") -> dict:
    """Classify one image file, compute its map with `method` and write figure + map.

    Files: <stem>_saliency.png/.npy for the gradient, <stem>_<method>.png/.npy otherwise.
    Returns a dict with the prediction, target, and where the files went.
    Raises minicnn.io.images.ImageReadError for an unreadable image.
    """
    from . import saliency, viz
    from .io.images import Preprocess, read_image, to_input, to_pixels

    prep = Preprocess.from_meta(getattr(model, "meta", {}))
    names = _class_names(model)
    pixels = read_image(path, prep)                                  # (H, W, 3) uint8
    x = to_input(pixels, prep)                                       # (1, 3, H, W)
    scores = model.forward(x)                                        # (1, K)
    targets = saliency.resolve_targets(target, scores)               # (1,)
    attr, smap, cam = attribute(model, x, targets, method)           # smap: (H, W)
    scores, t = scores[0], int(targets[0])
    name_of = (lambda c: names[c] if c < len(names) else str(c))
    pred = int(np.argmax(scores))

    stem = Path(path).stem
    suffix = "saliency" if method == "gradient" else method
    fig_path = out_dir / f"{stem}_{suffix}.png"
    npy_path = out_dir / f"{stem}_{suffix}.npy"
    title = (f"{Path(path).name}: predicted {name_of(pred)} ({scores[pred]:.2f}); "
             f"{method} for {name_of(t)} (score {scores[t]:.2f})")
    fig = _method_figure(method, model, to_pixels(x, prep)[0], attr, smap, cam, title, box)
    viz.save_figure(fig, fig_path)
    viz.atomic_write(npy_path, lambda tmp: np.save(tmp, smap.astype(np.float32)))
    if not quiet:
        print(f"{path}: predicted {name_of(pred)}")
        print("\n".join(_top5_lines(scores, names)))
        print(f"  {suffix} for {name_of(t)} -> {fig_path} , {npy_path}")
    iy, ix = np.unravel_index(np.argmax(smap), smap.shape)
    return {"path": str(path), "predicted": pred, "target": t, "figure": str(fig_path),
            "map": str(npy_path), "peak": (int(ix), int(iy))}


def compare_one(model, path, target, out_dir: Path) -> Path:
    """Every method on one image, side by side in <stem>_compare.png; returns its path."""
    from . import saliency, viz
    from .io.images import Preprocess, read_image, to_input, to_pixels

    prep = Preprocess.from_meta(getattr(model, "meta", {}))
    names = _class_names(model)
    x = to_input(read_image(path, prep), prep)                       # (1, 3, H, W)
    scores = model.forward(x)                                        # (1, K)
    targets = saliency.resolve_targets(target, scores)               # (1,)
    maps = {method: attribute(model, x, targets, method)[1] for method in saliency.METHODS}
    name_of = (lambda c: names[c] if c < len(names) else str(c))
    pred, t = int(np.argmax(scores[0])), int(targets[0])
    title = (f"{Path(path).name}: predicted {name_of(pred)} ({scores[0, pred]:.2f}); "
             f"maps for {name_of(t)}")
    fig_path = out_dir / f"{Path(path).stem}_compare.png"
    viz.save_figure(viz.comparison_figure(to_pixels(x, prep)[0], maps, title), fig_path)
    print(f"{path}: predicted {name_of(pred)}; {len(maps)} methods for {name_of(t)} -> "
          f"{fig_path}")
    return fig_path


def sample_photo() -> str:
    """The photo matplotlib ships (Grace Hopper), for trying ImageNet models offline."""
    from matplotlib import cbook
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def cmd_saliency(args) -> int:
    if args.sample:
        args.images = [*args.images, sample_photo()]
    if not args.images:
        raise UsageError("saliency: give at least one IMAGE (or --sample)")
    method = check_method(args.method)
    model = _load_model(args.model)
    k = _num_classes(model)
    target = parse_target(args.target, _class_names(model), k)
    out_dir = Path(args.out)
    status = 0
    from .io.images import ImageReadError
    for path in args.images:
        try:
            saliency_one(model, path, target, out_dir, method=method)
        except ImageReadError as e:
            _fail(str(e))
            status = EXIT_BAD_INPUT
    return status


def cmd_compare(args) -> int:
    model = _load_model(args.model)
    target = parse_target(args.target, _class_names(model), _num_classes(model))
    from .io.images import ImageReadError
    try:
        compare_one(model, args.image, target, Path(args.out))
    except ImageReadError as e:
        raise UsageError(str(e)) from None
    return 0


def load_sample_index(images_dir: Path) -> dict:
    """The samples' ground truth: {file name: {"label": int, "class": str, "box": [x0, y0, x1, y1]}}."""
    index_path = images_dir / "samples.json"
    if not index_path.is_file():
        raise UsageError(f"{index_path}: no sample index (the shipped samples live in "
                         "examples/images of a source checkout; pass --images DIR)")
    return json.loads(index_path.read_text())["images"]


def cmd_demo(args) -> int:
    images_dir = Path(args.images)
    samples = load_sample_index(images_dir)
    model = _load_model(args.model)
    out_dir = Path(args.out)
    hits, correct = 0, 0
    width = max(map(len, samples), default=0)  # align the columns
    for name, info in samples.items():
        r = saliency_one(model, images_dir / name, None, out_dir, box=info["box"], quiet=True)
        x0, y0, x1, y1 = info["box"]
        hit = x0 <= r["peak"][0] < x1 and y0 <= r["peak"][1] < y1
        hits += hit
        correct += r["predicted"] == info["label"]
        names = _class_names(model)
        print(f"{name:<{width}s} true {info['class']:<12s} predicted {names[r['predicted']]:<12s}"
              f" saliency peak {'inside' if hit else 'OUTSIDE'} the box")
    n = len(samples)
    print(f"\n{correct}/{n} sample images classified correctly; the saliency maximum falls "
          f"inside the object's box for {hits}/{n}.")
    print(f"Figures and maps written to {out_dir.resolve()}/")
    return 0


def cmd_convert(args) -> int:
    from .io.convert import ConversionError, convert_checkpoint
    try:
        path = convert_checkpoint(args.checkpoint, args.arch, args.output)
    except ConversionError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_classviz(args) -> int:
    from PIL import Image

    from . import viz
    from .experiments.classviz import class_models
    from .viz.experiments import class_model_grid
    from .io.images import Preprocess, to_pixels
    from .viz import save_figure
    model = _load_model(args.model)
    names = _class_names(model)
    k = _num_classes(model)
    classes = list(range(k)) if args.cls == "all" else [parse_target(args.cls, names, k)]
    prep = Preprocess.from_meta(model.meta)
    priors = {} if args.plain else dict(jitter=4, blur_every=10, blur_sigma=0.5, clip=True)
    images = class_models(model, classes=classes, progress=True, steps=args.steps, **priors)
    out = Path(args.out)
    label = [names[c] if c < len(names) else str(c) for c in classes]
    for c, name, image in zip(classes, label, to_pixels(images, prep)):
        path = out / f"class_{c:03d}_{name.split('/')[0].replace(' ', '-').lower()}.png"
        viz.atomic_write(path, lambda tmp: Image.fromarray(
            np.round(image * 255).astype(np.uint8)).save(tmp, format="PNG"))
    grid = save_figure(class_model_grid(images, label, prep), out / "class_models.png")
    print(f"{len(classes)} class model image(s) and the grid {grid} written to {out.resolve()}/")
    return 0


def cmd_localize(args) -> int:
    from . import viz
    from .viz.experiments import localization_figure
    from .io.images import ImageReadError, Preprocess, read_image
    from .experiments.localize import localize_images
    model = _load_model(args.model)
    target = parse_target(args.target, _class_names(model), _num_classes(model))
    prep = Preprocess.from_meta(model.meta)
    status = 0
    for path in args.images:
        try:
            pixels = read_image(path, prep)
        except ImageReadError as e:
            _fail(str(e))
            status = EXIT_BAD_INPUT
            continue
        maps, (loc,) = localize_images(model, pixels[None], target=target, method=args.method)
        fig_path = Path(args.out) / f"{Path(path).stem}_localize.png"
        fig = localization_figure(pixels, maps[0], {args.method: loc},
                                  title=f"{Path(path).name}: {args.method} box {tuple(loc.box)}")
        viz.save_figure(fig, fig_path)
        print(f"{path}: box (x0, y0, x1, y1) = {tuple(int(v) for v in loc.box)} -> {fig_path}")
    return status


def cmd_evaluate(args) -> int:
    from .experiments.evaluate import run_evaluation
    model = _load_model(args.model)
    methods = args.methods.split(",") if args.methods else None
    try:
        result = run_evaluation(model, n_images=args.n, methods=methods, out_dir=args.out,
                                progress=True, graphcut_limit=args.graphcut_limit,
                                curve_limit=args.curve_limit, slow_limit=args.slow_limit)
    except (ValueError, ImportError) as e:
        raise UsageError(str(e)) from None
    from .experiments.evaluate import markdown_table
    print(markdown_table(result))
    print(f"tables and plots written to {Path(args.out).resolve()}/")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line (argparse prints the usage block first)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .saliency import METHODS
    p = _Parser(prog="minicnn", description="Backprop saliency maps on a "
                "from-scratch CNN engine (NumPy + Numba).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("saliency", help="classify images and write their saliency maps")
    s.add_argument("images", nargs="*", metavar="IMAGE", help="any image file Pillow reads")
    s.add_argument("--sample", action="store_true",
                   help="also explain matplotlib's sample photo grace_hopper.jpg")
    s.add_argument("--model", default=None, help="weights .npz (default: the shipped model)")
    s.add_argument("--target", default=None, metavar="CLASS",
                   help="class name or index to explain (default: the predicted class)")
    s.add_argument("--out", default="saliency_out", metavar="DIR", help="output folder")
    s.add_argument("--method", default="gradient", metavar="NAME",
                   help=f"one of {', '.join(METHODS)} (default: gradient)")
    s.set_defaults(func=cmd_saliency)

    c = sub.add_parser("compare", help="every method side by side for one image")
    c.add_argument("image", metavar="IMAGE", help="any image file Pillow reads")
    c.add_argument("--model", default=None, help="weights .npz (default: the shipped model)")
    c.add_argument("--target", default=None, metavar="CLASS",
                   help="class name or index to explain (default: the predicted class)")
    c.add_argument("--out", default="saliency_out", metavar="DIR", help="output folder")
    c.set_defaults(func=cmd_compare)

    d = sub.add_parser("demo", help="saliency figures for the shipped sample images")
    d.add_argument("--images", default=str(SAMPLES_DIR), metavar="DIR")
    d.add_argument("--model", default=None)
    d.add_argument("--out", default="saliency_out", metavar="DIR")
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("convert", help="torchvision VGG/AlexNet checkpoint -> minicnn .npz (needs torch)")
    v.add_argument("checkpoint", metavar="CHECKPOINT.pth")
    v.add_argument("--arch", required=True, help="vgg11, vgg11_bn, ..., vgg19_bn or alexnet")
    v.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    v.set_defaults(func=cmd_convert)

    z = sub.add_parser("classviz", help="class model images (paper section 2)")
    z.add_argument("--class", dest="cls", default="all", metavar="NAME|all")
    z.add_argument("--model", default=None)
    z.add_argument("--steps", type=int, default=200)
    z.add_argument("--plain", action="store_true", help="the paper's plain L2 ascent only")
    z.add_argument("--out", default="classviz_out", metavar="DIR")
    z.set_defaults(func=cmd_classviz)

    lo = sub.add_parser("localize", help="weakly supervised localisation (paper section 3.1)")
    lo.add_argument("images", nargs="+", metavar="IMAGE")
    lo.add_argument("--method", default="threshold", choices=["threshold", "graphcut"])
    lo.add_argument("--model", default=None)
    lo.add_argument("--target", default=None, metavar="CLASS")
    lo.add_argument("--out", default="localize_out", metavar="DIR")
    lo.set_defaults(func=cmd_localize)

    e = sub.add_parser("evaluate", help="localisation and deletion/insertion on the cluttered test split")
    e.add_argument("-n", type=int, default=10_000, help="test images (default all 10,000)")
    e.add_argument("--methods", default=None, help="comma-separated (default: all)")
    e.add_argument("--slow-limit", type=int, default=100,
                   help="images for smoothgrad, integrated gradients and occlusion")
    e.add_argument("--graphcut-limit", type=int, default=1000)
    e.add_argument("--curve-limit", type=int, default=100, help="images for deletion/insertion")
    e.add_argument("--model", default=None)
    e.add_argument("--out", default="evaluation", metavar="DIR")
    e.set_defaults(func=cmd_evaluate)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        _fail(str(e))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
