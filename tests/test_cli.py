"""The minicnn command line: end to end on real files, one line + exit 2 for bad input, and
the demo's forked copies of the process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import saliency
from minicnn.cli import forked_map, main
from minicnn.explain import ExplainError, explain_file, slug
from minicnn.io.images import ImageReadError, Preprocess, read_image, to_input
from minicnn.io.samples import SAMPLES_DIR

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["T-shirt/top", "Trouser", "Pullover"]


@pytest.fixture
def model_path(tmp_path):
    rng = np.random.default_rng(0)
    model = minicnn.Sequential([
        minicnn.Conv2d(3, 4, 3, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(4),
        minicnn.Flatten(), minicnn.Linear(4 * 16 * 16, 3)])
    for layer in model.layers:
        for name, value in layer.parameters().items():
            setattr(layer, name, rng.normal(0, 0.1, size=value.shape).astype(np.float32))
    meta = {"class_names": CLASSES, "preprocess": Preprocess().to_meta()}
    return minicnn.save(model, tmp_path / "m.npz", meta=meta)


@pytest.fixture
def image_path(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(pixels).save(path)
    return path


def predicted(model_path, image_path) -> str:
    """The file-name form of the class the random test model predicts for the image."""
    model = minicnn.load(model_path)
    return slug(CLASSES[int(model.forward(to_input(read_image(image_path))).argmax())])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_saliency_writes_png_and_the_raw_map(capsys, tmp_path, model_path, image_path):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path, "--out", out_dir)
    assert code == 0 and err == ""
    base = f"pic_gradient_{predicted(model_path, image_path)}"
    png, npy = out_dir / f"{base}.png", out_dir / f"{base}.npy"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 1200     # 150 dpi by default
    with Image.open(out_dir / f"{base}_overlay.png") as im:  # at the file's own resolution
        assert im.size == (64, 64)
    model = minicnn.load(model_path)
    x = to_input(read_image(image_path))
    want = saliency.saliency_map(saliency.gradient(model, x))[0]
    np.testing.assert_allclose(np.load(npy), want, rtol=1e-6)
    # top-5 (here all 3 classes) with scores and probabilities that sum to 1
    probs = [float(line.rsplit("p = ", 1)[1]) for line in out.splitlines() if "p = " in line]
    assert len(probs) == 3 and abs(sum(probs) - 1) < 2e-3
    assert sorted(os.listdir(out_dir)) == [f"{base}.npy", f"{base}.png",   # no temp files
                                           f"{base}_overlay.png"]


@pytest.mark.parametrize("target, index", [("Trouser", 1), ("pullover", 2), ("0", 0)])
def test_target_by_name_or_index(capsys, tmp_path, model_path, image_path, target, index):
    code, out, _ = run(capsys, "saliency", image_path, "--model", model_path,
                       "--out", tmp_path, "--target", target)
    assert code == 0 and f"gradient for {CLASSES[index]}" in out


@pytest.mark.parametrize("target, message", [
    ("Sneakers", "unknown class 'Sneakers': choose one of T-shirt/top, Trouser, Pullover"),
    ("7", "unknown class index 7: valid indices are 0..2"),
])
def test_unknown_class_is_one_line_and_exit_2(capsys, tmp_path, model_path, image_path,
                                             target, message):
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path,
                         "--out", tmp_path, "--target", target)
    assert code == 2
    assert err == f"minicnn: error: {message}\n"


def test_bad_files_are_reported_and_the_others_still_processed(capsys, tmp_path, model_path,
                                                               image_path):
    (tmp_path / "notes.png").write_text("not an image")
    good = image_path.read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 3])
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "saliency", tmp_path / "missing.png", tmp_path / "notes.png",
                         tmp_path / "cut.png", image_path, "--model", model_path, "--out", out_dir)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith("minicnn: error: ") for line in lines)
    assert "missing.png: no such file" in lines[0]
    assert "notes.png: not an image" in lines[1]
    assert "cut.png: damaged or truncated" in lines[2]
    base = f"pic_gradient_{predicted(model_path, image_path)}"
    assert sorted(os.listdir(out_dir)) == [f"{base}.npy", f"{base}.png", f"{base}_overlay.png"]


def test_broken_weights_file_is_one_line(capsys, tmp_path, image_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 nothing")
    code, _, err = run(capsys, "saliency", image_path, "--model", bad, "--out", tmp_path)
    assert code == 2 and err.startswith("minicnn: error: ") and "bad.npz" in err
    assert len(err.splitlines()) == 1


def test_python_dash_m_end_to_end_no_traceback(tmp_path, model_path, image_path):
    """A real process: exit codes and stderr as a user sees them."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ok = subprocess.run([sys.executable, "-m", "minicnn", "saliency", str(image_path),
                         "--model", str(model_path), "--out", str(tmp_path / "o")],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "o" / f"pic_gradient_{predicted(model_path, image_path)}.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "minicnn", "saliency", str(tmp_path / "x.jpg"),
                          "--model", str(model_path)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- --method, compare

