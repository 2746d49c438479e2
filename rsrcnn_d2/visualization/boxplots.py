"""Per-slice metric box plots of several models side by side, as in the paper's Fig. 2.

Input: the per-slice CSVs PWMLEvaluator writes (``pwml_slices.csv``, one row a
slice, columns named after the metrics: ``dice``, ``sensitivity``, ...). An empty
cell is an undefined value (sensitivity on a slice without lesions) and is left
out of that box; how many values each box holds is printed under its label.
"""
import csv
import math
import os
from pathlib import Path
from typing import Dict, Mapping, Sequence, Union

import numpy as np

from .overlays import save_figure_png

__all__ = ["METRIC_LABELS", "read_slice_metrics", "boxplot_from_csvs"]

METRIC_LABELS = {"dice": "Dice (DSC)", "sensitivity": "Sensitivity", "specificity": "Specificity",
                 "hd": "Hausdorff distance (pixels)", "hd95": "HD95 (pixels)",
                 "hd_mm": "Hausdorff distance (mm)", "hd95_mm": "HD95 (mm)"}

PathLike = Union[str, os.PathLike]


def read_slice_metrics(csv_path: PathLike, metrics: Sequence[str]) -> Dict[str, np.ndarray]:
    """{metric: float array of its defined (non-empty) per-slice values} from one CSV.

    Raises ValueError naming the file for a missing column or a non-numeric
    cell, FileNotFoundError for a missing file.
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{csv_path}: no such per-slice CSV")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [m for m in metrics if m not in columns]
        if missing:
            raise ValueError(f"{csv_path}: no column {', '.join(repr(m) for m in missing)} "
                             f"(columns: {', '.join(columns) or 'none'}); expected a "
                             "pwml_slices.csv written by PWMLEvaluator")
        values = {m: [] for m in metrics}
        for line, row in enumerate(reader, start=2):
            for m in metrics:
                cell = (row[m] or "").strip()
                if not cell:
                    continue  # undefined for this slice
                try:
                    v = float(cell)
                except ValueError:
                    raise ValueError(f"{csv_path}, line {line}: column {m!r} holds {cell!r}, "
                                     "not a number") from None
                if not math.isnan(v):
                    values[m].append(v)
    return {m: np.asarray(v, dtype=float) for m, v in values.items()}


def boxplot_from_csvs(csvs: Mapping[str, PathLike], out_png: PathLike,
                      metrics: Sequence[str] = ("dice", "sensitivity"),
                      title: str = "") -> Path:
    """One panel per metric, one box per label (models/configs in the given order).

    ``csvs``: {label: path of a per-slice CSV}. Means are marked as well as
    medians: the paper's tables report means. Written atomically as PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not csvs:
        raise ValueError("boxplot_from_csvs: no CSVs given")
    if not metrics:
        raise ValueError("boxplot_from_csvs: no metrics given")
    data = {label: read_slice_metrics(path, metrics) for label, path in csvs.items()}
    for label, path in csvs.items():
        for m in metrics:
            if data[label][m].size == 0:
                raise ValueError(f"{path}: column {m!r} has no defined values ({label!r})")

    labels = list(csvs)
    fig = Figure(figsize=(max(3.0, 0.9 * len(labels) + 1.2) * len(metrics), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        series = [data[label][m] for label in labels]
        ax.boxplot(series, showmeans=True, widths=0.6)
        ax.set_xticks(range(1, len(labels) + 1),
                      [f"{label}\n(n={len(s)})" for label, s in zip(labels, series)])
        ax.set_title(METRIC_LABELS.get(m, m))
        ax.grid(axis="y", alpha=0.3)
        if m in ("dice", "sensitivity", "specificity"):
            ax.set_ylim(-0.03, 1.03)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure_png(fig, out_png)
