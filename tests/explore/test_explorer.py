"""The explorer's answers (minicnn/explore/explorer.py), without HTTP or a browser: each
method's map is the one ``minicnn saliency`` writes, another class reuses the forward pass,
options, layers and LRP's rule reach the method, LRP's ledger is the model's, the trace is
``experiments.trace`` (of the gradient, or of LRP's relevance), an answer kept follows its
file, and bad requests and uploads are one line each.

Equal "to float32 rounding": the fast convolution keeps its scratch buffers per thread, and
the last bits of a float32 product depend on where those buffers lie, so the map computed in
the explorer's worker thread and the map the command line computes in its main thread can
differ by a few epsilons of the map's maximum (measured: up to ~10 for one-pass methods; ~900
for integrated gradients, whose 50 passes cancel each other out).
"""
import io
import os

import numpy as np
import pytest
from PIL import Image

from minicnn import saliency
from minicnn.cli import main
from minicnn.experiments.trace import trace
from minicnn.explore import LEDGER_METHODS, Explorer, ExploreError
from minicnn.explore.explorer import LEDGER_COLUMNS, MAX_UPLOAD_BYTES, MAX_UPLOADS
from minicnn.io.images import ImageReadError, Preprocess, read_image, to_input
from minicnn.io.samples import SAMPLES_DIR, load_sample_index
from minicnn.io.weights import load

EPS = float(np.finfo(np.float32).eps)
SLACK = {"integrated_gradients": 4096}           # epsilons of the map's maximum, else 64


def same_map(page, cli, method="gradient"):
    page, cli = np.asarray(page, np.float64), np.asarray(cli, np.float64)
    assert page.shape == cli.shape
    np.testing.assert_allclose(page, cli, rtol=0,
                               atol=SLACK.get(method, 64) * EPS * np.abs(cli).max())


@pytest.fixture(scope="module")
def ex():
    explorer = Explorer()
    explorer.add_network(load(None), "shipped model", kind="shipped")
    explorer.add_samples()
    yield explorer
    explorer.close()


@pytest.fixture(scope="module")
def model():
    return load(None)


def sample(ex, class_name="Ankle boot"):
    """The id and path of the first shipped sample of a class."""
    name = next(n for n, i in load_sample_index(SAMPLES_DIR).items() if i["class"] == class_name)
    [pic] = [p for p in ex._pictures.values() if p.path == SAMPLES_DIR / name]
    return pic.id, pic.path


def cli_map(tmp_path, path, method, *options):
    """The .npy ``minicnn saliency`` writes for these inputs."""
    out = tmp_path / f"cli-{method}-{len(list(tmp_path.iterdir()))}"
    assert main(["saliency", str(path), "--method", method, "--out", str(out), *options]) == 0
    [npy] = out.glob("*.npy")
    return np.load(npy)


@pytest.mark.parametrize("method", list(saliency.METHODS))
def test_every_methods_map_is_the_command_lines(ex, tmp_path, method):
    image, path = sample(ex, "Sneaker")
    answer = ex.explain("net0", image, method)
    same_map(answer["map"], cli_map(tmp_path, path, method), method)
    assert answer["map"].dtype == np.float32 and answer["map"].shape == (64, 64)
    coarse = saliency.METHODS[method].returns == "coarse"
    assert (answer["coarse"] is not None) == coarse
    assert (answer["attribution"] is None) == coarse
    if not coarse:   # the signed map: the attribution summed over channels
        np.testing.assert_allclose(answer["signed"], answer["attribution"].sum(axis=0),
                                   rtol=1e-6, atol=1e-7 * np.abs(answer["signed"]).max())


