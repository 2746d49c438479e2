"""Reading a run's evaluation results and tabulating them over seeds or folds.

The figures are the headline (per-case Dice, lesion-wise F1 of 3-D lesions), the
evaluator's strict protocol (every slice with a lesion in truth or prediction
counts, an empty prediction scores Dice 0) and the reference protocol; folds
are pooled by reading their per-slice CSVs back into records for the
evaluator's own protocols (rsrcnn_d2.evaluation.protocols), never re-implemented.
"""

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Union

from ..evaluation.lesion_size import (
    SIZE_STRATA,
    SizeCounts,
    pool_size_counts,
    size_figures,
    stratum_label,
    stratum_name,
)
from ..evaluation.lesionwise import LesionCounts, lesion_f1, lesion_sensitivity
from ..evaluation.metrics import SliceMetrics, mean_of_defined
from ..evaluation.protocols import UNKNOWN_SUBJECT, strict_and_reference

__all__ = [
    "SUMMARY_METRICS",
    "REFERENCE_METRICS",
    "LESION3D_METRICS",
    "lesion3d_results",
    "SIZE_METRICS",
    "subject_size_counts",
    "size_results",
    "HEADLINE_METRICS",
    "loss_trend",
    "heads_start",
    "read_eval_results",
    "mean_sd",
    "seed_summary_table",
    "read_slice_records",
    "pooled_strict",
    "pooled_reference",
    "pooled_results",
]

# (column title, key in detectron2's flattened results, digits)
SUMMARY_METRICS: tuple[tuple[str, str, int], ...] = (
    ("Dice", "pwml_strict/Dice", 3),
    ("Sensitivity", "pwml_strict/Sens", 3),
    ("Specificity", "pwml_strict/Spec", 5),
    ("HD (px)", "pwml_strict/HD", 1),
    ("lesion F1", "pwml_strict/lesion_F1", 3),
)
# the reference implementation's protocol (the paper's figures): empty predictions skipped
REFERENCE_METRICS: tuple[tuple[str, str, int], ...] = (
    ("Dice", "pwml_reference/Dice", 3),
    ("Sensitivity", "pwml_reference/Sens", 3),
    ("Specificity", "pwml_reference/Spec", 5),
    ("HD (px)", "pwml_reference/HD", 1),
    ("slices skipped (empty prediction)", "pwml_reference/skipped_fraction", 3),
)

# the figures to read first (nnU-Net's): per-case Dice (cases empty in both left out, counted)
# and lesion-wise F1 of 3-D lesions
HEADLINE_METRICS: tuple[tuple[str, str, int], ...] = (
    ("Dice per case (3-D)", "pwml_headline/case_dice", 3),
    ("lesion F1, 3-D lesions", "pwml_headline/lesion_f1_3d", 3),
)

# lesion-wise figures with 2-D lesions (per slice) and 3-D lesions (per subject's stacked slices)
LESION3D_METRICS: tuple[tuple[str, str, int], ...] = (
    ("lesion F1, 2-D lesions", "pwml_strict/lesion_F1", 3),
    ("lesion F1, 3-D lesions", "pwml_lesion3d/F1", 3),
    ("3-D lesions found", "pwml_lesion3d/sensitivity", 3),
    ("false-positive 3-D components per subject", "pwml_lesion3d/FP_per_subject", 2),
)


