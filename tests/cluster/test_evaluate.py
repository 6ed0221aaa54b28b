"""minicnn.cluster.evaluate: the evaluation split into ranges over two workers gives the
very numbers of the single-process run (issue 14 item 3).

"The same" means bit for bit, compared as JSON text (NaN, e.g. graph cut's columns when it
is skipped, is not == to itself in a dict). The single-process run is made on one minicnn
thread and one BLAS thread, as every worker runs: with two threads the matrix products are
split differently, and the deletion/insertion areas, which come from float32 forward passes,
move in the 9th digit (measured: at most 5e-9 on these 23 images)."""
import json

import pytest


pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")


from minicnn.cluster.evaluate import evaluate_on_cluster
from minicnn.experiments import evaluate
from minicnn.io.datasets import DatasetNotFoundError, make_cluttered
from tests.experiments.test_evaluate import random_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    try:
        make_cluttered([0], "test", 0)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not installed")
    import minicnn
    model = random_model()
    return minicnn.save(model, tmp_path_factory.mktemp("eval") / "m.npz", meta=model.meta)


def as_text(result) -> str:
    """The result without its timing, as JSON text: equal text, equal numbers."""
    return json.dumps({**result, "settings": {k: v for k, v in result["settings"].items()
                                              if k != "seconds"}}, sort_keys=True)


def test_cluster_evaluation_equals_the_single_process_one(cluster_client, model_file,
                                                          engine_setting):
    import minicnn
    from threadpoolctl import threadpool_limits
    engine_setting("num_threads", 1)                           # as inside every worker
    options = dict(n_images=23, methods=["gradient", "grad_cam", "integrated_gradients"],
                   batch_size=5, slow_limit=7, graphcut_limit=0, curve_limit=12,
                   curve_step=1024, baselines=["random", "center_gaussian", "sobel"])
    with threadpool_limits(limits=1, user_api="blas"):
        one = evaluate.run_evaluation(minicnn.load(model_file), progress=False, **options)
    many = evaluate_on_cluster(model_file, client=cluster_client, **options)
    assert as_text(many) == as_text(one)                        # exactly, not approximately
    assert {r["method"]: r["n_curves"] for r in one["rows"]}["gradient"] == 12
    assert evaluate.plan_evaluation(minicnn.load(model_file), **options).ranges() == [
        (0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]


def test_the_plan_checks_before_any_work(model_file):
    import minicnn
    with pytest.raises(ValueError, match="unknown method 'gradcam'"):
        evaluate_on_cluster(model_file, workers=1, n_images=2, methods=["gradcam"])
    with pytest.raises(TypeError, match="batches must be an int >= 1"):
        evaluate.plan_evaluation(minicnn.load(model_file), n_images=3).ranges(1.5)
