"""An edited weight is never ignored (minicnn/engine/frozen.py).

The engine keeps arrays derived from weights: casts to another dtype (``Layer.weight_as``)
and, on 3x3 layers, Winograd's transformed filters, forward and flipped for the backward
pass. A learner's first experiment is to edit weights (ablate filters, scale a layer), so:
every in-place edit is refused with a message that says what to do, and an assigned array
takes effect on the very next pass, on every cached path, against the reference kernels.
"""
import copy
import pickle

import numpy as np
import pytest

import minicnn
from minicnn.engine.kernels.fast import winograd

EDITS = {  # the four edits a learner tries first, as functions of the array
    "slice": lambda w: w.__setitem__(slice(0, 2), 0),                 # w[:2] = 0
    "imul": lambda w: w.__imul__(3),                                  # w *= 3
    "copyto": lambda w: np.copyto(w, np.roll(np.asarray(w), 1, axis=1)),  # np.copyto(w, ...)
    "iadd": lambda w: w.__iadd__(np.full(w.shape, 0.25, w.dtype)),    # w += noise
}


def every_path_net(dtype):
    """One layer on each fast path, for 28x28 images: the direct loop of an RGB first
    layer, F(4x4) on 28x28 (49 tiles, its smallest map), F(2x2) on 14x14, a 1x1 convolution,
    im2col (5x5, stride 2), and Linear."""
    rng = np.random.default_rng(0)
    layers = [("rgb", minicnn.Conv2d(3, 16, 3, padding=1, rng=rng, dtype=dtype)),
              ("rgb_relu", minicnn.ReLU()),
              ("f4", minicnn.Conv2d(16, 16, 3, padding=1, rng=rng, dtype=dtype)),
              ("pool", minicnn.MaxPool2d(2)),
              ("f2", minicnn.Conv2d(16, 16, 3, padding=1, rng=rng, dtype=dtype)),
              ("f2_relu", minicnn.ReLU()),
              ("pointwise", minicnn.Conv2d(16, 16, 1, rng=rng, dtype=dtype)),
              ("im2col", minicnn.Conv2d(16, 16, 5, stride=2, padding=2, rng=rng, dtype=dtype)),
              ("flatten", minicnn.Flatten()),
              ("fc", minicnn.Linear(16 * 7 * 7, 10, rng=rng, dtype=dtype))]
    return minicnn.Sequential(layers)


def pass_of(model, x, kernels="fast"):
    """(scores, input gradient of their sum) on the given kernels."""
    with minicnn.use_kernels(kernels):
        scores = model.forward(x)
        return scores, model.backward(np.ones_like(scores))


def assert_same_as_reference(model, x, names):
    """After a fast pass, each named layer's output and input gradient equal what the
    reference kernels compute from the same input, gradient and (assigned) weights: within
    float32 rounding (Winograd F(4x4)'s error is ~1e-6 of the largest value; a stale weight
    moves the results by tens of percent), to 1e-10 in float64."""
    scores, grad_x = pass_of(model, x)
    tol = 1e-10 if x.dtype == np.float64 else 1e-4
    for name in names:
        i = model.index(name)
        before = model.inputs[i][0]
        inp = x if before == "input" else model.activation(before)
        got_in = grad_x if before == "input" else model.gradient_at(before)
        got_out, grad_out = model.activation(name), model.gradient_at(name)
        with minicnn.use_kernels("reference"):
            want_out = model[name].forward(inp)
            want_in = model[name].backward(grad_out)
        for got, want in ((got_out, want_out), (got_in, want_in)):
            assert np.abs(got - want).max() <= tol * np.abs(want).max(), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", ["rgb", "f4", "f2", "pointwise", "im2col", "fc"])
@pytest.mark.parametrize("edit", EDITS)
def test_an_in_place_edit_is_refused_and_an_assignment_takes_effect(dtype, layer, edit):
    model = every_path_net(dtype)
    x = np.random.default_rng(1).standard_normal((1, 3, 28, 28)).astype(dtype)
    before = pass_of(model, x)                      # every cache is filled now
    target = model[layer]
    with pytest.raises(ValueError, match=rf"{layer}'\.weight is read-only.*layer\.weight = w"):
        EDITS[edit](target.weight)
    for now, then in zip(pass_of(model, x), before):
        np.testing.assert_array_equal(now, then)    # nothing changed, nothing half-changed
    w = target.weight.copy()                        # the way the message says
    EDITS[edit](w)
    target.weight = w
    after = pass_of(model, x)
    assert not np.allclose(after[1], before[1])     # the edit is seen ...
    assert_same_as_reference(model, x, [layer])     # ... and is exactly what was asked for


@pytest.mark.parametrize("share_forward_filters", [False, True])
def test_the_flipped_filters_of_the_backward_pass_follow_an_assignment(monkeypatch,
                                                                       share_forward_filters):
    """Winograd's backward pass uses the flipped filters' own transform on small layers and
    the forward's transform read turned on large ones (``BACKWARD_FILTERS_MAX_BYTES``)."""
    if share_forward_filters:
        monkeypatch.setattr(winograd, "BACKWARD_FILTERS_MAX_BYTES", 0)
    model = every_path_net(np.float32)
    x = np.random.default_rng(2).standard_normal((1, 3, 28, 28)).astype(np.float32)
    pass_of(model, x)
    for name in ("f4", "f2"):
        w = model[name].weight.copy()
        w[:, :8] *= -2
        model[name].weight = w
    assert_same_as_reference(model, x, ["f4", "f2"])


@pytest.mark.parametrize("how", ["astype", "float64 input"])
def test_casts_follow_an_assignment(how):
    """A float32 model given float64 images casts its weights once and keeps the casts;
    ``astype`` casts them for good. Either way an assignment replaces what was cast."""
    model = every_path_net(np.float32)
    if how == "astype":
        model.astype(np.float64)
    x = np.random.default_rng(3).standard_normal((1, 3, 28, 28))
    pass_of(model, x)
    for name in ("rgb", "f4", "f2", "pointwise", "im2col", "fc"):
        w = model[name].weight.copy()
        w[:1] = 0.5
        model[name].weight = w
        model[name].bias = model[name].bias + 1
    assert_same_as_reference(model, x, ["rgb", "f4", "f2", "pointwise", "im2col", "fc"])
    assert model["f4"].weight.dtype == (np.float64 if how == "astype" else np.float32)


def test_copies_and_loaded_models_are_read_only_too(tmp_path):
    model = every_path_net(np.float32)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model)),
                 minicnn.load(minicnn.save(model, tmp_path / "m.npz"), verify=False)):
        with pytest.raises(ValueError, match="read-only"):
            twin["f4"].weight[0] = 0
        twin.load_state_dict({k: v * 2 for k, v in twin.state_dict().items()})
        with pytest.raises(ValueError, match="read-only"):
            twin["fc"].bias += 1


def test_assigning_keeps_a_copy_not_the_callers_array():
    """The caller's array stays theirs (and writable); editing it later changes nothing."""
    model = every_path_net(np.float64)
    x = np.random.default_rng(4).standard_normal((1, 3, 28, 28))
    w = model["f4"].weight.copy()
    model["f4"].weight = w
    before = pass_of(model, x)
    w[...] = 0                                      # the caller's own array
    for now, then in zip(pass_of(model, x), before):
        np.testing.assert_array_equal(now, then)
