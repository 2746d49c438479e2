"""What an evaluation writes and prints: per-slice CSV rows, CSV files, the summary table.

``pwml_slices.csv`` (and rsrcnn-evaluate's ``slices.csv``) has one row per slice
with `SLICE_COLUMNS`; undefined values (sensitivity on an empty truth, HD with
one mask empty) are empty cells, which CSV readers take as missing.
`rsrcnn_d2.experiments.results` reads these rows back into records for the
protocols, so pooled folds are scored by the same code as a single run.
"""

import csv
import math
from typing import Dict, List

from tabulate import tabulate

from ..data.fileio import atomic_write
from .protocols import _FIELD, METRICS

__all__ = ["SLICE_COLUMNS", "slice_row", "write_csv_atomic", "format_table"]

SLICE_COLUMNS = [
    "subject",
    "slice_index",
    "image_id",
    "file_name",
    "height",
    "width",
    "spacing_row",
    "spacing_col",
    "truth_pixels",
    "pred_pixels",
    "tp",
    "fp",
    "fn",
    "tn",
    "dice",
    "sensitivity",
    "specificity",
    "hd",
    "hd95",
    "hd_mm",
    "hd95_mm",
    "true_lesions",
    "found_lesions",
    "pred_lesions",
    "fp_lesions",
    "reference_used",
]


def slice_row(r: Dict) -> Dict:
    """The CSV row (`SLICE_COLUMNS`) of a per-slice record (`protocols.slice_record`)."""
    m = r["metrics"]
    spacing = r["spacing"] or (None, None)
    return {
        "subject": r["subject"] if r["has_subject"] else "",
        "slice_index": r["slice_index"],
        "image_id": r["image_id"],
        "file_name": r["file_name"],
        "height": r["shape"][0],
        "width": r["shape"][1],
        "spacing_row": spacing[0],
        "spacing_col": spacing[1],
        "truth_pixels": m.tp + m.fn,
        "pred_pixels": m.tp + m.fp,
        "tp": m.tp,
        "fp": m.fp,
        "fn": m.fn,
        "tn": m.tn,
        **{f: getattr(m, f) for f in _FIELD.values()},
        "true_lesions": m.lesions.true_lesions,
        "found_lesions": m.lesions.found,
        "pred_lesions": m.lesions.predicted,
        "fp_lesions": m.lesions.false_positives,
        "reference_used": int(not m.pred_empty),
    }


def _cell(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""  # undefined / unknown: an empty cell, read as missing by CSV readers
    return f"{v:.6g}" if isinstance(v, float) else v


def write_csv_atomic(path: str, columns: List[str], rows: List[Dict]) -> None:
    """Write rows to ``path`` as CSV through `rsrcnn_d2.data.fileio.atomic_write`.

    A reader never sees half a table, and the file gets the mode a plain open
    would give it (fileio's rule), not the temporary file's 0600.
    """

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: _cell(row.get(c)) for c in columns})

    atomic_write(path, write)


def format_table(results) -> str:
    """The three protocols side by side, plus the counts that qualify them."""
    tasks = [
        ("strict", "pwml_strict"),
        ("reference", "pwml_reference"),
        ("subject 3-D", "pwml_subject3d"),
    ]
    rows = [[m] + [results[t][m] for _, t in tasks] for m in METRICS]
    table = tabulate(
        rows, headers=["metric"] + [n for n, _ in tasks], floatfmt=".4f", tablefmt="pipe"
    )
    s, r, d = results["pwml_strict"], results["pwml_reference"], results["pwml_subject3d"]
    lesion = results["pwml_lesion"]
    no_hd = ""
    if s["n_HD_measured"] == 0:
        no_hd = (
            f"HD n/a: no slice has lesions in both truth and prediction "
            f"({s['n_HD_both_empty']:.0f} both empty, {s['n_HD_missing']:.0f} one empty)\n"
        )
    lesion_free = s["n_slices"] - r["n_lesion_slices"]
    coverage = (
        "slices with lesions only (the paper's selection)"
        if lesion_free == 0
        else f"{r['n_lesion_slices']:.0f} slices with lesions and {lesion_free:.0f} without"
    )
    return (
        f"{table}\n"
        f"covers {coverage}; HD/HD95 in pixels, HD_mm/HD95_mm in mm (NaN: spacing unknown)\n"
        f"strict: {s['n_slices']:.0f} slices; sensitivity undefined (empty truth) on "
        f"{s['n_Sens_undefined']:.0f}; HD missing (one mask empty) on {s['n_HD_missing']:.0f}\n"
        f"{no_hd}"
        f"reference: skipped {r['n_skipped_empty_pred']:.0f} slices with an empty prediction "
        f"({100 * r['skipped_fraction']:.1f}%), {r['n_subjects']:.0f} subjects\n"
        f"subject 3-D: {d['n_subjects']:.0f} subjects, HD missing on {d['n_HD_missing']:.0f}\n"
        f"lesion-wise: {lesion['found']:.0f}/{lesion['true_lesions']:.0f} lesions found, "
        f"{lesion['false_positives']:.0f} false-positive components; sensitivity "
        f"{s['lesion_Sens']:.4f}, FP/slice {s['lesion_FP_per_slice']:.4f}, "
        f"F1 {s['lesion_F1']:.4f}"
    )
