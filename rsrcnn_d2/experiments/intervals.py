"""Bootstrap intervals of the ablation's strict Dice per row and of differences between rows.

The unit is the test subject (rsrcnn_d2.evaluation.bootstrap): a row's strict
Dice is the mean over its test slices, averaged over the seeds that finished;
a difference pairs the rows on the same subjects and the seeds both finished.
The per-slice figures come from the evaluator's ``pwml_slices.csv`` of each run.
"""

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from ..evaluation.bootstrap import paired_difference_interval, subject_interval
from ..evaluation.lesion_size import SIZE_STRATA, pool_size_counts, stratum_label
from .results import mean_sd, read_slice_records, subject_size_counts

__all__ = [
    "slice_csv",
    "subject_dice_sums",
    "csv_dice",
    "paired_interval",
    "interval_table",
    "versus_table",
    "lesion_load_table",
]

LEVEL = 0.95


# a run's evaluation at its calibrated point (Dice objective): runs/<run>/seed<s>/calibrated
CALIBRATED = "calibrated"
CONFIG_POINT = ""  # the run's own evaluation, at its config's point: runs/<run>/seed<s>


def slice_csv(out: Path, name: str, seed: int, folder: str) -> Path:
    """Where a run's per-slice test figures are: in its calibrated ``folder`` (one per
    calibration objective) or, for `CONFIG_POINT`, at its config's point."""
    return out / "runs" / name / f"seed{seed}" / folder / "inference/pwml_test/pwml_slices.csv"


def subject_dice_sums(csvs: Sequence[Path]) -> dict[str, tuple[float, int]]:
    """{subject: (sum of its slices' strict Dice, averaged over the runs, number of slices)}.

    The runs (seeds) must have scored the same slices of each subject.
    """
    per_run = []
    for path in csvs:
        sums, counts = defaultdict(float), defaultdict(int)
        for r in read_slice_records([path]):
            if math.isnan(r["metrics"].dice):  # empty in truth and prediction: no score
                continue
            sums[r["subject"]] += r["metrics"].dice
            counts[r["subject"]] += 1
        per_run.append((sums, counts))
    if not per_run:
        return {}
    counts = per_run[0][1]
    for path, (_, c) in zip(csvs, per_run):
        if c != counts:
            raise ValueError(f"{path}: scores other test slices than {csvs[0]}")
    return {
        s: (sum(run[0][s] for run in per_run) / len(per_run), counts[s]) for s in sorted(counts)
    }


def _arrays(sums: dict[str, tuple[float, int]], subjects: list[str]):
    return np.array([sums[s][0] for s in subjects]), np.array([sums[s][1] for s in subjects])


def _seeds_with(out, name, seeds, folder) -> list[int]:
    return [s for s in seeds if slice_csv(out, name, s, folder).is_file()]


def _cell(values: Optional[tuple[float, float, float]], signed: bool = False) -> str:
    if values is None:
        return "–"
    fmt = "+.3f" if signed else ".3f"
    est, low, high = values
    return f"{est:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def _row_interval(out, name, seeds, folder, n_resamples):
    found = _seeds_with(out, name, seeds, folder)
    if not found:
        return None, []
    sums = subject_dice_sums([slice_csv(out, name, s, folder) for s in found])
    subjects = sorted(sums)
    return subject_interval(*_arrays(sums, subjects), LEVEL, n_resamples, seed=0), found


def paired_interval(csvs_a: Sequence[Path], csvs_b: Sequence[Path], n_resamples: int, what: str):
    """(estimate, low, high) of strict Dice A minus B, paired on the same test subjects, each
    side's evaluations (one per seed, in the same order) averaged per slice first; ``what``
    names the two in the error when they scored different slices."""
    sums_a, sums_b = subject_dice_sums(csvs_a), subject_dice_sums(csvs_b)
    if {k: v[1] for k, v in sums_a.items()} != {k: v[1] for k, v in sums_b.items()}:
        raise ValueError(f"{what} scored different test slices")
    subjects = sorted(sums_a)
    (xa, counts), (xb, _) = _arrays(sums_a, subjects), _arrays(sums_b, subjects)
    return paired_difference_interval(xa, xb, counts, LEVEL, n_resamples, seed=0)


