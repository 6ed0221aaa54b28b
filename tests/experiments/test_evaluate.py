"""minicnn.experiments.evaluate end to end on a few cluttered test images (the shipped model if present,
else a small random network), checked against the metric functions it is built from."""
import csv
import json

import numpy as np
import pytest

import minicnn
from minicnn.experiments import evaluate, metrics
from minicnn import saliency
from minicnn.io.datasets import DatasetNotFoundError, make_cluttered
from minicnn.io.images import Preprocess, to_input
from minicnn.io.weights import default_weights_path
from minicnn.viz.report import write_evaluation


def random_model():
    """(N, 3, 64, 64) -> (N, 10): one conv block and a linear head, random weights."""
    rng = np.random.default_rng(0)
    model = minicnn.Sequential([
        ("features.0", minicnn.Conv2d(3, 6, 3, padding=1, rng=rng)),
        ("features.1", minicnn.ReLU()), ("features.2", minicnn.MaxPool2d(4)),
        ("features.3", minicnn.Conv2d(6, 8, 3, padding=1, rng=rng)),
        ("features.4", minicnn.ReLU()), ("features.5", minicnn.MaxPool2d(4)),
        ("classifier.0", minicnn.Flatten()), ("classifier.1", minicnn.Linear(128, 10, rng=rng))])
    model.meta = {"input_shape": [3, 64, 64], "dataset": {"seed": 0}}
    return model


@pytest.fixture(scope="module")
def model():
    try:
        make_cluttered([0], "test", 0)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not installed")
    return minicnn.load() if default_weights_path().is_file() else random_model()


def test_end_to_end_files_ranges_and_consistency(model, tmp_path):
    graphcut = 4 if _has_cv2() else 0
    result = evaluate.run_evaluation(
        model, n_images=8, methods="gradient,grad_cam", progress=False,
        batch_size=5, slow_limit=0, graphcut_limit=graphcut, curve_limit=2, curve_step=2048)
    write_evaluation(result, tmp_path)
    for name in ("results.md", "results.csv", "results.json", "localization.png", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not list(tmp_path.glob(".*"))                          # no temporary files left
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["gradient", "grad_cam", "random", "center_gaussian", "sobel",
                          "spectral_residual", "fine_grained"]
    for r in rows.values():
        assert r["n_images"] == 8 and r["n_graphcut"] == graphcut and r["n_curves"] == 2
        for key in ("pointing_game", "threshold_iou50", "threshold_precision",
                    "deletion_auc", "insertion_auc"):
            assert 0 <= r[key] <= 1, (r["method"], key)
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["method"] for t in table] == list(rows)
    assert float(table[0]["pointing_game"]) == pytest.approx(rows["gradient"]["pointing_game"])
    assert json.loads((tmp_path / "results.json").read_text())["settings"]["dataset_seed"] == \
        (model.meta.get("dataset", {}).get("seed", 0))
    assert "| gradient |" in (tmp_path / "results.md").read_text()

    # the same numbers straight from the metric functions, for the vanilla gradient
    seed = result["settings"]["dataset_seed"]
    batch = make_cluttered(range(8), "test", seed)
    x = to_input(batch.images, Preprocess.from_meta(model.meta))
    maps = saliency.saliency_map(saliency.gradient(model, x, batch.labels))
    hits = [metrics.pointing_hit(m, b) for m, b in zip(maps, batch.boxes)]
    assert rows["gradient"]["pointing_game"] == pytest.approx(np.mean(hits))
    f, d = metrics.deletion_curve(model, x[:2], maps[:2], batch.labels[:2], step=2048)
    assert rows["gradient"]["deletion_auc"] == pytest.approx(metrics.curve_auc(f, d).mean())
    np.testing.assert_allclose(result["curves"]["gradient"]["deletion"], d.mean(axis=0))


def test_same_call_same_numbers(model):
    model = random_model()                              # (the fixture skips without the data)
    kwargs = dict(n_images=4, methods=["gradient", "smoothgrad"], progress=False,
                  graphcut_limit=0, curve_limit=2, curve_step=2048)   # SmoothGrad draws noise
    a, b = evaluate.run_evaluation(model, **kwargs), evaluate.run_evaluation(model, **kwargs)
    assert json.dumps(a["rows"]) == json.dumps(b["rows"])   # (nan != nan in a dict compare)


def test_bad_names_and_values(model):
    with pytest.raises(ValueError, match="unknown method 'gradcam'; valid methods are "
                                         "gradient, guided_backprop, .*, occlusion, lrp, "
                                         "deeplift, random, center_gaussian, sobel"):
        evaluate.run_evaluation(random_model(), n_images=1, methods=["gradcam"])
    with pytest.raises(ValueError, match="unknown target 'label'; valid choices are true, "
                                         "predicted"):
        evaluate.run_evaluation(random_model(), n_images=1, target="label")
    with pytest.raises(TypeError, match="n_images must be an int >= 1, got 2.5"):
        evaluate.run_evaluation(random_model(), n_images=2.5)
    with pytest.raises(ValueError, match="curve_limit must be an int >= 0, got -1"):
        evaluate.run_evaluation(random_model(), n_images=1, curve_limit=-1)


def _has_cv2():
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def test_missing_opencv_fails_before_any_work(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r'minicnn\[localize\]".*graphcut_limit=0'):
        evaluate.run_evaluation(random_model(), n_images=1, graphcut_limit=1)


def test_progress_bar_weighs_work_by_its_cost(model, capsys, monkeypatch):
    """The bar counts passes, not (image, method) pairs: the slow methods and the curves run
    on the first images only, and an even count would misjudge the time left."""
    steps = []
    real = evaluate.progress_bar

    def recording_bar(total, label, enabled=True, percent=False):
        bar = real(total, label, enabled, percent)
        update = bar.update
        bar.update = lambda n=1: (steps.append(n), update(n))
        return bar

    monkeypatch.setattr(evaluate, "progress_bar", recording_bar)
    evaluate.run_evaluation(random_model(), n_images=3, methods=["gradient", "smoothgrad"],
                            progress=True, graphcut_limit=0, curve_limit=1, slow_limit=1,
                            batch_size=2)
    err = capsys.readouterr().err
    assert "] 100% " in err.splitlines()[-1]
    cost = saliency.METHODS["smoothgrad"].cost()
    # batch 1 (images 0, 1): gradient 2 + curve 11, smoothgrad 1 image (50) + curve 11,
    # then the 5 baselines (no pass) + curve 11 each; batch 2 (image 2): gradient 1, baselines 0
    assert steps == [2 + 11, cost + 11, 11, 11, 11, 11, 11, 1, 0, 0, 0, 0, 0]


def test_opencv_baselines_are_left_out_without_opencv_and_named_when_asked(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert evaluate.available_baselines() == ["random", "center_gaussian", "sobel"]
    with pytest.raises(ImportError, match=r"contrib build: pip install \"minicnn\[localize\]\""):
        evaluate.available_baselines(["sobel", "fine_grained"])
    with pytest.raises(ValueError, match="unknown baseline map 'itti'"):
        evaluate.available_baselines(["itti"])
    assert evaluate.available_baselines(False) == []
