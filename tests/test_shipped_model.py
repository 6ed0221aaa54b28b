"""The shipped model (minicnn/io/data/cluttered_fmnist.npz) and the sample images beside it in
minicnn/io/data/samples/ (package data; weights/README.md gives their provenance).

None of these tests needs the Fashion-MNIST files: the samples are committed PNGs.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn import saliency
from minicnn.io.datasets import CLASS_NAMES
from minicnn.io.images import Preprocess, read_image, to_input

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "minicnn" / "io" / "data" / "samples"


@pytest.fixture(scope="module")
def shipped():
    return minicnn.load()


@pytest.fixture(scope="module")
def samples(shipped):
    index = json.loads((SAMPLES / "samples.json").read_text())["images"]
    prep = Preprocess.from_meta(shipped.meta)
    x = np.concatenate([to_input(read_image(SAMPLES / name, prep), prep) for name in index])
    labels = np.array([info["label"] for info in index.values()])
    return x, labels, index


def test_metadata_is_complete(shipped):
    meta = shipped.meta
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["input_shape"] == [3, 64, 64]
    assert meta["test_accuracy"] >= 0.80
    assert {"training_command", "dataset", "preprocess", "sha256", "learning_curve"} <= set(meta)
    assert (ROOT / "minicnn" / "io" / "data" / "cluttered_fmnist.npz").stat().st_size < 5e6
    kinds = {cfg["type"] for cfg in shipped.config()}
    assert kinds <= {"Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "Dropout"}


def test_two_samples_per_class_with_boxes(samples):
    x, labels, index = samples
    assert sorted(np.bincount(labels, minlength=10)) == [2] * 10
    for info in index.values():
        x0, y0, x1, y1 = info["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64


def test_scores_and_input_gradients_equal_torch_float64(shipped, samples):
    pytest.importorskip("torch")
    from tests.helpers.torch_twin import torch_input_gradient, torch_twin
    x, labels, _ = samples
    model64 = minicnn.load().astype(np.float64)
    want_scores, want_grad = torch_input_gradient(torch_twin(model64), x.astype(np.float64), labels)
    grad, scores, _ = saliency.backprop(model64, x.astype(np.float64), labels)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12 * np.abs(want_grad).max())


def _inputs_of(model, kind):
    """{name: the input (N, ...) of that node in the last forward} for the nodes of type kind"""
    return {name: model.activation(model.inputs[i][0])
            for i, (name, layer) in enumerate(zip(model.names, model.layers))
            if isinstance(layer, kind)}


def _relative(a, b):
    """Per image: |a - b| / |b| over the image's gradient."""
    return np.array([np.linalg.norm(p - q) / np.linalg.norm(q) for p, q in zip(a, b)])


@pytest.fixture(scope="module")
def float32_ties(shipped, samples):
    """minicnn's float32 gradients, its float64 ones, and the images on which a switch of the
    backward pass was set differently in the two precisions, each checked to be a near tie.

    The gradient has two kinds of switch: a max-pool window passes it only through its
    winner, and a ReLU only where its input is > 0. Where a window's two largest inputs, or a
    ReLU's input and 0, are within float32 rounding of each other, float32 and float64 may
    switch differently, and the gradient flows along another path. How many such ties an
    image set has depends on the CPU's summation order (BLAS kernels, vector width), so no
    count is asserted: every switch set differently must be a near tie in the float32 pass
    (within 1e-5 of that layer input's largest value)."""
    x, labels, _ = samples
    g32, _, _ = saliency.backprop(shipped, x, labels)
    model64 = minicnn.load().astype(np.float64)
    g64, _, _ = saliency.backprop(model64, x.astype(np.float64), labels)
    tied = set()
    for name, inputs in _inputs_of(shipped, minicnn.MaxPool2d).items():
        won32, won64 = shipped[name]._argmax, model64[name]._argmax
        for n, c, i, j in zip(*np.nonzero(won32 != won64)):
            plane = inputs[n, c].reshape(-1)
            gap = abs(float(plane[won32[n, c, i, j]]) - float(plane[won64[n, c, i, j]]))
            assert gap <= 1e-5 * np.abs(inputs[n]).max(), (
                f"{name}: image {n}, channel {c}, window ({i}, {j}) chose another winner in "
                f"float32 though its candidates differ by {gap:.3g}: not a rounding tie")
            tied.add(int(n))
    inputs64 = _inputs_of(model64, minicnn.ReLU)
    for name, inputs in _inputs_of(shipped, minicnn.ReLU).items():
        for n, *where in zip(*np.nonzero((inputs > 0) != (inputs64[name] > 0))):
            value = abs(float(inputs[(n, *where)]))
            assert value <= 1e-5 * np.abs(inputs[n]).max(), (
                f"{name}: image {n}, unit {tuple(where)} passes the gradient in one precision "
                f"only though its input is {value:.3g}: not a rounding tie with 0")
            tied.add(int(n))
    return g32, g64, tied