def _difference(out, a, b, seeds, folder, n_resamples):
    both = [
        s for s in _seeds_with(out, a, seeds, folder) if s in _seeds_with(out, b, seeds, folder)
    ]
    if not both:
        return None, []
    csvs_a = [slice_csv(out, a, s, folder) for s in both]
    csvs_b = [slice_csv(out, b, s, folder) for s in both]
    return paired_interval(csvs_a, csvs_b, n_resamples, f"runs {a} and {b}"), both


def csv_dice(csv: Path) -> float:
    """One evaluation's strict Dice: the mean over the test slices it scored; NaN when it
    scored none (every slice empty in truth and prediction)."""
    sums = subject_dice_sums([csv])
    scored = sum(n for _, n in sums.values())
    return sum(total for total, _ in sums.values()) / scored if scored else math.nan


def _seed_value(out: Path, a: str, b: Optional[str], seed: int, folder: str = CALIBRATED) -> float:
    """One seed's calibrated strict Dice of run ``a`` (minus run ``b``'s, when given)."""
    dice_b = csv_dice(slice_csv(out, b, seed, folder)) if b else 0.0
    return csv_dice(slice_csv(out, a, seed, folder)) - dice_b


def interval_table(
    out: Path,
    runs: dict,
    seeds: Sequence[int],
    differences: Sequence[tuple[str, str]],
    labels: dict[str, str],
    n_resamples: int = 10000,
    folder: str = CALIBRATED,
) -> tuple[str, dict]:
    """(Markdown table, numbers) of strict Dice with 95 % subject-bootstrap intervals;
    "calibrated": the evaluations in each run's ``folder``."""
    numbers = {"rows": {}, "differences": {}}
    lines = [
        f"Strict Dice with {100 * LEVEL:.0f} % bootstrap intervals over the test subjects "
        f"({n_resamples} resamples of subjects; seeds averaged per slice first; differences "
        "paired on the same subjects and seeds). The intervals hold the trained models "
        "fixed: they say how much the figure depends on which test subjects were drawn, "
        "not on the seed; the last column gives each seed's own figure:",
        "",
        "| run or difference | seeds | calibrated | at the config's point | calibrated, per seed |",
        "|---|---|---|---|---|",
    ]
    for name in runs:
        tuned, seeds_t = _row_interval(out, name, seeds, folder, n_resamples)
        plain, seeds_p = _row_interval(out, name, seeds, CONFIG_POINT, n_resamples)
        if tuned is None and plain is None:
            continue
        per_seed = [_seed_value(out, name, None, s, folder) for s in seeds_t]
        numbers["rows"][name] = {
            "calibrated": tuned,
            "config_point": plain,
            "seeds": seeds_t,
            "per_seed": per_seed,
        }
        lines.append(
            f"| {labels.get(name, name)} | {len(seeds_t) or len(seeds_p)} | {_cell(tuned)} | "
            f"{_cell(plain)} | {', '.join(f'{v:.3f}' for v in per_seed)} |"
        )
    for a, b in differences:
        if a not in runs or b not in runs:
            continue
        tuned, seeds_t = _difference(out, a, b, seeds, folder, n_resamples)
        plain, seeds_p = _difference(out, a, b, seeds, CONFIG_POINT, n_resamples)
        if tuned is None and plain is None:
            continue
        key = f"{a} - {b}"
        per_seed = [_seed_value(out, a, b, s, folder) for s in seeds_t]
        numbers["differences"][key] = {
            "calibrated": tuned,
            "config_point": plain,
            "seeds": seeds_t,
            "per_seed": per_seed,
        }
        lines.append(
            f"| {key} | {len(seeds_t) or len(seeds_p)} | {_cell(tuned, True)} | "
            f"{_cell(plain, True)} | {', '.join(f'{v:+.3f}' for v in per_seed)} |"
        )
    return "\n".join(lines), numbers