METHOD_NAMES = list(saliency.METHODS)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_writes_its_figure_and_map(capsys, tmp_path, model_path, image_path,
                                                method):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path, "--out", out_dir,
                         "--method", method, "--target", "Trouser")
    assert code == 0
    base = f"pic_{method}_trouser"
    with Image.open(out_dir / f"{base}.png") as im:
        assert im.format == "PNG"
    got = np.load(out_dir / f"{base}.npy")
    model = minicnn.load(model_path)
    x = to_input(read_image(image_path))
    if method == "grad_cam":     # the heat map, resized to the image
        want = saliency.grad_cam(model, x, 1, upsample=True)[0]
    else:                        # max |.| over channels of the signed attributions
        options = {"seed": 0} if method == "smoothgrad" else {}
        want = saliency.saliency_map(saliency.METHODS[method](model, x, 1, **options))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert f"{method} for Trouser" in out
    long = method in ("smoothgrad", "integrated_gradients", "occlusion")
    assert ("] 50/50" in err or "] 225/225" in err) if long else err == ""
    assert sorted(os.listdir(out_dir)) == [f"{base}.npy", f"{base}.png", f"{base}_overlay.png"]


def test_unknown_method_is_one_line_naming_the_choices(capsys, tmp_path, model_path,
                                                       image_path):
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path,
                         "--out", tmp_path / "o", "--method", "lime")
    assert code == 2 and out == ""
    assert err == ("minicnn: error: unknown method 'lime': choose one of "
                   f"{', '.join(METHOD_NAMES)}\n")
    assert not (tmp_path / "o").exists()


def test_compare_writes_one_figure_with_every_method(capsys, tmp_path, model_path, image_path):
    out_dir = tmp_path / "cmp"
    code, out, err = run(capsys, "compare", image_path, "--model", model_path, "--out", out_dir)
    assert code == 0
    model = minicnn.load(model_path)
    pred = int(model.forward(to_input(read_image(image_path))).argmax())
    assert f"predicted {CLASSES[pred]}; 11 methods for {CLASSES[pred]}" in out
    name = f"pic_compare_{slug(CLASSES[pred])}.png"
    assert sorted(os.listdir(out_dir)) == [name]
    with Image.open(out_dir / name) as im:
        assert im.format == "PNG" and im.size[0] > 1.4 * im.size[1]   # a grid of 3 x 5
    bars = err.splitlines()  # the three progress bars, a line per step (stderr is no terminal)
    assert "\r" not in err and sum("[####################]" in line for line in bars) == 3


@pytest.mark.parametrize("argv, message", [
    (["--target", "Sneakers"], "unknown class 'Sneakers'"),
    (["--model", "missing.npz"], "missing.npz: no such weights file"),
])
def test_compare_bad_input_is_one_line(capsys, tmp_path, model_path, image_path, argv, message):
    argv = [a.replace("missing.npz", str(tmp_path / "missing.npz")) for a in argv]
    if "--model" not in argv:
        argv += ["--model", str(model_path)]
    code, _, err = run(capsys, "compare", image_path, "--out", tmp_path, *argv)
    assert code == 2 and err.startswith("minicnn: error: ") and message in err
    assert len(err.splitlines()) == 1


def test_compare_unreadable_image_is_one_line(capsys, tmp_path, model_path):
    (tmp_path / "notes.png").write_text("not an image")
    code, _, err = run(capsys, "compare", tmp_path / "notes.png", "--model", model_path,
                       "--out", tmp_path / "o")
    assert code == 2 and "notes.png: not an image" in err and len(err.splitlines()) == 1


