"""The command line under bad and hostile input: for every case, the exit code, the one line
on stderr, and which files exist afterwards (issue 12). The files are made here: a NaN
weights file, a decompression bomb, a file name that is not UTF-8, a full disk (a file-size
limit), SIGTERM in the middle of a write."""
import json
import os
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn.cli import main
from minicnn.io.images import Preprocess
from tests.io.test_images import _png_header

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["T-shirt/top", "Trouser", "Pullover"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def net(scale=0.1, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    model = minicnn.Sequential([
        minicnn.Conv2d(3, 4, 3, padding=1), minicnn.ReLU(), minicnn.MaxPool2d(4),
        minicnn.Flatten(), minicnn.Linear(4 * 16 * 16, 3)])
    for layer in model.layers:
        for name, value in layer.parameters().items():
            values = rng.normal(0, scale, size=value.shape) if (bias or name == "weight") \
                else np.zeros(value.shape)
            setattr(layer, name, values.astype(np.float32))
    return model


def save(model, path, **meta):
    return minicnn.save(model, path, meta={"class_names": CLASSES,
                                           "preprocess": Preprocess().to_meta(), **meta})


@pytest.fixture
def model_path(tmp_path):
    return save(net(), tmp_path / "m.npz")


@pytest.fixture
def image_path(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "pic.png")
    return tmp_path / "pic.png"


def outputs(stem, model_path, image, method="gradient"):
    """The three files ``saliency`` writes for an image: <stem>_<method>_<class> .npy, .png
    and _overlay.png, the class being the one the model predicts."""
    from minicnn.explain import slug
    from minicnn.io.images import read_image, to_input
    scores = minicnn.load(model_path).forward(to_input(read_image(image)))
    base = f"{stem}_{method}_{slug(CLASSES[int(scores.argmax())])}"
    return sorted([f"{base}.npy", f"{base}.png", f"{base}_overlay.png"])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str, *parts: str) -> str:
    """The single stderr line, checked to hold every part."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minicnn: error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def files(folder: Path) -> list:
    return sorted(os.listdir(folder)) if folder.exists() else None


# ----------------------------------------------------------------------------- 1. images

def test_multi_frame_image_says_it_used_the_first_frame(capsys, tmp_path, model_path):
    frames = [Image.fromarray(np.full((64, 64, 3), c, np.uint8)) for c in (40, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    code, out, err = run(capsys, "saliency", tmp_path / "anim.gif", "--model", model_path,
                         "--out", tmp_path / "o")
    assert code == 0
    assert err == f"minicnn: note: {tmp_path / 'anim.gif'}: 2 frames; the first one was used\n"
    assert files(tmp_path / "o") == outputs("anim", model_path, tmp_path / "anim.gif")


# ----------------------------------------------------------------------------- 2. non-finite numbers

def test_nan_weights_are_one_line_before_any_work(capsys, tmp_path, image_path):
    model = net()
    save(model, tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["4.weight"] = arrays["4.weight"].copy()
    arrays["4.weight"][1, 7] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    code, out, err = run(capsys, "saliency", image_path, "--model", tmp_path / "nan.npz",
                         "--out", tmp_path / "o")
    assert code == 2 and out == ""
    one_error(err, "nan.npz: array '4.weight' contains NaN or inf (first at index (1, 7)")
    assert files(tmp_path / "o") is None


def test_an_overflow_is_one_line_and_draws_nothing(capsys, tmp_path, image_path):
    """Finite weights of 1e30: a blank image gives 0 (the load check passes), a real image
    overflows float32 to inf. Today's answer must not be a figure of NaN and exit 0."""
    model = net(bias=False)
    for layer in (model[0], model[4]):
        layer.weight = np.full_like(layer.weight, 1e30)
    path = save(model, tmp_path / "huge.npz")
    for command in ("saliency", "compare", "localize"):
        out_dir = tmp_path / command
        with warnings.catch_warnings():
            warnings.simplefilter("error")     # numpy's overflow warning would be more lines
            code, out, err = run(capsys, command, image_path, "--model", path, "--out", out_dir)
        assert code == 2, (command, err)
        one_error(err, "pic.png: NaN or inf in the model's scores (an overflow in the model?); "
                       "nothing written for it")
        assert files(out_dir) in (None, []), command


# ----------------------------------------------------------------------------- 3. hostile sizes

def test_decompression_bomb_among_good_images(capsys, tmp_path, model_path, image_path):
    (tmp_path / "bomb.png").write_bytes(_png_header(40_000, 40_000))
    code, out, err = run(capsys, "saliency", tmp_path / "bomb.png", image_path,
                         "--model", model_path, "--out", tmp_path / "o")
    assert code == 2
    one_error(err, "bomb.png: more than 89,478,485 pixels")
    assert files(tmp_path / "o") == outputs("pic", model_path, image_path)


def test_evaluate_n_beyond_the_split_is_refused(capsys, tmp_path, model_path, monkeypatch):
    """With a 12-image split on disk, -n 10**12 is refused at once (no array of 10**12)."""
    from tests.io.test_datasets import _fake_split
    (tmp_path / "data").mkdir()
    _fake_split(tmp_path / "data", 12)
    code, out, err = run(capsys, "evaluate", "-n", 10**12, "--model", model_path,
                         "--data-dir", tmp_path / "data", "--out", tmp_path / "ev",
                         "--graphcut-limit", 0)
    assert code == 2
    one_error(err, "n_images is 1,000,000,000,000, but the test split has 12 images")
    assert files(tmp_path / "ev") is None


# ----------------------------------------------------------------------------- 4. outputs and signals

@pytest.mark.parametrize("command", [
    ["saliency", "IMAGE"], ["compare", "IMAGE"], ["localize", "IMAGE"], ["demo"],
    ["classviz", "--steps", "1"], ["evaluate", "-n", "1"]])
def test_output_path_is_checked_before_any_work(capsys, tmp_path, image_path, command):
    """--out names a file, and --model a weights file that does not exist: the output path
    is what is reported, before the model is even opened; nothing is written."""
    (tmp_path / "taken").write_text("mine")
    argv = [str(image_path) if a == "IMAGE" else a for a in command]
    code, out, err = run(capsys, *argv, "--out", tmp_path / "taken", "--model",
                         tmp_path / "missing.npz")
    assert code == 2 and out == ""
    one_error(err, "taken: is a file, not a folder")
    code, out, err = run(capsys, *argv, "--out", tmp_path / "taken" / "sub", "--model",
                         tmp_path / "missing.npz")
    assert code == 2
    one_error(err, f"taken/sub: cannot be written: {tmp_path / 'taken'} is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["pic.png", "taken"]


def test_read_only_output_folder(capsys, tmp_path, model_path, image_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes (the path under a "
                        "regular file above is the test that always runs)")
        code, out, err = run(capsys, "saliency", image_path, "--model", model_path,
                             "--out", locked / "o")
        assert code == 2 and out == ""
        one_error(err, f"cannot be written: {locked} is not writable (permission denied)")
        assert files(locked) == []
    finally:
        locked.chmod(0o755)


def test_convert_output_suffix_is_checked_first(capsys, tmp_path):
    code, out, err = run(capsys, "convert", tmp_path / "missing.pth", "--arch", "vgg16",
                         "-o", tmp_path / "vgg16.pt")
    assert code == 2
    one_error(err, "vgg16.pt: the output file must end in .npz")
    assert files(tmp_path) == []


def test_missing_inputs_are_reported_before_the_model_is_opened(capsys, tmp_path):
    (tmp_path / "bad.npz").write_text("not weights")
    code, out, err = run(capsys, "saliency", tmp_path / "gone.png", "--model",
                         tmp_path / "bad.npz", "--out", tmp_path / "o")
    assert code == 2
    one_error(err, "gone.png: no such file")            # not a word about bad.npz
    (tmp_path / "folder.png").mkdir()
    code, out, err = run(capsys, "compare", tmp_path / "folder.png", "--model",
                         tmp_path / "bad.npz", "--out", tmp_path / "o")
    assert code == 2
    one_error(err, "folder.png: is a folder, not an image file")
    assert files(tmp_path / "o") is None


def _limited(limit_bytes):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails: EFBIG
    return preexec


def test_full_disk_is_one_line_and_leaves_no_orphan(tmp_path, model_path, image_path):
    """A file-size limit of 32 KB: the map (16 KB) fits, the figure (~70 KB) does not. Neither
    may be left behind, nor any temporary file."""
    argv = [sys.executable, "-m", "minicnn", "saliency", str(image_path), "--model",
            str(model_path)]
    warm = subprocess.run(argv + ["--out", str(tmp_path / "warm")], capture_output=True,
                          text=True, env=ENV, timeout=300)   # Numba's and matplotlib's caches
    assert warm.returncode == 0, warm.stderr
    figure = next(n for n in outputs("pic", model_path, image_path)
                  if n.endswith(".png") and not n.endswith("_overlay.png"))
    assert (tmp_path / "warm" / figure).stat().st_size > 32 * 1024
    full = subprocess.run(argv + ["--out", str(tmp_path / "full")], capture_output=True,
                          text=True, env=ENV, timeout=300, preexec_fn=_limited(32 * 1024))
    assert full.returncode == 1, full.stderr
    assert full.stderr == (f"minicnn: error: cannot write {tmp_path / 'full' / figure}"
                           f": File too large\n")
    assert files(tmp_path / "full") == []


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_a_write_removes_the_temporary_files(tmp_path, model_path, image_path,
                                                            sig, code, word):
    """The map's writer is made to hang once its temporary file is written; the signal comes
    then. The figure's and the map's temporary files must both be gone, nothing renamed."""
    ready = tmp_path / "ready"
    script = (
        "import sys, time, numpy as np\n"
        "real = np.save\n"
        "def slow(file, arr, *a, **k):\n"
        "    real(file, arr, *a, **k)\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    time.sleep(120)\n"
        "np.save = slow\n"
        "from minicnn.cli import main\n"
        f"sys.exit(main(['saliency', {str(image_path)!r}, '--model', {str(model_path)!r}, "
        f"'--out', {str(tmp_path / 'o')!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        temps = files(tmp_path / "o")
        assert len(temps) == 2 and all(t.startswith(".pic_gradient_") for t in temps), temps
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code
    assert err == f"minicnn: error: {word}\n"
    assert files(tmp_path / "o") == []


# ----------------------------------------------------------------------------- 5. one line, exit 2

def test_file_name_that_is_not_utf8(tmp_path, model_path, image_path):
    """A real process, since the name reaches argv as bytes. It is an image like any other."""
    name = os.fsdecode(b"caf\xe9.png")
    (tmp_path / name).write_bytes(image_path.read_bytes())
    (tmp_path / os.fsdecode(b"br\xf6ken.png")).write_text("not an image")
    out_dir = tmp_path / "o"
    done = subprocess.run([sys.executable, "-m", "minicnn", "saliency",
                           os.fsencode(tmp_path / os.fsdecode(b"br\xf6ken.png")),
                           os.fsencode(tmp_path / name), "--model", str(model_path),
                           "--out", str(out_dir)], capture_output=True, env=ENV, timeout=300)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "Traceback" not in err
    one_error(err, r"br\udcf6ken.png: not an image")
    assert sorted(os.listdir(os.fsencode(out_dir))) == [
        os.fsencode(n) for n in outputs(name[:-4], model_path, image_path)]
    assert b"predicted" in done.stdout


def _rewrite(path, out, arch=None, **meta_changes):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if arch is not None:                  # keep the arrays of the layers that remain
        arrays = {k: v for k, v in arrays.items()
                  if k.startswith("__") or k.split(".")[0] in {a["name"] for a in arch}}
        arrays["__architecture__"] = np.array(json.dumps(arch))
    meta = json.loads(str(arrays["__meta__"]))
    if arch is not None:
        meta.pop("sha256")                # a digest of arrays that are gone
    meta.update(meta_changes)
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize("change, message", [
    (dict(preprocess={"resize": 64, "crop": 80}), "preprocess crop must be an int in 1..64, got 80"),
    (dict(preprocess={"resize": 64, "crop": 64, "std": [0.25, 0, 0.25]}),
     "preprocess std must be 3 finite numbers > 0"),
    (dict(class_names=["T-shirt/top", "Trouser"]), "2 class_names for the model's 3 outputs"),
    (dict(preprocess={"resize": 2, "crop": 2}),      # the 3x3 kernel meets a 2x2 image...
     "does not run on a (3, 2, 2) image: MaxPool2d '2': kernel (4, 4) is larger than the "
     "padded input (2, 2)"),                          # ...with padding 1; the 4x4 pool does not
    (dict(arch=[]), "bad architecture: __architecture__ lists no layers"),
    (dict(arch=[{"name": "0", "type": "Conv2d", "in_channels": 3, "out_channels": 4,
                 "kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1], "bias": True}]),
     "the architecture gives an output of shape (1, 4, 64, 64) for one image, not class "
     "scores (1, K)"),
])
def test_bad_metadata_and_degenerate_architectures(capsys, tmp_path, model_path, image_path,
                                                   change, message):
    bad = _rewrite(model_path, tmp_path / "bad.npz", **change)
    code, out, err = run(capsys, "saliency", image_path, "--model", bad, "--out", tmp_path / "o")
    assert code == 2 and out == ""
    one_error(err, "bad.npz: ", message)
    assert files(tmp_path / "o") is None


def test_missing_fashion_mnist_for_evaluate(capsys, tmp_path, model_path, monkeypatch):
    monkeypatch.setenv("MINICNN_FASHION_MNIST", str(tmp_path / "empty"))
    code, out, err = run(capsys, "evaluate", "-n", 5, "--model", model_path,
                         "--out", tmp_path / "ev")
    assert code == 2 and out == ""
    one_error(err, "Fashion-MNIST test files not found: looked for "
                   f"{tmp_path / 'empty' / 't10k-images-idx3-ubyte.gz'}",
              "apt-get install dataset-fashion-mnist", "four *-ubyte.gz files",
              "pass --data-dir DIR or set $MINICNN_FASHION_MNIST")
    assert "data_dir=" not in err and files(tmp_path / "ev") is None


def test_graph_cut_without_opencv(capsys, tmp_path, model_path, image_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    code, out, err = run(capsys, "localize", image_path, "--method", "graphcut",
                         "--model", model_path, "--out", tmp_path / "o")
    assert code == 2 and out == ""
    one_error(err, 'graph-cut localisation needs OpenCV: pip install "minicnn[localize]"')
    assert files(tmp_path / "o") is None


@pytest.mark.parametrize("text, message", [
    ('{"images": {"a.png": ', "samples.json: not valid JSON"),
    ('{"pictures": []}', 'samples.json: expected {"images": {file name:'),
    ('{"images": {"a.png": {"label": 1, "class": "Trouser", "box": [5, 5, 2, 9]}}}',
     "samples.json: entry 'a.png' needs an int \"label\", a \"class\" name and a \"box\""),
    (b"\xff\xfe{}", "samples.json: not valid JSON"),
])
def test_broken_samples_json(capsys, tmp_path, model_path, text, message):
    (tmp_path / "s").mkdir()
    path = tmp_path / "s" / "samples.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, out, err = run(capsys, "demo", "--images", tmp_path / "s", "--model", model_path,
                         "--out", tmp_path / "o")
    assert code == 2 and out == ""
    one_error(err, message)
    assert files(tmp_path / "o") is None


def test_demo_goes_on_past_a_bad_sample(capsys, tmp_path, model_path, image_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "good.png").write_bytes(image_path.read_bytes())
    (tmp_path / "s" / "cut.png").write_bytes(image_path.read_bytes()[:200])
    info = {"label": 1, "class": "Trouser", "box": [0, 0, 64, 64]}
    (tmp_path / "s" / "samples.json").write_text(json.dumps(
        {"images": {"cut.png": info, "gone.png": info, "good.png": info}}))
    code, out, err = run(capsys, "demo", "--images", tmp_path / "s", "--model", model_path,
                         "--out", tmp_path / "o")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 2 and "cut.png: damaged or truncated" in lines[0]
    assert "gone.png: no such file" in lines[1]
    assert "good.png" in out and "1 sample images classified" in out.replace("0/1", "1")
    assert files(tmp_path / "o") == outputs("good", model_path, image_path)


@pytest.mark.parametrize("target, shown", [("²", "²"), ("1e3", "1e3"), ("", ""),
                                           ("3.0", "3.0")])
def test_odd_target_strings_are_unknown_classes(capsys, tmp_path, model_path, image_path,
                                                target, shown):
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path,
                         "--out", tmp_path / "o", "--target", target)
    assert code == 2 and out == ""
    one_error(err, f"unknown class {shown!r}: choose one of T-shirt/top, Trouser, Pullover")
    assert files(tmp_path / "o") is None


@pytest.mark.parametrize("target, name", [(" 1 ", "Trouser"), ("+2", "Pullover"),
                                          (" trouser", "Trouser")])
def test_targets_with_spaces_or_a_sign_are_read(capsys, tmp_path, model_path, image_path,
                                                target, name):
    code, out, err = run(capsys, "saliency", image_path, "--model", model_path,
                         "--out", tmp_path / "o", "--target", target)
    assert code == 0 and f"gradient for {name}" in out


@pytest.mark.parametrize("argv, message", [
    (["classviz", "--steps", "-5"], "argument --steps: must be an int >= 0, got -5"),
    (["evaluate", "-n", "0"], "argument -n: must be an int >= 1, got 0"),
    (["evaluate", "--curve-limit", "-1"], "argument --curve-limit: must be an int >= 0, got -1"),
])
def test_negative_counts_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_localize_finding_nothing_is_one_line(capsys, tmp_path, image_path):
    """All-zero weights: the map is zero everywhere, so no pixel is kept, no box."""
    model = net()
    for layer in (model[0], model[4]):
        layer.weight = np.zeros_like(layer.weight)
    path = save(model, tmp_path / "zero.npz")
    code, out, err = run(capsys, "localize", image_path, "--model", path, "--out", tmp_path / "o")
    assert code == 2 and out == ""
    one_error(err, "pic.png: threshold localisation found no object: nothing was segmented "
                   "from the saliency map (the map is zero everywhere)")
    assert files(tmp_path / "o") is None


def _overflowing(tmp_path):
    """Finite weights of 1e30 and no biases: a blank image scores 0, anything else inf."""
    model = net(bias=False)
    for layer in (model[0], model[4]):
        layer.weight = np.full_like(layer.weight, 1e30)
    return save(model, tmp_path / "huge.npz")


def test_classviz_overflow_is_one_line_and_writes_nothing(capsys, tmp_path):
    """Biases 0.1, weights 1e30: the blank image scores ~1e32 (finite, so the load check
    passes), but the gradient, 1e30 * 1e30, overflows at the first step (and clipping the
    image would hide it)."""
    model = net()
    for layer in (model[0], model[4]):
        layer.weight = np.full_like(layer.weight, 1e30)
        layer.bias = np.full_like(layer.bias, 0.1)
    path = save(model, tmp_path / "huge.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run(capsys, "classviz", "--class", "0", "--steps", 3, "--model",
                             path, "--out", tmp_path / "cv")
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == ("minicnn: error: class_model: NaN or inf in the score or the "
                                    "gradient of class 0 at step 0 (an overflow in the model?); "
                                    "nothing written")
    assert all("class model" in line for line in err.splitlines()[:-1])   # its progress bar
    assert files(tmp_path / "cv") is None


def test_evaluate_overflow_is_an_error_not_a_result(tmp_path):
    from minicnn.experiments.evaluate import run_evaluation
    from tests.io.test_datasets import _fake_split
    (tmp_path / "data").mkdir()
    _fake_split(tmp_path / "data", 12)
    model = minicnn.load(_overflowing(tmp_path))
    with pytest.raises(ValueError, match=r"the model's scores for test images 0\.\.3 hold NaN "
                                         r"or inf \(an overflow in the model\?\)"):
        with np.errstate(all="ignore"):
            run_evaluation(model, n_images=4, methods=["gradient"], progress=False,
                           target="predicted", graphcut_limit=0, curve_limit=0,
                           data_dir=tmp_path / "data")


@pytest.mark.parametrize("key, text, message", [
    ("__meta__", '"T-shirt/top, Trouser, Pullover"',
     "bad __meta__: expected a JSON object (class names, input shape, ...), got a string"),
    ("__meta__", "null", "bad __meta__: expected a JSON object (class names, input shape, ...), "
                         "got null"),
    ("__meta__", "[3, 64, 64]", "bad __meta__: expected a JSON object"),
    ("__architecture__", '{"0": "Conv2d"}',
     "bad architecture: __architecture__ must be a list of layer dicts, got an object"),
    ("__architecture__", "[" * 50_000 + "]" * 50_000, "__architecture__ cannot be read as JSON"),
])
def test_json_entries_of_the_wrong_type_are_one_line(capsys, tmp_path, model_path, image_path,
                                                     key, text, message):
    """These were a TypeError (or RecursionError) traceback and exit 1."""
    with np.load(model_path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = np.array(text)
    np.savez(tmp_path / "bad.npz", **arrays)
    code, out, err = run(capsys, "saliency", image_path, "--model", tmp_path / "bad.npz",
                         "--out", tmp_path / "o")
    assert code == 2 and out == ""
    one_error(err, "bad.npz: ", message)
    assert files(tmp_path / "o") is None


@pytest.mark.parametrize("meta, message", [
    (dict(dataset="cluttered"), "bad __meta__: dataset must be a JSON object, got a string"),
    (dict(cam_layer=["features"]), "bad __meta__: cam_layer must be the name of a node, "
                                   "got a list"),
])
def test_metadata_other_commands_read_is_checked_at_load(capsys, tmp_path, model_path,
                                                         image_path, meta, message):
    """evaluate reads meta["dataset"]["seed"], Grad-CAM meta["cam_layer"]: a wrong type
    was an AttributeError or a TypeError there, after the model had loaded."""
    bad = _rewrite(model_path, tmp_path / "bad.npz", **meta)
    code, out, err = run(capsys, "saliency", image_path, "--method", "grad_cam",
                         "--model", bad, "--out", tmp_path / "o")
    assert code == 2 and out == ""
    one_error(err, "bad.npz: ", message)
    assert files(tmp_path / "o") is None