def test_float32_gradients_differ_from_float64_only_at_near_ties(float32_ties):
    """On every image where every switch is set the same in both precisions, the float32
    gradient equals the float64 one to 1e-4 (rounding alone: ~1e-6, Winograd F(4x4)
    included); the images with a near tie were checked by the fixture."""
    g32, g64, tied = float32_ties
    for n, rel in enumerate(_relative(g32, g64)):
        if n not in tied:
            assert rel < 1e-4, f"image {n}: no near tie, yet float32 is {rel:.2g} off"


def test_scores_and_input_gradients_equal_torch_float32(shipped, samples, float32_ties):
    """In float32 the two libraries sum in different orders. Scores agree to float32
    rounding (a tie moves the gradient's path, not the score, which is continuous there).
    Gradients agree to 1e-4 on every image, except where one library took another path at
    a near tie: either minicnn's float32 gradient left float64's there (the tie is checked
    by the fixture), or minicnn's equals float64's and PyTorch's float32 is the one that
    flipped. Which images flip depends on the CPU; that every difference is one of these
    does not."""
    torch = pytest.importorskip("torch")
    from tests.helpers.torch_twin import torch_input_gradient, torch_twin
    x, labels, _ = samples
    want_scores, want_grad = torch_input_gradient(torch_twin(shipped, dtype=torch.float32), x, labels)
    grad, scores, _ = saliency.backprop(shipped, x, labels)
    assert np.abs(scores - want_scores).max() <= 1e-5 * np.abs(want_scores).max()
    _, g64, tied = float32_ties
    ours, theirs = _relative(grad, g64), _relative(want_grad, g64)
    for n, rel in enumerate(_relative(grad, want_grad)):
        if rel > 1e-4:
            assert n in tied or (ours[n] < 1e-4 and theirs[n] > 1e-4), (
                f"image {n}: the float32 gradients differ by {rel:.2g}, and neither a near tie "
                f"of minicnn's nor a difference of PyTorch's from float64 explains it")


def test_samples_classified_as_well_as_the_recorded_accuracy_suggests(shipped, samples):
    x, labels, _ = samples
    correct = int((shipped.forward(x).argmax(1) == labels).sum())
    n, p = len(labels), shipped.meta["test_accuracy"]
    # the smallest count that a model of accuracy p reaches with probability >= 99%
    cdf, floor = 0.0, 0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if cdf > 0.01:
            floor = k
            break
    assert correct >= floor, f"{correct}/{n} correct, expected at least {floor} at accuracy {p}"


def test_float64_copy_gives_the_same_gradient(shipped, samples):
    x, labels, _ = samples
    g32 = saliency.gradient(shipped, x[:4], labels[:4])
    model64 = minicnn.load().astype(np.float64)
    g64 = saliency.gradient(model64, x[:4].astype(np.float64), labels[:4])
    assert np.abs(g32 - g64).max() <= 1e-4 * np.abs(g64).max()