def test_another_class_another_layer_reuse_the_forward_pass(ex, model, tmp_path):
    image, path = sample(ex, "Shirt")
    first = ex.explain("net0", image, "gradient")
    assert first["forward"] == "computed"
    runs = ex._networks["net0"].model.forwards
    for target, method, layer in [(3, "gradient", None), (7, "guided_backprop", None),
                                  (7, "grad_cam", "features.17"), (2, "lrp", None),
                                  (1, "deconvnet", None)]:
        answer = ex.explain("net0", image, method, target=target, layer=layer)
        assert answer["forward"] == "reused" and answer["target"] == target
    assert ex._networks["net0"].model.forwards == runs        # no forward pass at all
    same_map(answer["map"], cli_map(tmp_path, path, "deconvnet", "--target", "1"))
    layer = ex.explain("net0", image, "grad_cam", target=7, layer="features.17")
    same_map(layer["map"], cli_map(tmp_path, path, "grad_cam", "--target", "7",
                                   "--layer", "features.17"))
    x = to_input(read_image(path, Preprocess()), Preprocess())
    model.forward(x)
    assert layer["coarse"].shape == model.activation("features.17").shape[2:]
    same_map(ex.explain("net0", image, "gradient", target=3)["map"],
             saliency.to_map(saliency.gradient(model, x, 3), (64, 64))[0])


def test_the_pages_options_reach_the_method(ex, model):
    image, path = sample(ex, "Bag")
    x = to_input(read_image(path, Preprocess()), Preprocess())
    answer = ex.explain("net0", image, "smoothgrad", target=8,
                        options={"n_samples": "6", "noise_level": "0.3", "kind": "vargrad",
                                 "method": "guided_backprop"})
    expected = saliency.smoothgrad(model, x, 8, method=saliency.guided_backprop, n_samples=6,
                                   noise_level=0.3, kind="vargrad", seed=0)
    same_map(answer["map"], saliency.to_map(expected, (64, 64))[0])
    answer = ex.explain("net0", image, "occlusion", options={"window": "16", "stride": "8"})
    expected = saliency.occlusion(model, x, answer["target"], window=16, stride=8)
    same_map(answer["map"], saliency.to_map(expected, (64, 64))[0])


@pytest.mark.parametrize("options, message", [
    ({"n_samples": "0"}, "smoothgrad: n_samples must lie in 1..500, got 0"),
    ({"n_samples": "many"}, "smoothgrad: n_samples must be a number (int), got 'many'"),
    ({"kind": "loud"}, "smoothgrad: kind must be one of smoothgrad, smoothgrad_sq, vargrad, "
                       "got 'loud'"),
    ({"seed": "3"}, "smoothgrad takes no option 'seed': its options are n_samples, "
                    "noise_level, kind, method"),
])
def test_a_bad_option_is_one_line(ex, options, message):
    image, _ = sample(ex)
    with pytest.raises(ExploreError) as e:
        ex.explain("net0", image, "smoothgrad", options=options)
    assert str(e.value) == message


def test_unknown_choices_are_one_line(ex):
    image, _ = sample(ex)
    for call, message in [
        (lambda: ex.explain("nope", image, "gradient"), "unknown network 'nope'"),
        (lambda: ex.explain("net0", "nope", "gradient"), "unknown image 'nope'"),
        (lambda: ex.explain("net0", image, "lime"), "unknown method 'lime'"),
        (lambda: ex.explain("net0", image, "gradient", target=10),
         "unknown class index 10: valid indices are 0..9"),
        (lambda: ex.explain("net0", image, "gradient", target="-1"),
         "a class is given by its index, got '-1'"),
        (lambda: ex.explain("net0", image, "grad_cam", layer="classifier.1"),
         "unknown layer 'classifier.1' for Grad-CAM: choose a node or block with (C, h, w) "
         "output, e.g. 'features.20'"),
        (lambda: ex.explain("net0", image, "occlusion", options={"window": "100"}),
         "occlusion: window (100, 100) is larger than the image (64, 64)"),
    ]:
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value).startswith(message), str(e.value)


