"""The ``minicnn`` command line: each subcommand parses its arguments, calls one library
function, and prints what it returned.

    minicnn demo                         saliency figures for the shipped sample images
    minicnn saliency IMAGE [IMAGE ...]   top-5 classes, a figure and the raw map per image
    minicnn compare IMAGE                every method side by side in one figure
    minicnn trace IMAGE                  the gradient at every layer, score back to pixels
    minicnn localize IMAGE [IMAGE ...]   a box from the saliency map (paper section 3.1)
    minicnn classviz                     class model images (paper section 2)
    minicnn evaluate                     localisation and deletion/insertion on the test split
    minicnn convert CHECKPOINT.pth       a torchvision checkpoint -> a minicnn .npz

``minicnn COMMAND --help`` lists every option with its default. Bad input (a missing,
non-image or truncated file, an unknown class or method, a broken weights file) gets one line
on stderr and exit code 2, never a traceback; with several images the others are still
processed. Every output file is written under a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def _fail(message: str) -> None:
    print(f"minicnn: error: {message}", file=sys.stderr)


# The library's exceptions for bad input, each reported as one line (imported lazily, so
# that ``minicnn --help`` stays fast).
def _user_errors() -> tuple:
    from .io.convert import ConversionError
    from .io.datasets import DatasetNotFoundError
    from .io.images import ImageReadError
    from .io.samples import SampleIndexError
    from .io.weights import WeightsFileError
    return (ConversionError, DatasetNotFoundError, ImageReadError, SampleIndexError,
            WeightsFileError)


def _load_model(path):
    from .io.weights import load
    return load(path)


def _num_classes(model) -> int:
    from .explain import class_names
    from .io.images import Preprocess
    names = class_names(model)
    if names:
        return len(names)
    prep = Preprocess.from_meta(model.meta)
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


def _target(args, model):
    from .explain import class_names
    return parse_target(args.target, class_names(model), _num_classes(model))


def check_method(name: str) -> str:
    """A method name from the registry, or a UsageError naming the valid ones."""
    from .saliency import METHODS
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return name


def _each_image(paths, work) -> int:
    """work(path) for every path; an unreadable image is one line and the others go on."""
    from .io.images import ImageReadError
    status = 0
    for path in paths:
        try:
            work(path)
        except ImageReadError as e:
            _fail(str(e))
            status = EXIT_BAD_INPUT
    return status


# ----------------------------------------------------------------------------- subcommands

def _figure_options(args) -> dict:
    return {"cmap": args.cmap, "dpi": args.dpi}


def _check_figure_options(args) -> None:
    """--cmap and --dpi, checked before any work (a typo is one line, not a traceback)."""
    if getattr(args, "cmap", None) is not None:
        import matplotlib
        if args.cmap not in matplotlib.colormaps:
            raise UsageError(f"unknown colormap {args.cmap!r}: choose a matplotlib colormap, "
                             f"e.g. inferno, viridis, magma, hot, gray")
    if getattr(args, "dpi", 1) < 1:
        raise UsageError(f"--dpi must be >= 1, got {args.dpi}")


def _warn(r) -> None:
    """The out-of-distribution warning of a result, on stdout beside the answer it qualifies."""
    if r.get("warning"):
        print(f"  WARNING: {r['warning']}")


def cmd_saliency(args) -> int:
    from .explain import explain_file, output_stems
    from .io.samples import sample_photo
    images = [*args.images, *([sample_photo()] if args.sample else [])]
    if not images:
        raise UsageError("saliency: give at least one IMAGE (or --sample)")
    method = check_method(args.method)
    model = _load_model(args.model)
    target = _target(args, model)
    stems = output_stems(images)

    def one(path):
        r = explain_file(model, path, method, target, args.out, stem=stems[str(path)],
                         upscale=args.upscale, **_figure_options(args))
        truth = f" (true class {r['true_name']})" if r["true_name"] else ""
        print(f"{path}: predicted {r['predicted_name']}{truth}")
        for rank, (name, score, p) in enumerate(r["top"], start=1):
            print(f"  {rank}. {name:<12s} score {score:8.3f}   p = {p:.3f}")
        _warn(r)
        print(f"  {r['suffix']} for {r['target_name']} -> {r['figure']} , {r['map']} , "
              f"{r['overlay']}")
    return _each_image(images, one)


def cmd_compare(args) -> int:
    from .explain import compare_file
    model = _load_model(args.model)
    r = compare_file(model, args.image, _target(args, model), args.out, upscale=args.upscale,
                     **_figure_options(args))
    print(f"{args.image}: predicted {r['predicted_name']}; {len(r['methods'])} methods for "
          f"{r['target_name']} -> {r['figure']}")
    _warn(r)
    return 0


def cmd_trace(args) -> int:
    from .explain import trace_file
    model = _load_model(args.model)
    r = trace_file(model, args.image, _target(args, model), args.out, reduce=args.reduce,
                   **_figure_options(args))
    print(f"{args.image}: predicted {r['predicted_name']}; the gradient of the score of "
          f"{r['target_name']} at {len(r['layers'])} steps, {r['layers'][0]} back to "
          f"{r['layers'][-1]} -> {r['figure']}")
    _warn(r)
    return 0


def cmd_demo(args) -> int:
    from .explain import run_demo
    model = _load_model(args.model)
    rows = run_demo(model, args.images, args.out, upscale=args.upscale, **_figure_options(args))
    width = max((len(r["name"]) for r in rows), default=0)  # align the columns
    for r in rows:
        print(f"{r['name']:<{width}s} true {r['true_class']:<12s} predicted "
              f"{r['predicted_name']:<12s} saliency peak "
              f"{'inside' if r['inside'] else 'OUTSIDE'} the box")
    n, correct, hits = len(rows), sum(r["correct"] for r in rows), sum(r["inside"] for r in rows)
    print(f"\n{correct}/{n} sample images classified correctly; the saliency maximum falls "
          f"inside the object's box for {hits}/{n}.")
    print(f"Figures and maps written to {Path(args.out).resolve()}/")
    return 0


def cmd_localize(args) -> int:
    from .explain import localize_file, output_stems
    model = _load_model(args.model)
    target = _target(args, model)
    stems = output_stems(args.images)

    def one(path):
        r = localize_file(model, path, args.method, target, args.out, stem=stems[str(path)],
                          **_figure_options(args))
        iou = "" if r["iou"] is None else f", true box {r['true_box']}, IoU {r['iou']:.2f}"
        print(f"{path}: box (x0, y0, x1, y1) = {r['box']}{iou} -> {r['figure']}")
        _warn(r)
    return _each_image(args.images, one)


def cmd_classviz(args) -> int:
    from .experiments.classviz import class_models
    from .explain import class_names
    from .io.images import Preprocess
    from .viz.experiments import write_class_models
    model = _load_model(args.model)
    names, k = class_names(model), _num_classes(model)
    classes = list(range(k)) if args.cls == "all" else [parse_target(args.cls, names, k)]
    priors = {} if args.plain else dict(jitter=4, blur_every=10, blur_sigma=0.5, clip=True)
    images = class_models(model, classes=classes, progress=True, steps=args.steps, **priors)
    labels = [names[c] if c < len(names) else str(c) for c in classes]
    grid = write_class_models(images, classes, labels, Preprocess.from_meta(model.meta),
                              args.out)
    print(f"{len(classes)} class model image(s) and the grid {grid} written to "
          f"{Path(args.out).resolve()}/")
    return 0


def cmd_evaluate(args) -> int:
    from .experiments.evaluate import run_evaluation
    from .viz.report import markdown_table, write_evaluation
    model = _load_model(args.model)
    try:
        result = run_evaluation(model, n_images=args.n, methods=args.methods, progress=True,
                                graphcut_limit=args.graphcut_limit, curve_limit=args.curve_limit,
                                slow_limit=args.slow_limit)
    except (ValueError, TypeError, ImportError) as e:
        raise UsageError(str(e)) from None
    write_evaluation(result, args.out)
    print(markdown_table(result))
    print(f"tables and plots written to {Path(args.out).resolve()}/")
    return 0


def cmd_convert(args) -> int:
    from .io.convert import convert_checkpoint
    path = convert_checkpoint(args.checkpoint, args.arch, args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


# ----------------------------------------------------------------------------- the parser

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line (argparse prints the usage block first)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .io.samples import SAMPLES_DIR
    from .io.zoo import ARCHITECTURES
    from .saliency import METHODS
    from .viz.plotting import CMAP, DPI, UPSCALE
    formatter = argparse.ArgumentDefaultsHelpFormatter  # every --help shows the defaults
    p = _Parser(prog="minicnn", description="Backprop saliency maps on a from-scratch CNN "
                "engine (NumPy + Numba).", formatter_class=formatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help, *parents, out=None):
        c = sub.add_parser(name, help=help, description=help, parents=list(parents),
                           formatter_class=formatter)
        if out is not None:
            c.add_argument("--out", default=out, metavar="DIR", help="output folder")
        c.set_defaults(func=func)
        return c

    # the flags several commands share, defined once
    model = _Parser(add_help=False)
    model.add_argument("--model", default=None, metavar="PATH",
                       help="weights .npz (default: the shipped model, or $MINICNN_WEIGHTS)")
    target = _Parser(add_help=False)
    target.add_argument("--target", default=None, metavar="CLASS",
                        help="class name or index to explain (default: the predicted class)")
    figure = _Parser(add_help=False)
    figure.add_argument("--dpi", type=int, default=DPI, help="resolution of the PNG figures")
    figure.add_argument("--cmap", default=CMAP, metavar="NAME",
                        help="matplotlib colormap of the maps >= 0 (signed maps are always "
                             "drawn in a diverging map centred on 0)")
    upscale = _Parser(add_help=False)
    upscale.add_argument("--upscale", default="blocks", choices=UPSCALE,
                         help="draw each input pixel as a square block, or smoothly "
                              "(bilinear)")

    s = command("saliency", cmd_saliency, "classify images and write their saliency maps",
                model, target, figure, upscale, out="saliency_out")
    s.add_argument("images", nargs="*", metavar="IMAGE", help="any image file Pillow reads")
    s.add_argument("--sample", action="store_true",
                   help="also explain matplotlib's sample photo grace_hopper.jpg")
    s.add_argument("--method", default="gradient", metavar="NAME",
                   help=f"one of {', '.join(METHODS)}")

    c = command("compare", cmd_compare, "every method side by side for one image",
                model, target, figure, upscale, out="saliency_out")
    c.add_argument("image", metavar="IMAGE", help="any image file Pillow reads")

    tr = command("trace", cmd_trace, "the gradient of the class score at every layer, from "
                 "the score back to the pixels", model, target, figure, out="saliency_out")
    tr.add_argument("image", metavar="IMAGE", help="any image file Pillow reads")
    tr.add_argument("--reduce", default="sum", choices=["sum", "max"],
                    help="how |gradient| over a layer's channels becomes one map")

    d = command("demo", cmd_demo, "saliency figures for the shipped sample images",
                model, figure, upscale, out="saliency_out")
    d.add_argument("--images", default=str(SAMPLES_DIR), metavar="DIR",
                   help="a folder of images with a samples.json")

    lo = command("localize", cmd_localize, "weakly supervised localisation (paper section 3.1)",
                 model, target, figure, out="localize_out")
    lo.add_argument("images", nargs="+", metavar="IMAGE", help="any image file Pillow reads")
    lo.add_argument("--method", default="threshold", choices=["threshold", "graphcut"],
                    help="how the map becomes a box (graphcut needs OpenCV)")

    z = command("classviz", cmd_classviz, "class model images (paper section 2)",
                model, out="classviz_out")
    z.add_argument("--class", dest="cls", default="all", metavar="NAME|all",
                   help="the class to visualise, by name or index, or all of them")
    z.add_argument("--steps", type=int, default=200, help="gradient ascent steps")
    z.add_argument("--plain", action="store_true",
                   help="the paper's plain L2-regularised ascent, without jitter, blur and clip")

    e = command("evaluate", cmd_evaluate,
                "localisation and deletion/insertion on the cluttered test split",
                model, out="evaluation")
    e.add_argument("-n", type=int, default=10_000, help="test images")
    e.add_argument("--methods", default=None, metavar="A,B",
                   help="comma-separated method names (default: all)")
    e.add_argument("--slow-limit", type=int, default=100,
                   help="images for the slow methods (smoothgrad, integrated gradients, "
                        "occlusion)")
    e.add_argument("--graphcut-limit", type=int, default=1000,
                   help="images for graph-cut localisation (needs OpenCV; 0 skips it)")
    e.add_argument("--curve-limit", type=int, default=100, help="images for deletion/insertion")

    v = command("convert", cmd_convert,
                "torchvision VGG/AlexNet checkpoint -> minicnn .npz (needs torch)")
    v.add_argument("checkpoint", metavar="CHECKPOINT.pth", help="a state-dict .pth file")
    v.add_argument("--arch", required=True, choices=ARCHITECTURES, metavar="ARCH",
                   help=f"one of {', '.join(ARCHITECTURES)}")
    v.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="the file to write")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")  # the command line writes files; it never needs a display
    try:
        _check_figure_options(args)
        return args.func(args)
    except UsageError as e:
        _fail(str(e))
        return EXIT_BAD_INPUT
    except _user_errors() as e:
        _fail(str(e))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