def _case_dice(csvs: Sequence[Path]) -> dict[str, float]:
    """{subject: its 3-D Dice averaged over the runs} from ``pwml_subjects.csv`` files (a
    subject empty in truth and prediction has none: NaN)."""
    per_run = []
    for path in csvs:
        with open(path, newline="") as f:
            per_run.append({r["subject"]: _float(r["3d_Dice"]) for r in csv.DictReader(f)})
    return {s: float(np.mean([run[s] for run in per_run])) for s in sorted(per_run[0])}


def _float(cell: str) -> float:
    return float(cell) if cell != "" else math.nan


def _small_f1_terms(csvs: Sequence[Path]) -> tuple[dict[str, float], dict[str, float]]:
    """Per subject, the numerator (2·found) and denominator (found + lesions + false
    positives) of the smallest stratum's lesion F1, pooled over the runs; ({}, {}) when a
    file has no size columns."""
    per_run = [subject_size_counts(p) for p in csvs]
    if not all(per_run):
        return {}, {}
    pooled = {s: pool_size_counts(run[s] for run in per_run)[0] for s in per_run[0]}
    num = {s: 2.0 * c.found for s, c in pooled.items()}
    den = {s: c.found + c.true_lesions + c.false_positives for s, c in pooled.items()}
    return num, den


def _versus(out, a, b, seeds, n_resamples, folder=CALIBRATED):
    """{figure: (estimate, low, high)} and {figure: [per-seed differences]} of run a minus run
    b, calibrated, on the seeds both finished; None when they share none."""
    both = [
        s for s in _seeds_with(out, a, seeds, folder) if s in _seeds_with(out, b, seeds, folder)
    ]
    if not both:
        return None, None, []
    subjects_csv = {
        n: [slice_csv(out, n, s, folder).with_name("pwml_subjects.csv") for s in both]
        for n in (a, b)
    }
    found, per_seed = {}, {}
    found["strict Dice"] = _difference(out, a, b, seeds, folder, n_resamples)[0]
    per_seed["strict Dice"] = [_seed_value(out, a, b, s, folder) for s in both]
    dice_a, dice_b = _case_dice(subjects_csv[a]), _case_dice(subjects_csv[b])
    cases = [s for s in dice_a if not (math.isnan(dice_a[s]) or math.isnan(dice_b[s]))]
    if cases:
        xa, xb = np.array([dice_a[s] for s in cases]), np.array([dice_b[s] for s in cases])
        found["Dice per case"] = paired_difference_interval(
            xa, xb, np.ones(len(cases)), LEVEL, n_resamples, seed=0
        )
    per_seed["Dice per case"] = [
        _paired_case_difference(_case_dice([p_a]), _case_dice([p_b]))
        for p_a, p_b in zip(subjects_csv[a], subjects_csv[b])
    ]
    (num_a, den_a), (num_b, den_b) = map(_small_f1_terms, (subjects_csv[a], subjects_csv[b]))
    if num_a and num_b and sum(den_a.values()) and sum(den_b.values()):
        subjects = sorted(num_a)
        found["small F1"] = paired_difference_interval(
            [num_a[s] for s in subjects],
            [num_b[s] for s in subjects],
            [den_a[s] for s in subjects],
            LEVEL,
            n_resamples,
            seed=0,
            counts_b=[den_b[s] for s in subjects],
        )
        per_seed["small F1"] = [
            _f1(_small_f1_terms([p_a])) - _f1(_small_f1_terms([p_b]))
            for p_a, p_b in zip(subjects_csv[a], subjects_csv[b])
        ]
    return found, per_seed, both


def _paired_case_difference(dice_a: dict, dice_b: dict) -> float:
    """Mean per-case Dice of run a minus run b over the cases both define (NaN: none)."""
    both = [s for s in dice_a if not (math.isnan(dice_a[s]) or math.isnan(dice_b.get(s, math.nan)))]
    return float(np.mean([dice_a[s] - dice_b[s] for s in both])) if both else math.nan


def _f1(terms) -> float:
    num, den = terms
    return sum(num.values()) / sum(den.values()) if sum(den.values()) else math.nan