def lesion3d_results(*subjects_csvs: Union[str, Path]) -> dict[str, float]:
    """``pwml_lesion3d/...`` figures (3-D counts per subject, pooled) and the headline
    ``pwml_headline/...`` (per-case Dice: subjects empty in both left out and counted) from
    the evaluator's ``pwml_subjects.csv`` of one run, or of several on disjoint subjects
    (cross-validation folds). A subject whose slices could not be stacked (slices of
    different sizes) has no 3-D lesions: the 3-D lesion figures are then NaN rather than a
    figure over the other subjects only, and ``n_subjects_not_stacked`` counts them."""
    pooled, subjects, case_dice, not_stacked = LesionCounts(), 0, [], 0
    for subjects_csv in subjects_csvs:
        where = str(subjects_csv)
        with open(subjects_csv, newline="") as f:
            for row in csv.DictReader(f):
                counts = (
                    _count(row, k, where)
                    for k in ("true_lesions_3d", "found_3d", "predicted_3d", "false_positives_3d")
                )
                pooled = pooled + LesionCounts(*counts)
                not_stacked += _not_stacked(row, where)
                case_dice.append(
                    math.nan if _empty_case(row, where) else _number(row, "3d_Dice", where)
                )
                subjects += 1
    dice, scored, empty_both = mean_of_defined(case_dice)
    whole = not not_stacked  # every subject's 3-D lesions counted
    f1 = lesion_f1(pooled) if whole else math.nan
    return {
        "pwml_headline/case_dice": dice,
        "pwml_headline/n_cases_scored": float(scored),
        "pwml_headline/n_cases_empty_both": float(empty_both),
        "pwml_headline/lesion_f1_3d": f1,
        "pwml_lesion3d/true_lesions": float(pooled.true_lesions),
        "pwml_lesion3d/found": float(pooled.found),
        "pwml_lesion3d/false_positives": float(pooled.false_positives),
        "pwml_lesion3d/sensitivity": lesion_sensitivity(pooled) if whole else math.nan,
        "pwml_lesion3d/F1": f1,
        "pwml_lesion3d/FP_per_subject": (
            pooled.false_positives / subjects if subjects and whole else math.nan
        ),
        "pwml_lesion3d/n_subjects_not_stacked": float(not_stacked),
    }


def _not_stacked(row: dict[str, str], where: str) -> bool:
    """A subject with 2-D lesions (true or predicted) but no 3-D ones: its slices were not
    stacked (every 2-D lesion lies in a 3-D one). Files without 2-D counts: False."""
    if "true_lesions" not in row or "predicted" not in row:
        return False
    flat = _count(row, "true_lesions", where) + _count(row, "predicted", where)
    solid = _count(row, "true_lesions_3d", where) + _count(row, "predicted_3d", where)
    return flat > 0 and solid == 0


# lesion-wise figures by lesion size (2-D lesions; evaluation/lesion_size.py)
SIZE_METRICS: tuple[tuple[str, str, int], ...] = tuple(
    (f"{stratum_label(s)} {title}", f"pwml_size/{stratum_name(s)}_{key}", 3)
    for s in SIZE_STRATA
    for title, key in (("recall", "recall"), ("lesion Dice", "Dice"), ("F1", "F1"))
)


def _empty_case(row: dict[str, str], where: str) -> bool:
    """A subject with no lesion pixel in its truth or its prediction, which has no Dice.

    Read from its slice counts (slices with a true lesion, slices with a prediction). The 3-D
    lesion counts cannot tell: they are 0 as well where the slices could not be stacked
    (slices of different sizes, as the reference slices' head crops). Files of earlier
    releases without those columns: from the 3-D lesion counts (they wrote Dice 1 there).
    """
    if "n_lesion_slices" in row and "n_reference_used" in row:
        return not _count(row, "n_lesion_slices", where) + _count(row, "n_reference_used", where)
    return not _count(row, "true_lesions_3d", where) + _count(row, "predicted_3d", where)


def subject_size_counts(subjects_csv: Union[str, Path]) -> dict[str, tuple[SizeCounts, ...]]:
    """{subject: per-stratum `SizeCounts`} from the evaluator's ``pwml_subjects.csv``; {} for a
    file written before the size columns existed."""
    where, out = str(subjects_csv), {}
    with open(subjects_csv, newline="") as f:
        for row in csv.DictReader(f):
            if f"lesions_{stratum_name(SIZE_STRATA[0])}" not in row:
                return {}
            out[row["subject"]] = tuple(
                SizeCounts(
                    _count(row, f"lesions_{name}", where),
                    _count(row, f"found_{name}", where),
                    _count(row, f"fp_{name}", where),
                    _number(row, f"dice_sum_{name}", where),
                )
                for name in map(stratum_name, SIZE_STRATA)
            )
    return out