def test_localize_and_classviz_commands(capsys, tmp_path):
    sample = ROOT / "minicnn" / "io" / "data" / "samples" / "test00000_ankle-boot.png"
    code, out, err = run(capsys, "localize", sample, "--out", tmp_path / "loc")
    assert code == 0, err
    assert (tmp_path / "loc" / "test00000_ankle-boot_localize-threshold_ankle-boot.png").is_file()
    assert "true box (11, 35, 48, 54), IoU" in out       # samples.json knows the box
    code, out, err = run(capsys, "classviz", "--class", "Bag", "--steps", "5",
                         "--out", tmp_path / "cv")
    assert code == 0, err
    assert (tmp_path / "cv" / "class_008_bag.png").is_file()
    code, out, err = run(capsys, "classviz", "--class", "bag,0", "--steps", "2",
                         "--out", tmp_path / "cv2")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "cv2").glob("class_0*.png")) == [
        "class_000_t-shirt.png", "class_008_bag.png"]
    code, out, err = run(capsys, "classviz", "--class", "paper", "--out", tmp_path / "cv3")
    assert code == 2 and err.splitlines() == [
        "minicnn: error: --class paper: the paper's twelve ImageNet classes need an ImageNet "
        "model (e.g. --model mobilenet_v2)"]


def test_convert_a_junk_file_is_one_line(capsys, tmp_path, torch):
    (tmp_path / "junk.pth").write_text("junk")
    code, out, err = run(capsys, "convert", tmp_path / "junk.pth", "--arch", "vgg16",
                         "-o", tmp_path / "v.npz")
    assert code == 2 and err.startswith("minicnn: error: ") and "junk.pth" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "v.npz").exists()


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "minicnn: error: argument COMMAND: invalid choice: 'bogus'"),
    (["saliency", "--nope"], "minicnn: error: unrecognized arguments: --nope"),
    (["evaluate", "-n", "abc"], "minicnn evaluate: error: argument -n: invalid int value: 'abc'"),
])
def test_argument_errors_are_one_line_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(message) and "--help" in err


# ----------------------------------------------------------------------------- names, trace, OOD

def test_same_file_name_in_two_folders_gives_two_outputs(capsys, tmp_path, model_path,
                                                          image_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "pic.png").write_bytes(image_path.read_bytes())
    out_dir = tmp_path / "out"
    code, out, _ = run(capsys, "saliency", tmp_path / "a" / "pic.png", tmp_path / "b" / "pic.png",
                       "--model", model_path, "--out", out_dir)
    assert code == 0
    c = predicted(model_path, image_path)
    assert {f"a_pic_gradient_{c}.png", f"b_pic_gradient_{c}.png"} <= set(os.listdir(out_dir))


def test_two_runs_for_other_methods_or_classes_keep_both(capsys, tmp_path, model_path,
                                                        image_path):
    out_dir = tmp_path / "out"
    for argv in (["--target", "Trouser"], ["--target", "Pullover"],
                 ["--target", "Trouser", "--method", "guided_backprop"]):
        assert run(capsys, "saliency", image_path, "--model", model_path, "--out", out_dir,
                   *argv)[0] == 0
    pngs = sorted(p for p in os.listdir(out_dir) if p.endswith(".png") and "overlay" not in p)
    assert pngs == ["pic_gradient_pullover.png", "pic_gradient_trouser.png",
                    "pic_guided_backprop_trouser.png"]


def test_dpi_option_sets_the_resolution(capsys, tmp_path, model_path, image_path):
    sizes = []
    for dpi in ("80", "160"):
        assert run(capsys, "saliency", image_path, "--model", model_path, "--target", "0",
                   "--out", tmp_path / dpi, "--dpi", dpi, "--cmap", "viridis")[0] == 0
        with Image.open(tmp_path / dpi / "pic_gradient_t-shirt-top.png") as im:
            sizes.append(im.size[0])
    assert 1.8 < sizes[1] / sizes[0] < 2.2


def test_trace_command_writes_one_figure(capsys, tmp_path):
    sample = SAMPLES_DIR / "test00000_ankle-boot.png"
    code, out, err = run(capsys, "trace", sample, "--out", tmp_path)
    assert code == 0, err
    assert "at 22 steps, classifier.4 back to input" in out
    assert os.listdir(tmp_path) == ["test00000_ankle-boot_trace_ankle-boot.png"]


def test_a_photo_gets_the_out_of_distribution_warning_a_sample_does_not(capsys, tmp_path):
    code, out, _ = run(capsys, "saliency", "--sample", "--out", tmp_path)
    assert code == 0 and "WARNING: this image is not of the kind this model knows" in out
    assert "shrunk and cropped to 64x64" in out and "minicnn fetch mobilenet_v2" in out
    sample = SAMPLES_DIR / "test00000_ankle-boot.png"
    code, out, _ = run(capsys, "saliency", sample, "--out", tmp_path)
    assert code == 0 and "WARNING" not in out and "(true class Ankle boot)" in out


