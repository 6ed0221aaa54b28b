"""Figures (matplotlib) and report files, kept apart from the maths: every function here takes
arrays or result dicts that were computed elsewhere and only draws or writes them.

- ``plotting``: the shared helpers (display scaling and upscaling, colorbars, the blog post's
  colored and grayscale pictures, boxes, ``save_figure``);
- ``saliency``: figures of one image's saliency maps, and the overlay picture;
- ``trace``: the gradient at every layer, from the score back to the pixels;
- ``experiments``: figures of the experiments (class models, localisation, evaluation,
  sanity checks, fooling images);
- ``report``: the evaluation's report files.
Importing this package does not choose matplotlib's backend, and its figures are not
pyplot's: a notebook shows a returned figure inline, a script saves it. To compute and draw
in one call, see ``minicnn.explain.show``.
"""
from minicnn.io.atomic import atomic_write
from minicnn.viz.experiments import (class_model_grid, evaluation_bars, evaluation_curves,
                                     fooling_figure, localization_figure, sanity_curves,
                                     sanity_maps_figure, stretch, write_class_models)
from minicnn.viz.plotting import (CMAP, DIVERGING, DPI, UPSCALE, colored_gradient, draw_box,
                                  draw_image, draw_map, grayscale_gradient, new_figure,
                                  save_figure, save_together, scale_to_max, symmetric_limits,
                                  unit_range)
from minicnn.viz.report import write_evaluation
from minicnn.viz.saliency import (METHOD_WORDS, comparison_figure, heatmap_figure,
                                  method_figure, overlay_picture, saliency_figure,
                                  same_in_every_channel)
from minicnn.viz.trace import ledger_figure, ledger_table, trace_figure

__all__ = ["saliency_figure", "heatmap_figure", "comparison_figure", "method_figure",
           "overlay_picture", "METHOD_WORDS", "same_in_every_channel", "trace_figure",
           "ledger_table", "ledger_figure",
           "class_model_grid", "localization_figure", "evaluation_bars", "evaluation_curves",
           "sanity_maps_figure", "sanity_curves", "fooling_figure", "stretch",
           "write_class_models", "colored_gradient", "grayscale_gradient", "unit_range",
           "scale_to_max", "symmetric_limits", "draw_box", "draw_image", "draw_map",
           "new_figure", "save_figure", "save_together", "atomic_write", "write_evaluation",
           "CMAP", "DIVERGING", "DPI", "UPSCALE"]