def size_results(*subjects_csvs: Union[str, Path]) -> dict[str, float]:
    """``pwml_size/...`` figures (lesion-wise by size, pooled over subjects) from the
    evaluator's ``pwml_subjects.csv`` of one run, or of several runs on disjoint subjects
    (folds); {} when a file has no size columns."""
    per_file = [subject_size_counts(path) for path in subjects_csvs]
    if not per_file or not all(per_file):
        return {}
    pooled = pool_size_counts(c for counts in per_file for c in counts.values())
    return {f"pwml_size/{k}": float(v) for k, v in size_figures(pooled).items()}


def loss_trend(metrics_json: Union[str, Path], key: str = "total_loss") -> dict[str, float]:
    """How flat a run's training loss ended: mean ``key`` over its last fifth of iterations
    against the fifth before (detectron2's ``metrics.json``, one logged value per 20
    iterations); ``change`` is (last - before) / before: near 0 is flat."""
    points = []
    for line in Path(metrics_json).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if key in record and "iteration" in record:
            points.append((int(record["iteration"]), float(record[key])))
    if not points:
        return {"before": math.nan, "last": math.nan, "change": math.nan}
    end = max(i for i, _ in points) + 1
    before = [v for i, v in points if 0.6 * end <= i < 0.8 * end]
    last = [v for i, v in points if i >= 0.8 * end]
    b = math.fsum(before) / len(before) if before else math.nan
    a = math.fsum(last) / len(last) if last else math.nan
    return {"before": b, "last": a, "change": (a - b) / b if b else math.nan}


def heads_start(metrics_json: Union[str, Path]) -> float:
    """The first logged iteration with a box-classifier loss above 0: until a proposal
    overlaps a lesion enough to be a foreground ROI, the box and mask heads learn nothing.
    NaN if it never happened."""
    for line in Path(metrics_json).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("loss_cls", 0.0) > 0 and "iteration" in record:
            return float(record["iteration"])
    return math.nan


def read_eval_results(metrics_json: Union[str, Path]) -> dict[str, float]:
    """The last PWML evaluation in a detectron2 ``metrics.json`` (one JSON object per line).

    Training writes the evaluator's results there, flattened as ``task/metric``.
    """
    path = Path(metrics_json)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read the training metrics ({e.strerror})") from e
    for line in reversed(lines):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: a line is not JSON ({e})") from e
        if "pwml_strict/Dice" in record:
            return {k: float(v) for k, v in record.items() if k.startswith("pwml_")}
    raise ValueError(
        f"{path}: no PWML evaluation in the training metrics "
        "(was DATASETS.TEST set and did training finish?)"
    )


def mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n) of the defined (non-NaN) values.

    sd is NaN for fewer than two values; mean is NaN for none.
    """
    mean, n, _ = mean_of_defined(values)
    if n < 2:
        return mean, float("nan"), n
    defined = [float(v) for v in values if not math.isnan(float(v))]
    var = math.fsum((v - mean) ** 2 for v in defined) / (n - 1)
    return mean, math.sqrt(var), n


def _cell(mean: float, sd: float, n: int, digits: int, expected: int) -> str:
    if n == 0:
        return "–"
    text = f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return text if n == expected else f"{text} (n={n})"


def seed_summary_table(
    runs: dict[str, list[dict[str, float]]],
    labels: dict[str, str] = None,
    metrics: Sequence[tuple[str, str, int]] = SUMMARY_METRICS,
    count_title: str = "results",
    counts: dict[str, int] = None,
) -> str:
    """A Markdown table, one row per run name: mean ± sd over its results (seeds or folds).

    A cell whose metric is defined in fewer results than the run has says ``(n=…)``.
    The second column is the number of results, or ``counts[name]`` where given.
    """
    labels, counts = labels or {}, counts or {}
    head = f"| run | {count_title} | " + " | ".join(title for title, _, _ in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    for name, results in runs.items():
        cells = [
            _cell(*mean_sd([r.get(key, float("nan")) for r in results]), digits, len(results))
            for _, key, digits in metrics
        ]
        count = counts.get(name, len(results))
        lines.append(f"| {labels.get(name, name)} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(row: dict[str, str], key: str, where: str) -> float:
    value = row.get(key)
    if value is None:
        raise ValueError(f"{where}: no column {key!r}")
    return float(value) if value != "" else float("nan")


def _count(row: dict[str, str], key: str, where: str) -> int:
    value = _number(row, key, where)
    if math.isnan(value):
        raise ValueError(f"{where}: column {key!r} is empty; counts are always written")
    return int(value)


def read_slice_records(slice_csvs: Sequence[Union[str, Path]]) -> list[dict]:
    """The per-slice records of ``pwml_slices.csv`` files, as `strict_and_reference` scores them.

    Each row gives back the slice's metrics (counts, per-slice figures, lesion
    counts) and subject; the masks are not in the CSV, so the 3-D figures cannot
    be recomputed from it. A slice empty in truth and prediction has no Dice or
    distance, whatever an earlier release wrote in its cells (1 and 0).
    """
    records = []
    for path in slice_csvs:
        where = str(path)
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                tp, fp, fn, tn = (_count(row, k, where) for k in ("tp", "fp", "fn", "tn"))
                lesions = LesionCounts(
                    *(
                        _count(row, k, where)
                        for k in ("true_lesions", "found_lesions", "pred_lesions", "fp_lesions")
                    )
                )
                metrics = SliceMetrics(
                    tp,
                    fp,
                    fn,
                    tn,
                    *(
                        _number(row, k, where)
                        for k in (
                            "dice",
                            "sensitivity",
                            "specificity",
                            "hd",
                            "hd95",
                            "hd_mm",
                            "hd95_mm",
                        )
                    ),
                    lesions,
                )
                if tp + fp + fn == 0:  # empty in both: no score (earlier CSVs wrote 1 and 0)
                    nan = float("nan")
                    metrics = dataclasses.replace(
                        metrics, dice=nan, sensitivity=nan, hd=nan, hd95=nan, hd_mm=nan, hd95_mm=nan
                    )
                records.append(
                    {"metrics": metrics, "subject": row.get("subject") or UNKNOWN_SUBJECT}
                )
    return records


def pooled_results(slice_csvs: Sequence[Union[str, Path]]) -> dict[str, float]:
    """Strict and reference figures over the slices of several ``pwml_slices.csv`` files pooled.

    For cross-validation: every held-out slice once, as if one evaluator had seen
    them all, scored by the evaluator's own protocols (`strict_and_reference`);
    the runs' subjects must be disjoint. Keys as in detectron2's flattened
    results (``pwml_strict/Dice``, ``pwml_reference/skipped_fraction``, ...).
    """
    results = strict_and_reference(read_slice_records(slice_csvs))
    return {
        f"{task}/{name}": value
        for task, figures in results.items()
        for name, value in figures.items()
    }


def pooled_strict(slice_csvs: Sequence[Union[str, Path]]) -> dict[str, float]:
    """The ``pwml_strict/...`` figures of `pooled_results`."""
    return {k: v for k, v in pooled_results(slice_csvs).items() if k.startswith("pwml_strict/")}


def pooled_reference(slice_csvs: Sequence[Union[str, Path]]) -> dict[str, float]:
    """The ``pwml_reference/...`` figures of `pooled_results`."""
    return {k: v for k, v in pooled_results(slice_csvs).items() if k.startswith("pwml_reference/")}
