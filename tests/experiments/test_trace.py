"""experiments.trace and its figure: the gradient of the class score at every layer, checked
against the model's own record (model.gradient_at) and against PyTorch autograd at every
layer, on the small test net and on a VGG laid out as torchvision's."""
import numpy as np
import pytest

from minicnn import saliency, viz
from minicnn.experiments.trace import reduce_channels, trace
from minicnn.io import zoo
from tests.helpers.nets import small_net
from tests.helpers.torch_twin import torch_twin


def x_for(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(1, *shape)).astype(dtype)


def test_steps_run_from_the_score_back_to_the_pixels_and_equal_gradient_at():
    model = small_net()
    x = x_for((3, 23, 23))
    r = trace(model, x, target=2)
    names = [s["name"] for s in r["steps"]]
    assert names == list(reversed(model.names)) + ["input"]
    first = r["steps"][0]
    np.testing.assert_array_equal(first["gradient"], np.eye(5)[2])   # the one-hot at the score
    for step in r["steps"][:-1]:        # the model still holds this very backward pass
        np.testing.assert_array_equal(step["gradient"], model.gradient_at(step["name"])[0])
        np.testing.assert_array_equal(step["activation"], model.activation(step["name"])[0])
        assert step["shape"] == step["activation"].shape == step["gradient"].shape
    np.testing.assert_allclose(r["steps"][-1]["gradient"], saliency.gradient(model, x, 2)[0])
    np.testing.assert_array_equal(r["steps"][-1]["activation"], x[0])


def test_every_layer_gradient_equals_torch_autograd(torch):
    model = small_net()
    x = x_for((3, 23, 23), seed=1)
    r = trace(model, x)
    net = torch_twin(model)
    outputs = []

    def keep(module, inputs, output):      # returns None: the output is left as it is
        output.retain_grad()
        outputs.append(output)

    for module in net:
        module.register_forward_hook(keep)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    scores = net(xt)
    scores[0, r["target"]].backward()
    by_name = dict(zip(model.names, outputs))
    for step in r["steps"][:-1]:
        np.testing.assert_allclose(step["gradient"], by_name[step["name"]].grad[0].numpy(),
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r["steps"][-1]["gradient"], xt.grad[0].numpy(), rtol=1e-10,
                               atol=1e-12)


def test_reductions_sum_or_max_of_abs_over_channels():
    a = np.array([[[1.0, -2.0]], [[-3.0, 1.0]]])                   # (2, 1, 2)
    np.testing.assert_array_equal(reduce_channels(a, "sum"), [[4.0, 3.0]])
    np.testing.assert_array_equal(reduce_channels(a, "max"), [[3.0, 2.0]])
    np.testing.assert_array_equal(reduce_channels(np.array([-1.0, 2.0])), [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown reduction 'mean'"):
        reduce_channels(a, "mean")


def test_one_image_at_a_time():
    with pytest.raises(ValueError, match="one image at a time, got a batch of 2"):
        trace(small_net(), np.zeros((2, 3, 23, 23)))


def _panels(fig):
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def test_the_figure_has_a_gradient_and_an_activation_panel_per_layer():
    model = small_net()
    r = trace(model, x_for((3, 23, 23)), reduce="max")
    fig = viz.trace_figure(r, "title", [f"c{k}" for k in range(5)], reduce="max", per_row=4)
    panels = _panels(fig)
    assert len(panels) == 2 * len(r["steps"])                      # no empty cell either
    titles = [ax.get_title() for ax in panels]
    for step in r["steps"]:
        shape = "x".join(map(str, step["shape"]))
        assert sum(t.startswith(step["name"]) and f"({shape})" in t for t in titles) == 2
    assert "one-hot on c" in titles[0]
    assert any("|.| max of 8 ch" in t for t in titles)
    assert "summed" not in fig.get_supxlabel() and "maxed over channels" in fig.get_supxlabel()


def test_trace_works_on_vgg():
    model = zoo.build("vgg11", num_classes=10)
    r = trace(model, x_for((3, 32, 32), dtype=np.float32))
    assert [s["name"] for s in r["steps"]] == list(reversed(model.names)) + ["input"]
    assert r["steps"][-1]["gradient"].shape == (3, 32, 32)
    fig = viz.trace_figure(r, "vgg11")
    assert len(_panels(fig)) == 2 * len(r["steps"])


def test_trace_on_a_residual_graph_equals_gradient_at():
    """On a graph the steps run in reverse topological order through the Add nodes; each is
    the gradient the engine summed there (both paths of a skip connection)."""
    model = zoo.build("resnet18", num_classes=5, dtype=np.float64)
    x = x_for((3, 32, 32), seed=2)
    r = trace(model, x, target=3)
    names = [s["name"] for s in r["steps"]]
    assert names == list(reversed(model.names)) + ["input"]
    assert "layer1.0.add" in names and "layer4.1.relu.1" in names
    for step in r["steps"][:-1]:
        np.testing.assert_array_equal(step["gradient"], model.gradient_at(step["name"])[0])
    np.testing.assert_allclose(r["steps"][-1]["gradient"], saliency.gradient(model, x, 3)[0],
                               rtol=1e-12)
