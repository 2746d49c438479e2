"""Which row, or which pair of rows ensembled, to predict with: nnU-Net's
``nnUNetv2_find_best_configuration`` over tools/run_cv.py outputs (``rsrcnn-find-best``).

Every candidate is judged on the same out-of-fold cases, each case predicted by
the fold model that did not train on it:

- a row: its pooled ``OUT/oof/evaluation/summary.json`` as run_cv scored it;
- a pair of rows: per case, the mean of the two rows' out-of-fold probability
  maps (``OUT/oof/probabilities``, run_cv with save_probabilities), thresholded
  as `rsrcnn_d2.inference.ensemble_folders` thresholds (``mean >= threshold``,
  the rows' MODEL.RSRCNN.MASK_THRESHOLD unless given), scored by
  `evaluate_folder` against the rows' references.

Candidates are ranked by the headline's ``case_dice`` (mean per-case 3-D Dice
over cases with a lesion in truth or prediction) or ``lesion_f1_3d``; an
undefined (NaN) figure ranks last, a tie goes to the candidate listed first
(rows before pairs: the cheaper one). The chosen candidate's commands
(rsrcnn-predict for each row, rsrcnn-ensemble for a pair) go to
``inference_command.txt``. As in nnU-Net, the out-of-fold figures come from
single fold models, while the command predicts new cases with every fold's
model ensembled (rsrcnn-predict ``-m``).
"""

import logging
import math
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Optional, Union

from ..data.errors import PWMLDataError
from ..data.fileio import (
    atomic_write,
    atomic_write_json,
    nan_for_null,
    remove_stale_staging,
    replace_dir,
    staging_dir_for,
)
from .cv_rows import HEADLINE, CVRow, check_probabilities, check_same_cases, read_cv_row

__all__ = [
    "METRICS",
    "ensemble_summary",
    "rank",
    "inference_commands",
    "Plan",
    "plan",
    "run_plan",
    "find_best",
    "format_candidates",
]

logger = logging.getLogger(__name__)

METRICS = ("case_dice", "lesion_f1_3d")  # the headline figures a candidate is ranked by


