"""What an evaluation writes and prints: per-slice CSV rows, CSV files, the summary table.

``pwml_slices.csv`` (and rsrcnn-evaluate's ``slices.csv``) has one row per slice
with `SLICE_COLUMNS`; undefined values (sensitivity on an empty truth, HD with
one mask empty) are empty cells, which CSV readers take as missing.
`rsrcnn_d2.experiments.results` reads these rows back into records for the
protocols, so pooled folds are scored by the same code as a single run.
"""

import csv
import math

from tabulate import tabulate

from ..data.fileio import atomic_write
from .lesion_size import SIZE_STRATA, stratum_label, stratum_name
from .protocols import _FIELD, METRICS

__all__ = ["SLICE_COLUMNS", "slice_row", "write_csv_atomic", "format_headline", "format_table"]

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


def slice_row(r: dict) -> dict:
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


def write_csv_atomic(path: str, columns: list[str], rows: list[dict]) -> None:
    """Write rows to ``path`` as CSV through `rsrcnn_d2.data.fileio.atomic_write`.

    A reader never sees half a table, and the file gets the mode a plain open
    would give it (fileio's rule), not the temporary file's 0600.

    Args:
        path: the CSV file to write (replaced if present).
        columns: the header, in order; a row's other keys are ignored.
        rows: one dict per line; a missing key, None or NaN is an empty cell, floats are
            written with 6 significant digits.
    """

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: _cell(row.get(c)) for c in columns})

    atomic_write(path, write)


def _figure(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def format_headline(headline: dict, cases: str = "cases") -> str:
    """The line to read first (`protocols.headline`): per-case Dice and 3-D lesion F1,
    with what they leave out."""
    h = headline
    empty = int(h["n_cases_empty_both"])
    left_out = (
        f"; {empty} {cases} empty in truth and prediction left out (no Dice)" if empty else ""
    )
    return (
        f"HEADLINE  Dice per case (3-D) {_figure(h['case_dice'])} over "
        f"{int(h['n_cases_scored'])} {cases}{left_out}\n"
        f"          lesion F1 (3-D lesions) {_figure(h['lesion_f1_3d'])}: "
        f"{int(h['found_3d'])}/{int(h['true_lesions_3d'])} lesions found, "
        f"{int(h['false_positives_3d'])} false-positive components"
    )


def format_table(results) -> str:
    """The headline (when given), then the three slice protocols side by side, plus the
    counts that qualify them."""
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
    head = ""
    if "pwml_headline" in results:
        head = format_headline(results["pwml_headline"], "subjects") + "\n\n"
    no_hd = ""
    if s["n_HD_measured"] == 0:
        no_hd = "HD n/a: no slice has lesions in both truth and prediction\n"
    lesion_free = s["n_slices"] - r["n_lesion_slices"]
    if lesion_free == 0:
        coverage = "slices with lesions only (the paper's selection)"
    else:
        coverage = (
            f"{s['n_scored']:.0f} slices with a lesion in truth or prediction "
            f"({r['n_lesion_slices']:.0f} with a true lesion); {s['n_both_empty']:.0f} slices "
            "empty in both have no Dice or distance and are left out"
        )
    no_mm = s["n_HD_measured"] > 0 and s["n_HD_mm"] == 0
    units = "HD/HD95 in pixels, HD_mm/HD95_mm in mm" + (" (NaN: spacing unknown)" if no_mm else "")
    return (
        f"{head}{table}\n"
        f"covers {coverage}; {units}\n"
        f"strict: {s['n_slices']:.0f} slices; sensitivity undefined (empty truth, lesion "
        f"predicted) on {s['n_Sens_undefined']:.0f}; HD missing (one mask empty) on "
        f"{s['n_HD_missing']:.0f}\n"
        f"{no_hd}"
        f"reference: skipped {r['n_skipped_empty_pred']:.0f} slices with an empty prediction "
        f"({100 * r['skipped_fraction']:.1f}%), {r['n_subjects']:.0f} subjects\n"
        f"subject 3-D: {d['n_subjects']:.0f} subjects, HD missing on {d['n_HD_missing']:.0f}\n"
        f"lesion-wise, 2-D lesions per slice: {lesion['found']:.0f}/"
        f"{lesion['true_lesions']:.0f} lesions found, "
        f"{lesion['false_positives']:.0f} false-positive components; sensitivity "
        f"{_figure(s['lesion_Sens'])}, FP/slice {_figure(s['lesion_FP_per_slice'])}, "
        f"F1 {_figure(s['lesion_F1'])}"
        f"{_size_line(results.get('pwml_size'))}"
    )


def _size_line(size) -> str:
    """One line of lesion-wise figures by size ("1-5 px 3/7 found, lesion Dice 0.31, F1
    0.40; ..."), or nothing without them."""
    if not size:
        return ""
    parts = []
    for stratum in SIZE_STRATA:
        name = stratum_name(stratum)
        found, lesions = size[f"{name}_found"], size[f"{name}_lesions"]
        dice, f1 = _figure(size[f"{name}_Dice"]), _figure(size[f"{name}_F1"])
        parts.append(
            f"{stratum_label(stratum)} {found:.0f}/{lesions:.0f} found, lesion Dice {dice}, F1 {f1}"
        )
    return "\nlesion-wise by size (2-D lesions): " + "; ".join(parts)
