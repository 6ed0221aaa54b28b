"""minicnn.explain: titles that carry the truth when it is known, the out-of-distribution
warning, one-call figures for arrays, output names, the full-resolution overlay, and what
each function answers."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import explain as ex
from minicnn.io.images import Preprocess, read_image
from minicnn.io.samples import SAMPLES_DIR, sample_photo

SAMPLE = SAMPLES_DIR / "test00004_shirt.png"


@pytest.fixture(scope="module")
def model():
    return minicnn.load()


def test_a_shipped_sample_titles_its_true_class_prediction_score_and_probability(model):
    r = ex.explain(model, SAMPLE)
    title = r.figure.get_suptitle()
    assert title.startswith("test00004_shirt.png   true class: Shirt   predicted: ")
    assert f"score {r.scores[r.predicted]:.2f}, p = " in title
    assert r.true_name == "Shirt" and r.warning is None and r.box == (17, 6, 47, 42)
    assert "WARNING" not in r.figure.get_supxlabel()


def test_a_photo_is_warned_about_in_the_result_and_on_the_figure(model):
    r = ex.explain(model, sample_photo())
    assert r.warning.startswith("this image is not of the kind this model knows")
    assert "512x600 picture was shrunk and cropped to 64x64" in r.warning
    assert "10 classes (T-shirt/top, Trouser" in r.warning
    assert r.warning.endswith("minicnn fetch mobilenet_v2, then --model mobilenet_v2.")
    assert "\n" not in r.warning
    assert r.figure.get_supxlabel().startswith("WARNING: this image is not of the kind")
    assert "true class unknown" in r.figure.get_suptitle()
    assert r.true_label is r.true_name is r.box is None


def test_no_warning_for_models_made_for_photos(model):
    assert ex.out_of_distribution(model, (64, 64)) is None
    imagenet = minicnn.Sequential([minicnn.Flatten()], meta={"input_shape": [3, 224, 224]})
    assert ex.out_of_distribution(imagenet, (640, 480)) is None


def test_show_draws_a_methods_figure_for_an_array_in_one_call(model):
    from matplotlib.figure import Figure
    pixels = read_image(SAMPLE)
    fig = ex.show(model, pixels, "guided_backprop", target=6, true_label=6)
    assert isinstance(fig, Figure)
    assert "guided backprop" in fig.get_suptitle() and "true class: Shirt" in fig.get_suptitle()
    x = minicnn.io.images.to_input(pixels)
    assert "Grad-CAM" in ex.show(model, x, "grad_cam").get_suptitle()
    with pytest.raises(ValueError, match="the model takes 64x64; pass the file's path"):
        ex.show(model, np.zeros((32, 32, 3), np.uint8))


def test_output_stems_tell_same_named_files_apart(tmp_path):
    a, b, c = tmp_path / "x" / "a" / "pic.png", tmp_path / "y" / "a" / "pic.png", tmp_path / "o.png"
    stems = ex.output_stems([a, b, c])
    assert stems[str(c)] == "o"
    assert stems[str(a)] == "x-a_pic" and stems[str(b)] == "y-a_pic"
    assert ex.output_stems([a])[str(a)] == "pic"
    assert ex.slug("T-shirt/top") == "t-shirt-top" and ex.slug("Ankle boot") == "ankle-boot"


def test_ground_truth_comes_from_the_folders_samples_json(tmp_path):
    assert ex.ground_truth(SAMPLE)["class"] == "Shirt"
    Image.new("RGB", (64, 64)).save(tmp_path / "mine.png")
    assert ex.ground_truth(tmp_path / "mine.png") is None
    (tmp_path / "samples.json").write_text("{broken")
    assert ex.ground_truth(tmp_path / "mine.png") is None


def test_full_resolution_map_lies_where_the_network_looked(tmp_path):
    prep = Preprocess()                                    # shorter side 64, centre crop 64
    smap = np.random.default_rng(0).random((64, 64))
    Image.new("RGB", (64, 64)).save(tmp_path / "same.png")
    pixels, full = ex._full_resolution_map(tmp_path / "same.png", smap, prep)
    assert pixels.shape == (64, 64, 3)
    np.testing.assert_allclose(full, smap)                 # nothing to undo
    Image.new("RGB", (200, 100)).save(tmp_path / "wide.png")   # resized to 128x64, crop x 32..96
    pixels, full = ex._full_resolution_map(tmp_path / "wide.png", smap, prep)
    assert pixels.shape == (100, 200, 3) and full.shape == (100, 200)
    inside = np.isfinite(full)
    cols = np.flatnonzero(inside.any(axis=0))
    assert (cols[0], cols[-1]) == (50, 149) and inside[:, 50:150].all()


def test_explain_file_writes_figure_map_and_overlay_named_by_method_and_class(model, tmp_path):
    r = ex.explain_file(model, SAMPLE, "gradient", 3, tmp_path, dpi=60)
    assert Path(r.figure).name == "test00004_shirt_gradient_dress.png"
    assert Path(r.overlay).name == "test00004_shirt_gradient_dress_overlay.png"
    assert np.load(r.map).shape == (64, 64)
    with Image.open(r.overlay) as im:
        assert im.size == (64, 64)
    assert (r.method, r.target_name, r.true_name) == ("gradient", "Dress", "Shirt")
    assert r.correct == (r.predicted_name == "Shirt") and r.top[0][0] == r.predicted_name


def test_explain_file_answers_what_explain_found(model, tmp_path):
    e = ex.explain(model, SAMPLE)
    r = ex.explain_file(model, SAMPLE, out_dir=tmp_path, dpi=40)
    np.testing.assert_array_equal(np.load(r.map), e.saliency.astype(np.float32))
    assert (r.predicted_name, r.target_name, r.top) == (e.predicted_name, e.target_name, e.top)
    x0, y0, x1, y1 = e.box
    assert r.inside == (x0 <= e.peak[0] < x1 and y0 <= e.peak[1] < y1)


def test_localize_and_compare_and_trace_files_know_the_truth(model, tmp_path):
    loc = ex.localize_file(model, SAMPLE, out_dir=tmp_path, dpi=60)
    assert loc.true_box == (17, 6, 47, 42) and 0 <= loc.iou <= 1
    cmp = ex.compare_file(model, SAMPLE, out_dir=tmp_path, progress=False, dpi=60)
    assert cmp.true_name == "Shirt" and cmp.warning is None
    assert cmp.methods == tuple(minicnn.saliency.METHODS)
    tr = ex.trace_file(model, SAMPLE, out_dir=tmp_path, dpi=60)
    assert tr.layers[0] == "classifier.4" and tr.layers[-1] == "input"
    assert tr.true_name == loc.true_name == "Shirt"
    names = sorted(Path(r.figure).name for r in (loc, cmp, tr))
    assert [n.split("_")[2] for n in names] == ["compare", "localize-threshold", "trace"]
