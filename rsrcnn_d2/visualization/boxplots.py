"""Per-slice metric box plots of several models side by side, as in the paper's Fig. 2.

Input: the per-slice CSVs PWMLEvaluator writes (``pwml_slices.csv``, one row a
slice, columns named after the metrics: ``dice``, ``sensitivity``, ...). An empty
or NaN cell is an undefined value (sensitivity on a slice without lesions): it is
left out of that box, and how many were left out is said under the box's label
and to ``log``. A value outside its metric's valid range (Dice -5 or 42, a
negative distance, infinity) is refused, naming the file, line and column: a
figure must not hide a broken CSV by clipping its axis.
"""

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Union

import numpy as np

from ..data.errors import PWMLDataError
from .overlays import save_figure_png

__all__ = [
    "METRIC_LABELS",
    "VALID_RANGES",
    "read_slice_metrics",
    "read_slice_columns",
    "slice_selection",
    "boxplot_from_csvs",
]

METRIC_LABELS = {
    "dice": "Dice (DSC)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "hd": "Hausdorff distance (pixels)",
    "hd95": "HD95 (pixels)",
    "hd_mm": "Hausdorff distance (mm)",
    "hd95_mm": "HD95 (mm)",
}

_FRACTIONS = (
    "dice",
    "sensitivity",
    "specificity",
    "precision",
    "recall",
    "f1",
    "jaccard",
    "iou",
    "reference_used",
)
_NON_NEGATIVE = (
    "hd",
    "hd95",
    "hd_mm",
    "hd95_mm",
    "assd",
    "truth_pixels",
    "pred_pixels",
    "tp",
    "fp",
    "fn",
    "tn",
    "true_lesions",
    "found_lesions",
    "pred_lesions",
    "fp_lesions",
    "height",
    "width",
    "spacing_row",
    "spacing_col",
)
# (low, high) both inclusive, per column of pwml_slices.csv; other columns: any finite number
VALID_RANGES: dict[str, tuple[float, float]] = {
    **{m: (0.0, 1.0) for m in _FRACTIONS},
    **{m: (0.0, math.inf) for m in _NON_NEGATIVE},
}

PathLike = Union[str, os.PathLike]


_UNDEFINED_WHEN_EMPTY = ("dice", "sensitivity", "hd", "hd95", "hd_mm", "hd95_mm")


def _pixels(row: dict[str, str], column: str) -> Optional[float]:
    """A pixel count of a CSV row; None where the column is absent or not a number."""
    try:
        return float(row.get(column) or "nan") if row.get(column) is not None else None
    except ValueError:
        return None


def slice_selection(csv_path: PathLike) -> str:
    """Which slices a per-slice CSV scored: "lesion slices only" (every row has a true lesion,
    the paper's selection), "whole volumes" (some rows have none) or "unknown" (no
    ``truth_pixels`` column)."""
    if not os.path.isfile(csv_path):
        raise PWMLDataError(csv_path, "no such per-slice CSV")
    try:
        with open(csv_path, newline="") as f:
            rows = csv.DictReader(f)
            if "truth_pixels" not in (rows.fieldnames or []):
                return "unknown"
            lesion_free = any(_pixels(row, "truth_pixels") == 0 for row in rows)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PWMLDataError(csv_path, f"cannot read the CSV ({e})") from e
    return "whole volumes" if lesion_free else "lesion slices only"


class SliceColumn(NamedTuple):
    """One metric column of a per-slice CSV: its defined values and how many were n/a."""

    values: np.ndarray
    undefined: int


def _range_text(low: float, high: float) -> str:
    return f"[{low:g}, {high:g}]" if math.isfinite(high) else f"[{low:g}, inf)"


def _check_value(v: float, metric: str) -> Optional[str]:
    """Why ``v`` cannot be a value of ``metric``, or None."""
    low, high = VALID_RANGES.get(metric, (-math.inf, math.inf))
    if math.isfinite(v) and low <= v <= high:
        return None
    if metric in VALID_RANGES:
        return f"outside its valid range {_range_text(low, high)}"
    return "not a finite number"


def read_slice_columns(csv_path: PathLike, metrics: Sequence[str]) -> dict[str, SliceColumn]:
    """{metric: SliceColumn} from one per-slice CSV; every problem is a PWMLDataError naming it."""
    if not os.path.isfile(csv_path):
        raise PWMLDataError(csv_path, "no such per-slice CSV")
    try:
        with open(csv_path, newline="") as f:
            return _read_columns(csv_path, csv.DictReader(f), metrics)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PWMLDataError(csv_path, f"cannot read the CSV ({e})") from e


