"""Figures (matplotlib) and report files, kept apart from the maths: every function here takes
arrays or result dicts that were computed elsewhere and only draws or writes them.

- ``plotting``: the shared helpers (display scaling, the blog post's colored and grayscale
  pictures, boxes, ``save_figure``);
- ``saliency``: figures of one image's saliency maps;
- ``experiments``: figures of the experiments (class models, localisation, evaluation,
  sanity checks, fooling images);
- ``report``: the evaluation's report files.
Importing this package does not choose matplotlib's backend.
"""
from minicnn.io.atomic import atomic_write
from minicnn.viz.experiments import (class_model_grid, evaluation_bars, evaluation_curves,
                                     fooling_figure, localization_figure, sanity_curves,
                                     sanity_maps_figure, stretch, write_class_models)
from minicnn.viz.plotting import (colored_gradient, draw_box, grayscale_gradient,
                                  save_figure, save_together, scale_to_max, unit_range)
from minicnn.viz.report import write_evaluation
from minicnn.viz.saliency import (SALIENCY_LABELS, comparison_figure, heatmap_figure,
                                  method_figure, saliency_figure)

__all__ = ["saliency_figure", "heatmap_figure", "comparison_figure", "method_figure",
           "SALIENCY_LABELS", "class_model_grid", "localization_figure", "evaluation_bars",
           "evaluation_curves", "sanity_maps_figure", "sanity_curves", "fooling_figure",
           "stretch", "write_class_models", "colored_gradient", "grayscale_gradient", "unit_range", "scale_to_max",
           "draw_box", "save_figure", "save_together", "atomic_write", "write_evaluation"]
