"""Reading a run's evaluation results and tabulating them over seeds or folds.

The figures are the evaluator's strict protocol (every slice counts, an empty
prediction scores Dice 0) and lesion-wise F1; see rsrcnn_d2.evaluation.
"""
import csv
import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

from ..evaluation.lesionwise import LesionCounts, lesion_f1
from ..evaluation.metrics import mean_of_defined

__all__ = ["SUMMARY_METRICS", "REFERENCE_METRICS", "read_eval_results", "mean_sd",
           "seed_summary_table", "pooled_strict", "pooled_reference", "pooled_results"]

# (column title, key in detectron2's flattened results, digits)
SUMMARY_METRICS: Tuple[Tuple[str, str, int], ...] = (
    ("Dice", "pwml_strict/Dice", 3),
    ("Sensitivity", "pwml_strict/Sens", 3),
    ("Specificity", "pwml_strict/Spec", 5),
    ("HD (px)", "pwml_strict/HD", 1),
    ("lesion F1", "pwml_strict/lesion_F1", 3),
)
# the reference implementation's protocol (the paper's figures): empty predictions skipped
REFERENCE_METRICS: Tuple[Tuple[str, str, int], ...] = (
    ("Dice", "pwml_reference/Dice", 3),
    ("Sensitivity", "pwml_reference/Sens", 3),
    ("Specificity", "pwml_reference/Spec", 5),
    ("HD (px)", "pwml_reference/HD", 1),
    ("slices skipped (empty prediction)", "pwml_reference/skipped_fraction", 3),
)


def read_eval_results(metrics_json: Union[str, Path]) -> Dict[str, float]:
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
    raise ValueError(f"{path}: no PWML evaluation in the training metrics "
                     "(was DATASETS.TEST set and did training finish?)")


def mean_sd(values: Iterable[float]) -> Tuple[float, float, int]:
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


def seed_summary_table(runs: Dict[str, List[Dict[str, float]]], labels: Dict[str, str] = None,
                       metrics: Sequence[Tuple[str, str, int]] = SUMMARY_METRICS,
                       count_title: str = "results", counts: Dict[str, int] = None) -> str:
    """A Markdown table, one row per run name: mean ± sd over its results (seeds or folds).

    A cell whose metric is defined in fewer results than the run has says ``(n=…)``.
    The second column is the number of results, or ``counts[name]`` where given.
    """
    labels, counts = labels or {}, counts or {}
    head = f"| run | {count_title} | " + " | ".join(title for title, _, _ in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    for name, results in runs.items():
        cells = [_cell(*mean_sd([r.get(key, float("nan")) for r in results]), digits,
                       len(results)) for _, key, digits in metrics]
        lines.append(f"| {labels.get(name, name)} | {counts.get(name, len(results))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(row: Dict[str, str], key: str, where: str) -> float:
    value = row.get(key)
    if value is None:
        raise ValueError(f"{where}: no column {key!r}")
    return float(value) if value != "" else float("nan")


def _slice_rows(slice_csvs: Sequence[Union[str, Path]]) -> List[Tuple[str, Dict[str, str]]]:
    rows = []
    for path in slice_csvs:
        with open(path, newline="") as f:
            rows += [(str(path), row) for row in csv.DictReader(f)]
    return rows


def pooled_strict(slice_csvs: Sequence[Union[str, Path]]) -> Dict[str, float]:
    """Strict-protocol figures over the slices of several ``pwml_slices.csv`` files pooled.

    For cross-validation: every held-out slice once, as if one evaluator had seen
    them all (means of the defined per-slice values; lesion F1 from pooled counts).
    """
    dice, sens, spec, hd, counts = [], [], [], [], []
    for where, row in _slice_rows(slice_csvs):
        dice.append(_number(row, "dice", where))
        sens.append(_number(row, "sensitivity", where))
        spec.append(_number(row, "specificity", where))
        hd.append(_number(row, "hd", where))
        counts.append(LesionCounts(*(int(_number(row, k, where)) for k in (
            "true_lesions", "found_lesions", "pred_lesions", "fp_lesions"))))
    return {"pwml_strict/Dice": mean_of_defined(dice)[0],
            "pwml_strict/Sens": mean_of_defined(sens)[0],
            "pwml_strict/Spec": mean_of_defined(spec)[0],
            "pwml_strict/HD": mean_of_defined(hd)[0],
            "pwml_strict/lesion_F1": lesion_f1(counts) if counts else float("nan"),
            "pwml_strict/n_slices": float(len(dice))}


def pooled_reference(slice_csvs: Sequence[Union[str, Path]]) -> Dict[str, float]:
    """The reference protocol over pooled ``pwml_slices.csv`` files (subjects must be disjoint).

    Slices with an empty prediction are skipped; each subject's remaining slices
    are averaged, then the subjects (as rsrcnn_d2.evaluation.protocols does).
    """
    by_subject: Dict[str, List[Dict[str, float]]] = {}
    total = 0
    for where, row in _slice_rows(slice_csvs):
        total += 1
        if _number(row, "pred_pixels", where) > 0:
            by_subject.setdefault(row.get("subject", ""), []).append(
                {k: _number(row, k, where) for k in ("dice", "sensitivity", "specificity", "hd")})
    out = {}
    for name, key in (("Dice", "dice"), ("Sens", "sensitivity"), ("Spec", "specificity"), ("HD", "hd")):
        per_subject = [mean_of_defined(r[key] for r in rows)[0] for rows in by_subject.values()]
        out[f"pwml_reference/{name}"] = mean_of_defined(per_subject)[0]
    used = sum(len(rows) for rows in by_subject.values())
    out["pwml_reference/skipped_fraction"] = (total - used) / total if total else float("nan")
    return out


def pooled_results(slice_csvs: Sequence[Union[str, Path]]) -> Dict[str, float]:
    """Both protocols' figures over pooled ``pwml_slices.csv`` files."""
    return {**pooled_strict(slice_csvs), **pooled_reference(slice_csvs)}