VERSUS_FIGURES = ("strict Dice", "Dice per case", "small F1")


def versus_table(
    out: Path,
    runs: dict,
    seeds: Sequence[int],
    baseline: str,
    labels: dict[str, str],
    n_resamples: int = 10000,
    folder: str = CALIBRATED,
) -> tuple[str, dict]:
    """(Markdown table, numbers): every calibrated run minus ``baseline`` in strict Dice,
    per-case Dice and lesion F1 of the smallest lesions, each with its 95 % subject-bootstrap
    interval (seeds pooled) and the seeds' own differences (mean ± sd)."""
    small = stratum_label(SIZE_STRATA[0])
    titles = {"strict Dice": "strict Dice", "Dice per case": "Dice per case (3-D)"}
    titles["small F1"] = f"lesion F1, {small} lesions"
    lines = [
        f"Each run minus {labels.get(baseline, baseline)}, calibrated, on the seeds both "
        f"finished: the difference with its {100 * LEVEL:.0f} % bootstrap interval over the "
        "test subjects (seeds pooled), then the seeds' own differences (mean ± sd):",
        "",
        "| run | seeds | " + " | ".join(titles[f] for f in VERSUS_FIGURES) + " |",
        "|---|---|" + "---|" * len(VERSUS_FIGURES),
    ]
    numbers = {}
    for name in runs:
        if name == baseline:
            continue
        found, per_seed, both = _versus(out, name, baseline, seeds, n_resamples, folder)
        if found is None:
            continue
        numbers[name] = {"seeds": both, "intervals": found, "per_seed": per_seed}
        cells = []
        for figure in VERSUS_FIGURES:
            if figure not in found:
                cells.append("–")
                continue
            mean, sd, n = mean_sd(per_seed[figure])
            spread = f"{mean:+.3f}" if n < 2 else f"{mean:+.3f} ± {sd:.3f}"
            cells.append(f"{_cell(found[figure], True)}; seeds {spread}")
        lines.append(f"| {labels.get(name, name)} | {len(both)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), numbers


def lesion_load_table(
    out: Path,
    runs: dict,
    seeds: Sequence[int],
    labels: dict[str, str],
    groups: int = 3,
    folder: str = CALIBRATED,
) -> str:
    """Calibrated strict Dice and slices left empty, by the slice's lesion load (true lesion
    pixels), in ``groups`` equal-count groups cut on the test slices; seeds pooled.

    Where a row wins or loses: the smallest lesions are the hard part of PWML.
    """
    per_row = {}
    for name in runs:
        found = _seeds_with(out, name, seeds, folder)
        if found:
            per_row[name] = read_slice_records([slice_csv(out, name, s, folder) for s in found])
    if not per_row:
        return ""
    loads = sorted(r["metrics"].tp + r["metrics"].fn for r in next(iter(per_row.values())))
    cuts = [loads[int(len(loads) * g / groups)] for g in range(1, groups)]

    def group(record) -> int:
        load = record["metrics"].tp + record["metrics"].fn
        return sum(load >= c for c in cuts)

    bounds = [loads[0], *cuts, loads[-1] + 1]
    titles = [f"{lo}-{hi - 1} px" for lo, hi in zip(bounds[:-1], bounds[1:])]
    lines = [
        "Calibrated strict Dice by the slice's lesion load (true lesion pixels per slice, "
        f"{groups} groups of about equal size; seeds pooled); in brackets the share of the "
        "group's slices left without any prediction:",
        "",
        "| run | " + " | ".join(titles) + " |",
        "|" + "---|" * (groups + 1),
    ]
    for name, records in per_row.items():
        cells = []
        for g in range(groups):
            chosen = [r["metrics"] for r in records if group(r) == g]
            scored = [m.dice for m in chosen if not math.isnan(m.dice)]  # empty in both: none
            if not scored:
                cells.append("–")
                continue
            mean = sum(scored) / len(scored)
            empty = sum(m.pred_empty for m in chosen) / len(chosen)
            cells.append(f"{mean:.3f} ({100 * empty:.0f} % empty)")
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
