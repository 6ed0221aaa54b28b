"""The figures read through matplotlib's objects, not pixels: which panels there are, what
their titles say, that every map panel has a colorbar, that signed maps are centred on 0, and
that no grid cell is left empty."""
import numpy as np
import pytest

from minicnn import viz
from minicnn.experiments.localize import Localization

RNG = np.random.default_rng(0)
IMAGE = RNG.random((16, 16, 3))


def panels(fig):
    """The axes that are not colorbars, in order."""
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def colorbars(fig):
    return [ax for ax in fig.axes if hasattr(ax, "_colorbar")]


def titles(fig):
    return [ax.get_title() for ax in panels(fig)]


def test_saliency_figure_has_six_panels_and_says_how_each_was_made():
    grad = RNG.normal(size=(3, 16, 16))
    smap = np.abs(grad).max(axis=0)
    fig = viz.saliency_figure(IMAGE, grad, smap, "title with Ankle boot", box=(2, 3, 9, 12))
    t = titles(fig)
    assert len(t) == 6 and t[0].startswith("input")
    assert "summed over channels" in t[1] and "max over channels" in t[4]
    assert "summed over channels" in t[3] and "blog post" in t[2] and "blog post" in t[3]
    assert len(colorbars(fig)) == 4          # every scalar map; the RGB picture has none
    signed = panels(fig)[1].images[-1]
    lo, hi = signed.get_clim()
    assert lo == -hi == -np.abs(grad.sum(axis=0)).max() and signed.get_cmap().name == "RdBu_r"
    assert panels(fig)[4].images[-1].get_clim() == (0.0, smap.max())   # M in its own units
    assert fig.get_suptitle() == "title with Ankle boot"
    assert "square block" in fig.get_supxlabel() and "truly" in fig.get_supxlabel()


def test_a_map_the_same_in_every_channel_is_not_called_rgb():
    grad = np.repeat(RNG.normal(size=(1, 16, 16)), 3, axis=0)      # as occlusion returns
    fig = viz.saliency_figure(IMAGE, grad, np.abs(grad[0]), "t", method="occlusion")
    t = titles(fig)
    assert len(t) == 3 and not any("RGB" in s or "colored" in s for s in t)
    assert "same in every channel" in t[1] and len(colorbars(fig)) == 2


def test_heatmap_figure_and_the_warning_line():
    cam = RNG.random((4, 4))
    fig = viz.heatmap_figure(IMAGE, cam, RNG.random((16, 16)), "t", "features.3",
                             upscale="smooth", warning="not of its kind")
    t = titles(fig)
    assert "'features.3', its own 4x4 grid" in t[1] and "bilinearly" in t[2]
    assert len(colorbars(fig)) == 2
    assert fig.get_supxlabel().startswith("WARNING: not of its kind")
    assert "smoothly (bilinear)" in fig.get_supxlabel()


def test_comparison_is_a_grid_with_each_scaling_said_and_no_empty_cell():
    maps = {f"m{k}": (RNG.random((16, 16)), f"how {k}") for k in range(6)}
    fig = viz.comparison_figure(IMAGE, maps, "t", cols=4)
    t = titles(fig)
    assert len(t) == 7 and t[0].startswith("input")              # 2 x 4 grid minus one cell
    assert all(f"how {k}" in s for k, s in zip(range(6), t[1:]))
    assert len(colorbars(fig)) == 1                              # shared: 0..1 of each max
    fig.draw_without_rendering()                                 # lay it out
    rows = {round(ax.get_position().y0, 3) for ax in panels(fig)}
    assert len(rows) == 2


@pytest.mark.parametrize("K, shape", [(10, (2, 5)), (6, (1, 5 + 1)), (3, (1, 3)), (8, (2, 4))])
def test_class_model_grid_leaves_no_empty_cell(K, shape):
    fig = viz.class_model_grid(RNG.random((K, 8, 8, 3)), [f"class {k}" for k in range(K)],
                               cols=6 if K == 6 else 5)
    assert len(panels(fig)) == K and all(ax.images for ax in panels(fig))
    assert titles(fig) == [f"class {k}" for k in range(K)]


def test_class_model_titles_do_not_touch_the_images_above():
    fig = viz.class_model_grid(RNG.random((10, 8, 8, 3)), [f"class {k}" for k in range(10)])
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    top_row, bottom_row = panels(fig)[:5], panels(fig)[5:]
    for upper, lower in zip(top_row, bottom_row):
        title_box = lower.title.get_window_extent(renderer)
        image_box = upper.get_window_extent(renderer)
        assert title_box.y1 < image_box.y0


def test_localization_figure_has_legend_true_box_and_iou():
    mask = np.zeros((16, 16), bool)
    mask[3:8, 4:9] = True
    fig = viz.localization_figure((IMAGE * 255).astype(np.uint8), RNG.random((16, 16)),
                                  {"threshold": Localization((4, 3, 9, 8), mask)},
                                  true_box=(4, 3, 10, 8), ious={"threshold": 25 / 30})
    assert "IoU with the true box 0.83" in titles(fig)[2]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["mask (largest component)", "its box", "true box"]
    assert len(colorbars(fig)) == 1


def test_sanity_figures_explain_their_columns_and_give_n():
    steps = ["original", "classifier.2", "features.0"]
    result = {"steps": steps, "maps": {"gradient": RNG.random((3, 4, 8, 8))},
              "spearman": {"gradient": RNG.random((3, 4))}, "ssim": {"gradient": RNG.random((3, 4))}}
    maps = viz.sanity_maps_figure(result, 0, IMAGE)
    assert titles(maps)[:4] == ["image", "original", "down to\nclassifier.2", "down to\nfeatures.0"]
    assert "re-initialised" in maps.get_supxlabel()
    curves = viz.sanity_curves(result)
    assert all("n = 4 images" in ax.get_ylabel() for ax in panels(curves))
    assert all(ax.get_xlabel() for ax in panels(curves))


def test_figures_keep_pyplot_out_of_it():
    """A figure is not pyplot's: saving it neither needs nor changes a backend, and pyplot's
    list of open figures stays empty (no leak in a loop of 1,000 images)."""
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    viz.saliency_figure(IMAGE, RNG.normal(size=(3, 16, 16)), RNG.random((16, 16)), "t")
    assert plt.get_fignums() == before


def test_overlay_picture_blends_inside_the_map_and_keeps_the_rest():
    pixels = np.full((4, 6, 3), 100, np.uint8)
    smap = np.full((4, 6), np.nan)
    smap[1:3, 1:4] = [[0, 1, 2], [3, 4, 4]]
    out = viz.overlay_picture(pixels, smap, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
    assert (out[0] == 100).all() and (out[:, 5] == 100).all()      # no map there
    assert not (out[2, 2] == 100).all()
    with pytest.raises(ValueError, match="same size"):
        viz.overlay_picture(pixels, np.zeros((3, 3)))
