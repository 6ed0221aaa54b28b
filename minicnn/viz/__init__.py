"""Figures (matplotlib) and report files, kept apart from the maths: every function here takes
arrays or result dicts that were computed elsewhere and only draws or writes them.
"""
from minicnn.io.atomic import atomic_write
from minicnn.viz.saliency import (SALIENCY_LABELS, comparison_figure, draw_box, heatmap_figure,
                                  saliency_figure, save_figure)

__all__ = ["saliency_figure", "heatmap_figure", "comparison_figure", "save_figure",
           "atomic_write", "draw_box", "SALIENCY_LABELS"]
