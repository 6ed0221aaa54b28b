"""LRP and DeepLIFT in the experiments: the trace of relevance (its totals are the ledger's),
the evaluation (pointing game, localisation, deletion/insertion) and the sanity checks, where
the z-plus rule, like guided backpropagation, hardly notices a randomised classifier
(Sixt, Granz & Landgraf 2020, "When Explanations Lie", arXiv:1912.09818), while LRP-epsilon,
like the gradient, does."""
from functools import partial

import numpy as np
import pytest

import minicnn
from minicnn import saliency as S
from minicnn.experiments import evaluate, metrics
from minicnn.experiments.sanity import sanity_checks
from minicnn.experiments.trace import trace
from minicnn.io.datasets import DatasetNotFoundError, make_cluttered
from minicnn.io.images import Preprocess, to_input
from minicnn.io.weights import default_weights_path
from minicnn.viz.trace import ledger_figure, ledger_table, trace_figure
from tests.helpers.nets import small_net


def test_the_trace_of_relevance_holds_the_ledger_and_its_totals():
    model = small_net()
    x = np.random.default_rng(0).normal(size=(1, 3, 23, 23))
    result = trace(model, x, 2, method="lrp", rule="epsilon-alpha2-beta1")
    assert result["method"] == "lrp" and result["rule"] == "epsilon-alpha2-beta1"
    ledger = result["ledger"]
    assert [s["name"] for s in result["steps"]] == [e["name"] for e in ledger]
    for step, entry in zip(result["steps"], ledger):
        assert step["total"] == pytest.approx(entry["relevance_out"], rel=1e-12)
    assert result["steps"][0]["total"] == pytest.approx(model.forward(x)[0, 2], rel=1e-12)
    assert result["steps"][-1]["gradient_map"].shape == (23, 23)       # signed, channels summed
    np.testing.assert_allclose(result["steps"][-1]["gradient_map"],
                               result["steps"][-1]["gradient"].sum(axis=0))
    table = ledger_table(ledger)
    assert table.splitlines()[2].split()[:3] == ["10", "Linear", "epsilon"]
    import matplotlib
    matplotlib.use("Agg")
    assert trace_figure(result, "t").axes and ledger_figure(ledger).axes
    assert trace(model, x, 2)["ledger"] is None                       # the gradient's trace
    with pytest.raises(ValueError, match="unknown trace method 'deeplift'; valid choices are "
                                         "gradient, lrp"):
        trace(model, x, 2, method="deeplift")


@pytest.fixture(scope="module")
def shipped_and_images():
    if not default_weights_path().is_file():
        pytest.skip("the shipped model is not there")
    try:
        batch = make_cluttered(range(6), "test", 0)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not installed")
    model = minicnn.load()
    return model, batch, to_input(batch.images, Preprocess.from_meta(model.meta))


def test_the_evaluation_scores_lrp_and_deeplift_like_every_method(shipped_and_images):
    model, batch, x = shipped_and_images
    result = evaluate.run_evaluation(model, n_images=6, methods="lrp,deeplift", progress=False,
                                     slow_limit=0, graphcut_limit=0, curve_limit=2,
                                     curve_step=2048, baselines=False)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["lrp", "deeplift"]
    for r in rows.values():
        assert r["n_images"] == 6 and r["n_curves"] == 2
        for key in ("pointing_game", "threshold_iou50", "deletion_auc", "insertion_auc"):
            assert 0 <= r[key] <= 1, (r["method"], key)
    maps = S.to_map(S.lrp(model, x, batch.labels), x.shape[2:])
    hits = [metrics.pointing_hit(m, b) for m, b in zip(maps, batch.boxes)]
    assert rows["lrp"]["pointing_game"] == pytest.approx(np.mean(hits))


def test_under_cascading_randomisation_z_plus_keeps_its_map_and_epsilon_does_not(
        shipped_and_images):
    model, batch, x = shipped_and_images
    methods = {"z-plus": partial(S.lrp, rule="z-plus"), "epsilon": partial(S.lrp, rule="epsilon"),
               "epsilon-plus": S.lrp, "deeplift": S.deeplift}
    result = sanity_checks(model, x[:4], batch.labels[:4], methods)
    assert result["steps"][1] == "classifier.4"
    after_classifier = {m: result["spearman"][m][1].mean() for m in methods}
    assert after_classifier["z-plus"] > 0.95           # the classifier randomised, the same map
    assert after_classifier["epsilon"] < 0.8 and after_classifier["deeplift"] < 0.8
    for m in methods:                                  # the whole network random: another map
        assert result["spearman"][m][-1].mean() < 0.5, m