def ensemble_summary(
    members: Sequence[CVRow],
    output: Path,
    threshold: float,
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Score the members' mean out-of-fold probability maps, thresholded; the evaluation
    (with ``predictions/``) is published as ``output`` only when complete."""
    from ..evaluation.folder import evaluate_folder
    from ..inference.ensemble_folders import ensemble_folders

    remove_stale_staging(output)
    staging = staging_dir_for(output)
    try:
        ensemble_folders(
            [m.probabilities for m in members],
            staging / "predictions",
            threshold=threshold,
            progress=progress,
            cases=members[0].cases,
        )
        # binarize: labels that run_cv scored are binary (identical either way) or were
        # binarized by the cohort's conversion, which this reproduces
        summary = evaluate_folder(
            staging / "predictions",
            members[0].references,
            staging / "evaluation",
            axis=members[0].axis,
            binarize=True,
            workers=workers,
            progress=False,
        )
        replace_dir(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _sort_key(value: float) -> float:
    return math.inf if value is None or math.isnan(value) else -value


def rank(candidates: Sequence[dict], metric: str) -> list[dict]:
    """Best first by ``metric``; NaN last; ties keep the given order (stable sort)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    return sorted(candidates, key=lambda c: _sort_key(c[metric]))


def _predict_command(row: CVRow, output: str, save_probabilities: bool) -> list[str]:
    from ..checkpoint import trained_weights

    command = ["rsrcnn-predict", "-i", "INPUT_FOLDER", "-o", output]
    folds = [row.folder / f"fold_{f}" for f in range(len(row.fold_weights))]
    # by name: the folder may have moved since predictions.json recorded its paths
    if all(w.name == trained_weights(d).name for w, d in zip(row.fold_weights, folds)):
        command += ["-m", str(row.folder.resolve())]
    else:  # run_cv --checkpoint final: rsrcnn-predict -m would take model_best.pth
        command += ["--config-file", str((folds[0] / "config.yaml").resolve()), "--weights"]
        command += [str((d / w.name).resolve()) for w, d in zip(row.fold_weights, folds)]
    # the folds' own choice, said explicitly: the same whatever the config or the defaults
    command.append("--tta" if row.flip_tta else "--disable-tta")
    if save_probabilities:
        command.append("--save-probabilities")
    return command


def inference_commands(members: Sequence[CVRow], threshold: float) -> list[str]:
    """Shell lines predicting INPUT_FOLDER into OUTPUT_FOLDER as the chosen candidate does."""
    if len(members) == 1:
        return [shlex.join(_predict_command(members[0], "OUTPUT_FOLDER", False))]
    outputs = [f"OUTPUT_FOLDER_{m.name}" for m in members]
    lines = [shlex.join(_predict_command(m, o, True)) for m, o in zip(members, outputs)]
    ensemble = ["rsrcnn-ensemble", "-i", *outputs, "-o", "OUTPUT_FOLDER"]
    return lines + [shlex.join([*ensemble, "--threshold", str(threshold)])]


def _pair_threshold(pair: Sequence[CVRow], threshold: Optional[float]) -> float:
    if threshold is not None:
        return threshold
    levels = {m.mask_threshold for m in pair}
    if len(levels) > 1:
        raise PWMLDataError(
            pair[1].folder,
            f"rows {pair[0].name} and {pair[1].name} threshold their masks at "
            f"{pair[0].mask_threshold:g} and {pair[1].mask_threshold:g}: pass --threshold "
            "for their ensemble (or --disable-ensembling)",
        )
    return levels.pop()


def _candidate(name: str, members: Sequence[CVRow], headline: dict, summary: Path) -> dict:
    return {"name": name, "members": [m.name for m in members], **headline, "summary": str(summary)}


def _check_output(output: Path, rows: Sequence[CVRow]) -> None:
    if output.exists() and not output.is_dir():
        raise PWMLDataError(output, "output must be a folder, not an existing file")
    for row in rows:
        if output.resolve().is_relative_to(row.folder.resolve()):
            raise PWMLDataError(
                output, f"output folder lies inside the cross-validation folder {row.folder}"
            )


@dataclass(frozen=True)
class Plan:
    """What `run_plan` scores, every input checked: the rows, their pairs and each pair's
    threshold, the metric and the output folder."""

    rows: list[CVRow]
    pairs: list[tuple]
    thresholds: dict[tuple, float]  # (name, name) -> the pair's threshold
    metric: str
    output: Path


def plan(
    specs: Sequence[Union[str, Path]],
    output: Union[str, Path],
    metric: str = "case_dice",
    ensembles: bool = True,
    threshold: Optional[float] = None,
) -> Plan:
    """Read and check every input before anything is scored or written: complete CVs,
    distinct names, an output outside them, the same cases and labels, and for pairs
    their probability maps and threshold. PWMLDataError names the first problem."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    rows = [read_cv_row(spec) for spec in specs]
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise PWMLDataError(specs[0], f"row names repeat ({', '.join(names)}): give NAME=FOLDER")
    output = Path(output)
    _check_output(output, rows)
    check_same_cases(rows)
    pairs = list(combinations(rows, 2)) if ensembles else []
    for row in {m.name: m for pair in pairs for m in pair}.values():
        check_probabilities(row)
    levels = {_names(p): _pair_threshold(p, threshold) for p in pairs}
    return Plan(rows, pairs, levels, metric, output)


def _names(members: Sequence[CVRow]) -> tuple:
    return tuple(m.name for m in members)


def run_plan(checked: Plan, workers: int = 1, progress: bool = False) -> dict:
    """Score the pairs, rank every candidate; write ``find_best.json`` and
    ``inference_command.txt`` to the plan's output and return the record."""
    rows, output, metric = checked.rows, checked.output, checked.metric
    candidates = [
        _candidate(r.name, [r], r.headline, r.folder / "oof" / "evaluation" / "summary.json")
        for r in rows
    ]
    for pair in checked.pairs:
        name = "+".join(_names(pair))
        logger.info("scoring the ensemble %s on %d out-of-fold cases", name, len(pair[0].cases))
        folder = output / "ensembles" / name
        summary = ensemble_summary(
            pair, folder, checked.thresholds[_names(pair)], workers, progress
        )
        headline = {key: nan_for_null(summary["headline"])[key] for key in HEADLINE}
        candidates.append(_candidate(name, pair, headline, folder / "evaluation" / "summary.json"))
    ranked = rank(candidates, metric)
    best = ranked[0]
    members = [next(r for r in rows if r.name == m) for m in best["members"]]
    level = checked.thresholds.get(tuple(best["members"]), members[0].mask_threshold)
    commands = inference_commands(members, level)
    record = {
        "metric": metric,
        "rows": {
            r.name: {
                "folder": str(r.folder.resolve()),
                "mask_threshold": r.mask_threshold,
                "flip_tta": r.flip_tta,
            }
            for r in rows
        },
        "ensemble_thresholds": {"+".join(k): v for k, v in checked.thresholds.items()},
        "cases": rows[0].cases,
        "candidates": candidates,
        "ranking": [c["name"] for c in ranked],
        "best": best,
        "inference_command": commands,
        "note": "out-of-fold figures: each case predicted by the one fold model that did not "
        "train on it; the command predicts with every fold's model (rsrcnn-predict -m)",
    }
    atomic_write_json(output / "find_best.json", record)
    header = (
        f"# rsrcnn-find-best: {best['name']} has the best {metric} on the out-of-fold cases "
        f"({_cell(best[metric])}); replace INPUT_FOLDER and OUTPUT_FOLDER*\n"
    )
    text = header + "\n".join(commands) + "\n"
    atomic_write(output / "inference_command.txt", lambda tmp: Path(tmp).write_text(text))
    return record


def find_best(
    specs: Sequence[Union[str, Path]],
    output: Union[str, Path],
    metric: str = "case_dice",
    ensembles: bool = True,
    threshold: Optional[float] = None,
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """`plan` then `run_plan`: rank every row and (``ensembles``) every pair of rows."""
    return run_plan(plan(specs, output, metric, ensembles, threshold), workers, progress)


def _cell(value) -> str:
    return (
        "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
    )


def format_candidates(record: dict) -> str:
    """The table of every candidate, best first, the chosen one marked."""
    lines = [
        "| | candidate | case Dice | lesion F1 (3-D) | cases scored | empty in both |",
        "|---|---|---|---|---|---|",
    ]
    by_name = {c["name"]: c for c in record["candidates"]}
    for name in record["ranking"]:
        c = by_name[name]
        mark = "best" if name == record["best"]["name"] else ""
        lines.append(
            f"| {mark} | {name} | {_cell(c['case_dice'])} | {_cell(c['lesion_f1_3d'])} | "
            f"{c['n_cases_scored']} | {c['n_cases_empty_both']} |"
        )
    lines.append(f"\nranked by {record['metric']}; – undefined (ranked last)")
    return "\n".join(lines)
