"""minicnn.cluster.attribute on a real 2-worker LocalCluster: the store holds what one
process computes for the same images, the workers run on one thread with the model loaded
once, an unreadable image is recorded, a store of another job is refused."""
import csv
import shutil
import sys
import warnings

import numpy as np
import pytest

import minicnn

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from minicnn import saliency
from minicnn.cluster import store
from minicnn.cluster.attribute import attribute_dataset
from minicnn.cluster.workers import file_sha256, model_for, worker_threads
from minicnn.io.images import Preprocess, read_image, to_input
from tests.cluster.conftest import CLASSES, write_images
METHODS = ["gradient", "grad_cam"]


def expected(model_path, folder, names, methods=METHODS):
    """What one process computes for these images: {method: maps}, classes, scores, probs."""
    model = minicnn.load(model_path)
    prep = Preprocess.from_meta(model.meta)
    x = to_input(np.stack([read_image(folder / n, prep) for n in names]), prep)
    scores, targets, results = saliency.attribute(model, x, methods)
    p = np.exp(scores - scores.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    rows = np.arange(len(names))
    maps = {m: saliency.to_map(results[m], x.shape[2:]).astype(np.float32) for m in methods}
    return maps, targets, scores[rows, targets], p[rows, targets]


def test_store_holds_the_single_process_maps_and_predictions(cluster_client, model_path,
                                                             images, tmp_path):
    folder, names = images
    out = tmp_path / "maps.zarr"
    r = attribute_dataset(folder, "gradient,grad_cam", out, model=model_path, chunk=8,
                          client=cluster_client)
    assert r["n_images"] == 40 and r["chunks"] == 5 and r["computed"] == [0, 1, 2, 3, 4]
    assert r["skipped"] == 0 and r["unreadable"] == []
    g = zarr.open_group(str(out), mode="r")
    maps, classes, scores, probs = expected(model_path, folder, names)
    for m in METHODS:
        a = g[m]
        assert a.shape == (40, 32, 32) and a.dtype == np.float32 and a.chunks == (8, 32, 32)
        np.testing.assert_allclose(a[:], maps[m], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(g["class"][:], classes)
    np.testing.assert_allclose(g["score"][:], scores, rtol=1e-5)
    np.testing.assert_allclose(g["probability"][:], probs, rtol=1e-5)
    assert g["ok"][:].all() and list(g["image"][:]) == names and g["done"][:].all()
    assert g.attrs["methods"] == METHODS and g.attrs["model"]["sha256"] == \
        file_sha256(model_path)
    with open(r["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [t["image"] for t in table] == names
    assert [int(t["class"]) for t in table] == classes.tolist()
    assert {t["class_name"] for t in table} <= set(CLASSES)
    assert r["csv"] == tmp_path / "maps_predictions.csv"        # beside the store, not in it
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # Zarr warns of anything it does not know
        assert sorted(name for name, _ in g.members()) == sorted(
            METHODS + ["class", "score", "probability", "ok", "error", "image", "done"])
    # dask.array opens the arrays directly, chunk for chunk
    da = pytest.importorskip("dask.array")
    grad = da.from_zarr(str(out), component="gradient")
    assert grad.chunks[0] == (8,) * 5
    np.testing.assert_allclose(grad.mean(axis=(1, 2)).compute(), maps["gradient"].mean((1, 2)),
                               rtol=1e-5)


def test_workers_run_one_thread_and_load_the_model_once(cluster_client, model_path):
    for addr, settings in cluster_client.run(worker_threads).items():
        assert settings["minicnn"] == 1, addr
        assert settings["blas"] and set(settings["blas"]) == {1}, (addr, settings)
    sha = file_sha256(model_path)

    def model_id(path, sha):
        return id(model_for(path, sha))

    for addr in cluster_client.scheduler_info()["workers"]:
        ids = cluster_client.gather([cluster_client.submit(model_id, str(model_path), sha,
                                                           pure=False, workers=[addr])
                                     for _ in range(3)])
        assert len(set(ids)) == 1, addr           # one worker thread: one model, loaded once
    with pytest.raises(ValueError, match="sha256"):
        cluster_client.submit(model_id, str(model_path), "0" * 64, pure=False).result()


def test_an_unreadable_image_is_recorded_and_the_others_are_computed(cluster_client,
                                                                     model_path, tmp_path):
    folder = tmp_path / "imgs"
    names = write_images(folder, 10, seed=3)
    (folder / names[3]).write_bytes(b"not an image at all")          # a broken .png
    (folder / "notes.txt").write_text("not an image suffix: not listed")
    r = attribute_dataset(folder, ["gradient"], tmp_path / "s.zarr", model=model_path,
                          chunk=4, client=cluster_client)
    assert r["n_images"] == 10
    assert len(r["unreadable"]) == 1 and r["unreadable"][0][0] == names[3]
    assert names[3] in r["unreadable"][0][1] and "not an image" in r["unreadable"][0][1]
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    ok = g["ok"][:]
    assert ok.tolist() == [i != 3 for i in range(10)]
    assert np.isnan(g["gradient"][3]).all() and g["class"][3] == -1 and np.isnan(g["score"][3])
    good = [n for i, n in enumerate(names) if i != 3]
    maps, *_ = expected(model_path, folder, good, ["gradient"])
    np.testing.assert_allclose(g["gradient"][:][ok], maps["gradient"], rtol=1e-5, atol=1e-7)
    with open(r["csv"]) as f:
        row = list(csv.DictReader(f))[3]
    assert row["ok"] == "False" and names[3] in row["error"] and row["class"] == "-1"


def test_a_store_of_another_model_or_method_set_is_refused_unless_overwrite(
        cluster_client, model_path, other_model_path, tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 6)
    out = tmp_path / "s.zarr"
    attribute_dataset(folder, ["gradient"], out, model=model_path, chunk=4,
                      client=cluster_client)
    with pytest.raises(store.StoreError, match=r"another method set \(gradient, asked "
                                               r"gradient,grad_cam\); use --overwrite"):
        attribute_dataset(folder, METHODS, out, model=model_path, chunk=4,
                          client=cluster_client)
    with pytest.raises(store.StoreError, match=r"another model \(weights sha256"):
        attribute_dataset(folder, ["gradient"], out, model=other_model_path, chunk=4,
                          client=cluster_client)
    r = attribute_dataset(folder, METHODS, out, model=other_model_path, chunk=4,
                          overwrite=True, client=cluster_client)
    assert r["computed"] == [0, 1]
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["methods"] == METHODS and "grad_cam" in g
    # a folder that is not a minicnn store is never replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(store.StoreError, match="not a minicnn map store"):
        attribute_dataset(folder, ["gradient"], other, model=model_path, overwrite=True,
                          client=cluster_client)
    assert (other / "keep.txt").read_text() == "mine"
    shutil.rmtree(other)


def test_the_test_split_as_source(cluster_client, tmp_path):
    """--split test -n N: the generated images, by index, with the shipped model."""
    from minicnn.io.datasets import DatasetNotFoundError, make_cluttered
    try:
        batch = make_cluttered(range(20), "test", 0)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not installed")
    model = minicnn.load()
    seed = int(model.meta.get("dataset", {}).get("seed", 0))
    batch = make_cluttered(range(20), "test", seed)
    r = attribute_dataset(split="test", n=20, methods=["gradient"], out=tmp_path / "t.zarr",
                          chunk=8, client=cluster_client)
    assert r["n_images"] == 20 and r["computed"] == [0, 1, 2]
    g = zarr.open_group(str(tmp_path / "t.zarr"), mode="r")
    assert list(g["image"][:]) == [str(i) for i in range(20)]
    assert g.attrs["source"] == {"kind": "test split", "seed": seed}
    x = to_input(batch.images, Preprocess.from_meta(model.meta))
    _, targets, results = saliency.attribute(model, x, ["gradient"])
    np.testing.assert_array_equal(g["class"][:], targets)
    np.testing.assert_allclose(g["gradient"][:], saliency.to_map(results["gradient"], (64, 64)),
                               rtol=1e-4, atol=1e-6)


def test_a_store_of_lrp_maps_is_not_resumed_under_another_rule(tmp_path, monkeypatch):
    """The store names the LRP rule its maps were made with (the default composite), so a
    minicnn whose default differs refuses to resume it instead of mixing two rules' maps;
    stores without LRP maps do not depend on it."""
    names = ["a.png", "b.png"]

    def attrs(methods):
        return store.identity("0" * 64, None, methods, (8, 8), 2, names, "folder")

    store.prepare(tmp_path / "lrp.zarr", attrs(["lrp"]), names)
    store.prepare(tmp_path / "grad.zarr", attrs(["gradient"]), names)
    assert store.prepare(tmp_path / "lrp.zarr", attrs(["lrp"]), names) is not None  # resumed
    lrp_module = sys.modules["minicnn.saliency.lrp"]    # (saliency.lrp is the method)
    monkeypatch.setattr(lrp_module, "DEFAULT_RULE", "z-plus")
    with pytest.raises(store.StoreError, match=r"another lrp rule \('epsilon-plus', asked "
                                               r"'z-plus'\); use --overwrite"):
        store.prepare(tmp_path / "lrp.zarr", attrs(["lrp"]), names)
    store.prepare(tmp_path / "grad.zarr", attrs(["gradient"]), names)               # resumed