def _read_columns(csv_path, reader, metrics) -> dict[str, SliceColumn]:
    columns = reader.fieldnames or []
    missing = [m for m in metrics if m not in columns]
    if missing:
        raise PWMLDataError(
            csv_path,
            f"no column {', '.join(repr(m) for m in missing)} "
            f"(columns: {', '.join(columns) or 'none'}); expected a "
            "pwml_slices.csv written by PWMLEvaluator",
        )
    values = {m: [] for m in metrics}
    undefined = dict.fromkeys(metrics, 0)
    for line, row in enumerate(reader, start=2):
        # a slice empty in truth and prediction has no score; CSVs of earlier releases
        # wrote Dice 1 and distance 0 there: left out and counted as undefined
        both_empty = _pixels(row, "truth_pixels") == 0 and _pixels(row, "pred_pixels") == 0
        for m in metrics:
            cell = "" if both_empty and m in _UNDEFINED_WHEN_EMPTY else (row[m] or "").strip()
            try:
                v = float(cell) if cell else math.nan
            except ValueError:
                raise PWMLDataError(
                    csv_path, f"line {line}: column {m!r} holds {cell!r}, not a number"
                ) from None
            if math.isnan(v):
                undefined[m] += 1  # undefined for this slice
                continue
            why = _check_value(v, m)
            if why:
                where = f" ({row['file_name']})" if row.get("file_name") else ""
                raise PWMLDataError(
                    csv_path, f"line {line}{where}: column {m!r} holds {cell}, {why}"
                )
            values[m].append(v)
    return {m: SliceColumn(np.asarray(values[m], dtype=float), undefined[m]) for m in metrics}


def read_slice_metrics(csv_path: PathLike, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """{metric: float (n,) array of its defined (non-empty, non-NaN) per-slice values} from one CSV.

    Raises PWMLDataError naming the file for a missing file or column, a
    non-numeric cell or a value outside the metric's valid range (`VALID_RANGES`).
    """
    return {m: c.values for m, c in read_slice_columns(csv_path, metrics).items()}


def _check_output(out_png: PathLike) -> Path:
    out = Path(out_png)
    if out.is_dir():
        raise PWMLDataError(out, "is a directory; --output takes the PNG file to write")
    return out


def boxplot_from_csvs(
    csvs: Mapping[str, PathLike],
    out_png: PathLike,
    metrics: Sequence[str] = ("dice", "sensitivity"),
    title: str = "",
    log: Optional[Callable[[str], None]] = None,
    allow_mixed_selections: bool = False,
) -> Path:
    """One panel per metric, one box per label (models/configs in the given order).

    Means are marked as well as medians: the paper's tables report means. Written
    atomically as PNG; an output that cannot be written is a PWMLDataError naming it.

    Args:
        csvs: {label: path of a per-slice CSV}.
        out_png: the PNG file to write.
        metrics: CSV columns, one panel each.
        title: the figure's title ("": none).
        log: gets one line per box that left undefined values out.
        allow_mixed_selections: CSVs that scored different slice selections
            (`slice_selection`: the paper's lesion slices vs whole volumes) cannot share
            a figure unless this is set: their boxes do not measure the same thing.

    Returns:
        ``out_png`` as a Path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not csvs:
        raise PWMLDataError("--csv", "no per-slice CSV given")
    if not metrics:
        raise PWMLDataError("--metrics", "no metric given")
    out = _check_output(out_png)
    selections = {label: slice_selection(path) for label, path in csvs.items()}
    first = next(iter(csvs))
    other = next((k for k in csvs if selections[k] != selections[first]), None)
    if other is not None and not allow_mixed_selections:
        raise PWMLDataError(
            csvs[other],
            f"scored {selections[other]}, but {csvs[first]} scored {selections[first]}; one "
            "figure would compare different slices (--allow-mixed-selections draws them anyway)",
        )
    data = {label: read_slice_columns(path, metrics) for label, path in csvs.items()}
    for label, path in csvs.items():
        for m in metrics:
            column = data[label][m]
            if column.values.size == 0:
                raise PWMLDataError(path, f"column {m!r} has no defined values ({label!r})")
            if column.undefined and log is not None:
                total = column.values.size + column.undefined
                log(
                    f"{label} ({path}): {m}: {column.undefined} of {total} slices n/a "
                    "(empty or NaN), left out"
                )

    labels = list(csvs)
    fig = Figure(figsize=(max(3.0, 0.9 * len(labels) + 1.2) * len(metrics), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        columns = [data[label][m] for label in labels]
        ax.boxplot([c.values for c in columns], showmeans=True, widths=0.6)
        ax.set_xticks(
            range(1, len(labels) + 1),
            [
                f"{label}\n(n={c.values.size}" + (f", {c.undefined} n/a)" if c.undefined else ")")
                for label, c in zip(labels, columns)
            ],
        )
        ax.set_title(METRIC_LABELS.get(m, m))
        ax.grid(axis="y", alpha=0.3)
        if VALID_RANGES.get(m) == (0.0, 1.0):  # every value is inside: nothing is cut off
            ax.set_ylim(-0.03, 1.03)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return save_figure_png(fig, out)
    except OSError as e:
        raise PWMLDataError(out, f"cannot write the figure ({e.strerror or e})") from e
