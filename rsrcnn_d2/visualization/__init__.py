"""Figures in the paper's style, from arrays and from the evaluator's CSVs.

overlays.py  slice with TP green / FP red / FN blue pixels (Fig. 3)
boxplots.py  per-slice Dice and sensitivity of several models side by side (Fig. 2)

matplotlib is used through its Agg canvas only (no pyplot state, no display).
"""

from .boxplots import METRIC_LABELS, boxplot_from_csvs, read_slice_metrics
from .overlays import (
    FN_COLOR,
    FP_COLOR,
    TITLE_BAND,
    TP_COLOR,
    overlay_rgb,
    save_figure_png,
    save_overlay_png,
)

__all__ = [
    "overlay_rgb",
    "save_overlay_png",
    "save_figure_png",
    "TP_COLOR",
    "FP_COLOR",
    "FN_COLOR",
    "TITLE_BAND",
    "boxplot_from_csvs",
    "read_slice_metrics",
    "METRIC_LABELS",
]