def test_the_trace_is_experiments_trace(ex, model):
    image, path = sample(ex, "Coat")
    x = to_input(read_image(path, Preprocess()), Preprocess())
    answer = ex.trace("net0", image, 2)
    expected = trace(model, x, 2)
    assert [s["name"] for s in answer["steps"]] == [s["name"] for s in expected["steps"]]
    assert answer["steps"][0]["name"] == model.names[-1] and answer["steps"][-1]["name"] == "input"
    for got, want in zip(answer["steps"], expected["steps"]):
        assert got["shape"] == list(want["shape"])
        same_map(got["gradient"], want["gradient_map"])
        same_map(got["activation"], want["activation_map"])
    assert answer["steps"][0]["gradient"].tolist() == np.eye(10)[2].tolist()   # the one-hot
    assert ex.trace("net0", image, 2)["forward"] == "reused"


def test_classify_says_what_the_command_line_says(ex, tmp_path, capsys):
    image, path = sample(ex, "Trouser")
    answer = ex.classify("net0", image)
    assert main(["saliency", str(path), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    for rank, top in enumerate(answer["top"], start=1):    # "  1. Trouser  score 4.123  p = 0.9"
        assert printed[rank].split()[1] == top["name"].split()[0]
        assert f"{top['score']:8.3f}" in printed[rank] and f"p = {top['probability']:.3f}" in printed[rank]
    assert answer["true"]["name"] == "Trouser" and answer["warning"] is None
    assert answer["pixels"].tolist() == read_image(path, Preprocess()).tolist()
    assert "features.20" in answer["layers"] and answer["default_layer"] == "features.20"


def test_a_photo_gets_the_out_of_distribution_warning(ex):
    [photo] = [p.id for p in ex._pictures.values() if p.path.name == "grace_hopper.jpg"]
    assert ex.classify("net0", photo)["warning"].startswith(
        "this image is not of the kind this model knows")


def png(size=(40, 30), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_bad_upload_is_the_command_lines_line_and_the_next_one_works(ex, tmp_path):
    with pytest.raises(ImageReadError) as e:
        ex.upload("holiday/broken.png", b"this is not an image")
    assert str(e.value) == "broken.png: not an image Pillow can read"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    assert main(["saliency", str(bad), "--out", str(tmp_path)]) == 2   # the same words
    with pytest.raises(ImageReadError) as e:
        ex.upload("strip.png", png((1, 30)))
    assert str(e.value) == ("strip.png: 1x30: its longer side is more than 20 times its "
                            "shorter side (the limit on the aspect ratio)")
    with pytest.raises(ImageReadError) as e:
        ex.upload("huge.png", bytes(MAX_UPLOAD_BYTES + 1))
    assert str(e.value) == (f"huge.png: {MAX_UPLOAD_BYTES + 1:,} bytes, more than the upload "
                            f"limit of {MAX_UPLOAD_BYTES:,}")
    good = ex.upload("red.png", png())
    assert good["label"] == "red.png (uploaded)"
    assert ex.upload("again.png", png())["id"] == good["id"]           # the same bytes
    answer = ex.explain("net0", good["id"], "gradient")
    assert answer["map"].shape == (64, 64)
    assert ex.classify("net0", good["id"])["warning"]                  # 40x30 is not 64x64


def test_old_uploads_are_forgotten(ex):
    ids = [ex.upload(f"u{k}.png", png(colour=(k, 0, 0)))["id"] for k in range(MAX_UPLOADS + 1)]
    with pytest.raises(ExploreError, match="drop it again"):
        ex.classify("net0", ids[0])
    assert ex.classify("net0", ids[-1])["top"]


def test_an_answer_kept_follows_its_file(ex, tmp_path):
    path = tmp_path / "mine.png"
    Image.new("RGB", (64, 64), (10, 200, 10)).save(path)
    image = ex.add_image(path, Preprocess())
    before = ex.explain("net0", image, "gradient", target=4)["map"]
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    os.utime(path, ns=(1, 1))           # a new modification time, whatever the clock says
    after = ex.explain("net0", image, "gradient", target=4)
    assert after["forward"] == "computed" and not np.array_equal(after["map"], before)
    same_map(after["map"], cli_map(tmp_path, path, "gradient", "--target", "4"))


def test_a_bad_file_named_is_refused_before_the_page_offers_it(ex, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png: not an image Pillow can read"):
        ex.add_image(bad, Preprocess())
    assert str(bad) not in [p["label"] for p in ex.info()["images"]]


def test_info_lists_what_the_page_offers(ex):
    info = ex.info()
    assert [m["name"] for m in info["methods"]] == list(saliency.METHODS)
    assert {m["name"] for m in info["methods"] if m["layer"]} == {"grad_cam", "guided_grad_cam"}
    assert info["colormaps"]["map"]["lut"].shape == (256, 3)
    assert len([i for i in info["images"] if i["group"] == "sample"]) == 21   # 20 + the photo
    assert info["images"][0]["label"].startswith("test") and info["networks"][0]["id"] == "net0"


def test_the_first_image_named_is_the_pages_first(tmp_path):
    explorer = Explorer()
    explorer.add_network(load(None), "shipped model", kind="shipped")
    explorer.add_samples()
    assert explorer.first_image == explorer.info()["images"][0]["id"]      # a sample
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for p in paths:
        Image.new("RGB", (64, 64)).save(p)
    first = explorer.add_image(paths[0], Preprocess())
    explorer.add_image(paths[1], Preprocess())
    assert explorer.info()["first"] == {"network": explorer.first_network, "image": first}
    explorer.close()


def test_lrps_rule_reaches_the_method(ex, model, tmp_path):
    image, path = sample(ex, "Pullover")
    x = to_input(read_image(path, Preprocess()), Preprocess())
    default = ex.explain("net0", image, "lrp", target=4)
    assert default["rule"] == saliency.DEFAULT_RULE
    same_map(default["map"], cli_map(tmp_path, path, "lrp", "--target", "4"), "lrp")
    for rule in ["z-plus", "epsilon-gamma-box", "Alpha2_Beta1"]:   # any name --rule takes
        answer = ex.explain("net0", image, "lrp", target=4, options={"rule": rule})
        assert answer["forward"] == "reused"
        assert answer["rule"] == saliency.describe_rule(rule)
        same_map(answer["attribution"], saliency.lrp(model, x, 4, rule=rule)[0], "lrp")
        same_map(answer["map"], cli_map(tmp_path, path, "lrp", "--target", "4", "--rule", rule),
                 "lrp")


def test_lrps_ledger_is_the_models(ex, model):
    """The page's table holds ``model.ledger()`` of the same pass, row by row, and its totals
    add up as ``viz.trace.ledger_table``'s last line: score = pixels + absorbed + residual."""
    image, path = sample(ex, "Bag")
    x = to_input(read_image(path, Preprocess()), Preprocess())
    ledger = ex.explain("net0", image, "lrp", target=8, options={"rule": "z-plus"})["ledger"]
    scores = model.forward(x)                                      # (1, 10)
    relevance = model.backward(saliency.relevance_seed(scores, [8]),
                               rule=saliency.resolve_rule("z-plus", model))   # (1, 3, 64, 64)
    expected = model.ledger()
    assert [c["key"] for c in ledger["columns"]] == [key for key, _, _ in LEDGER_COLUMNS]
    assert [c["label"] for c in ledger["columns"]] == [
        "node", "layer", "rule", "relevance out", "passed on", "bias", "stabiliser",
        "BatchNorm", "residual"]
    assert len(ledger["rows"]) == len(expected) == len(model.names) + 1
    score = float(scores[0, 8])
    tol = 1e-5 * score                   # float32 rounding: another thread, other buffers
    for row, entry in zip(ledger["rows"], expected):
        cells = dict(zip([key for key, _, _ in LEDGER_COLUMNS], row))
        assert [cells["name"], cells["layer"], cells["rule"]] == [entry["name"], entry["layer"],
                                                                  entry["rule"]]
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                assert cells[key] == pytest.approx(float(value[0]), abs=tol), (entry["name"], key)
    totals = ledger["totals"]
    assert totals["score"] == score                      # the top row: the explained score
    assert totals["input"] == pytest.approx(float(relevance.sum(dtype=np.float64)), abs=tol)
    for term in ("bias", "stabiliser", "batchnorm", "residual"):
        assert totals[term] == pytest.approx(
            sum(float(e[term][0]) for e in expected[:-1]), abs=tol)
    assert totals["score"] == pytest.approx(
        totals["input"] + totals["bias"] + totals["stabiliser"] + totals["batchnorm"]
        + totals["residual"], abs=1e-9 * score)


def test_only_lrp_has_a_ledger(ex):
    image, _ = sample(ex)
    assert LEDGER_METHODS == frozenset({"lrp"})
    info = {m["name"]: m for m in ex.info()["methods"]}
    assert {name for name, m in info.items() if m["ledger"]} == {"lrp"}
    assert info["lrp"]["options"] == [{"name": "rule", "kind": "choice",
                                       "default": saliency.DEFAULT_RULE, "low": None,
                                       "high": None, "choices": tuple(saliency.rule_names())}]
    for method in ["gradient", "deeplift"]:
        assert ex.explain("net0", image, method)["ledger"] is None


def test_the_lrp_trace_is_experiments_trace(ex, model):
    image, path = sample(ex, "Dress")
    x = to_input(read_image(path, Preprocess()), Preprocess())
    ex.classify("net0", image)                              # the forward pass, remembered
    answer = ex.trace("net0", image, 3, "lrp", "gamma")
    assert answer["forward"] == "reused"                    # one backward pass
    expected = trace(model, x, 3, "sum", "lrp", "gamma")
    assert answer["method"] == "lrp" and answer["rule"] == expected["rule"] == "gamma 0.25"
    assert [s["name"] for s in answer["steps"]] == [s["name"] for s in expected["steps"]]
    for got, want in zip(answer["steps"], expected["steps"]):
        same_map(got["gradient"], want["gradient_map"], "lrp")     # signed: relevance's sum
        assert got["total"] == pytest.approx(want["total"], rel=1e-5, abs=1e-6)
    assert answer["steps"][0]["total"] == float(model.forward(x)[0, 3])   # starts as S_c
    assert ex.trace("net0", image, 3)["method"] == "gradient"          # the default
    default = ex.trace("net0", image, 3, "lrp")
    assert default["rule"] == saliency.describe_rule(saliency.DEFAULT_RULE)


def test_a_bad_rule_is_the_command_lines_line(ex, tmp_path, capsys):
    """The words ``minicnn saliency --method lrp --rule NAME`` prints, for the map and the
    trace; and a rule for the gradient's trace, as ``minicnn trace --rule`` says it."""
    image, path = sample(ex)
    capsys.readouterr()
    assert main(["saliency", str(path), "--method", "lrp", "--rule", "nope",
                 "--out", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip().removeprefix("minicnn: error: ")
    assert line.startswith("--rule nope: unknown LRP rule or composite 'nope': composites are ")
    for call in [lambda: ex.explain("net0", image, "lrp", options={"rule": "nope"}),
                 lambda: ex.trace("net0", image, None, "lrp", "nope")]:
        with pytest.raises(ExploreError) as e:
            call()
        assert str(e.value) == line
    assert main(["trace", str(path), "--rule", "z-plus", "--out", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip().removeprefix("minicnn: error: ")
    with pytest.raises(ExploreError) as e:
        ex.trace("net0", image, None, "gradient", "z-plus")
    assert str(e.value) == line
    with pytest.raises(ExploreError, match="the trace follows gradient or lrp, got 'guided'"):
        ex.trace("net0", image, None, "guided")
    with pytest.raises(ExploreError, match="gradient takes no option 'rule'"):
        ex.explain("net0", image, "gradient", options={"rule": "z-plus"})