@pytest.mark.parametrize("argv, message", [
    (["--cmap", "infernoo"], "unknown colormap 'infernoo': choose a matplotlib colormap, "
                             "e.g. inferno, viridis, magma, hot, gray"),
    (["--dpi", "0"], "--dpi must be >= 1, got 0"),
])
def test_bad_figure_options_are_one_line(capsys, tmp_path, model_path, image_path, argv,
                                         message):
    code, _, err = run(capsys, "saliency", image_path, "--model", model_path,
                       "--out", tmp_path / "o", *argv)
    assert code == 2 and err == f"minicnn: error: {message}\n"
    assert not (tmp_path / "o").exists()


def test_grad_cam_layer_by_name_and_a_bad_name(capsys, tmp_path, model_path, image_path):
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path, "--out", tmp_path,
                         "--method", "grad_cam", "--layer", "0", "--target", "1")
    assert code == 0, err
    model = minicnn.load(model_path)
    want = saliency.grad_cam(model, to_input(read_image(image_path)), 1, layer="0",
                             upsample=True)[0]
    np.testing.assert_allclose(np.load(tmp_path / "pic_grad_cam_trouser.npy"), want, rtol=1e-5,
                               atol=1e-7)
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path, "--out", tmp_path,
                         "--method", "grad_cam", "--layer", "layer9")
    assert code == 2 and err.startswith("minicnn: error: unknown layer 'layer9': the model's "
                                        "nodes are 0, 1, 2, 3, 4") and err.count("\n") == 1


# ----------------------------------------------------------------------------- forked copies

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")


@needs_fork
def test_forked_map_keeps_the_order_and_runs_closures_in_other_processes():
    big = np.arange(10)                               # inherited by the copies, not pickled
    here = os.getpid()
    got = forked_map(lambda k: (int(big[k]) ** 2, os.getpid() != here), range(7), jobs=2)
    assert [v for v, _ in got] == [k * k for k in range(7)]
    assert all(elsewhere for _, elsewhere in got)


def test_one_job_runs_in_this_process():
    here = os.getpid()
    assert forked_map(lambda k: os.getpid(), range(3), jobs=1) == [here] * 3
    assert forked_map(len, [], jobs=4) == []


@needs_fork
def test_an_error_in_a_copy_is_raised_here():
    def fail_on_three(k):
        if k == 3:
            raise ValueError("item 3")
        return k
    with pytest.raises(ValueError, match="item 3"):
        forked_map(fail_on_three, range(5), jobs=2)


@needs_fork
def test_demo_files_explained_in_forked_copies_are_those_of_one_process(tmp_path):
    """What ``minicnn demo`` does: each sample's figure, map and overlay written by a copy of
    the process are those this process writes, and so are the answers and the errors."""
    model = minicnn.load()
    index = json.loads((SAMPLES_DIR / "samples.json").read_text())["images"]
    names = list(index)[:5]
    folder = tmp_path / "samples"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes((SAMPLES_DIR / name).read_bytes())
    (folder / "gone.png").write_bytes(b"not an image")       # a bad sample in the middle
    chosen = [*names[:2], "gone.png", *names[2:]]

    def explained(out):
        def one(name):
            info = index[name if name in index else names[0]]
            try:
                return explain_file(model, folder / name, out_dir=tmp_path / out, dpi=40,
                                    box=info["box"], true_label=info["label"])
            except (ImageReadError, ExplainError) as e:
                return str(e)
        return one

    one = forked_map(explained("one"), chosen, jobs=1)
    two = forked_map(explained("two"), chosen, jobs=2)
    for a, b in zip(one, two, strict=True):
        if isinstance(a, str):
            assert a == b and "gone.png" in a
            continue
        assert (a.predicted_name, a.top, a.inside, a.correct) == \
            (b.predicted_name, b.top, b.inside, b.correct)
        for file_a, file_b in ((a.figure, b.figure), (a.map, b.map), (a.overlay, b.overlay)):
            with open(file_a, "rb") as fa, open(file_b, "rb") as fb:
                assert fa.read() == fb.read(), file_a
    assert sorted(os.listdir(tmp_path / "one")) == sorted(os.listdir(tmp_path / "two"))
    assert len(os.listdir(tmp_path / "two")) == 3 * len(names)
