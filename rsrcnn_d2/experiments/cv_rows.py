"""A finished tools/run_cv.py output read as one candidate row of rsrcnn-find-best.

What a row brings: its pooled out-of-fold headline figures
(``OUT/oof/evaluation/summary.json``), the cases and labels they were scored on,
the out-of-fold probability maps (``OUT/oof/probabilities``, run_cv with
save_probabilities) and what its fold models predicted with (each fold's
``predictions.json``: weights, MODEL.RSRCNN.MASK_THRESHOLD, TEST.FLIP_TTA), so
that the inference command reproduces the way the figures were made. Anything
missing or unfinished is a PWMLDataError naming the file.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..data.errors import PWMLDataError
from ..data.fileio import nan_for_null, read_json

__all__ = [
    "HEADLINE",
    "CVRow",
    "read_cv_row",
    "check_same_cases",
    "check_probabilities",
]

# evaluate_folder's summary["headline"]
HEADLINE = ("case_dice", "n_cases_scored", "n_cases_empty_both", "lesion_f1_3d")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class CVRow:
    """One finished cross-validation output (tools/run_cv.py OUT) and what find-best needs of it."""

    name: str
    folder: Path
    headline: dict[str, float]
    cases: list[str]
    axis: str
    mask_threshold: float  # MODEL.RSRCNN.MASK_THRESHOLD the fold models predicted with
    flip_tta: bool  # TEST.FLIP_TTA they predicted with
    fold_weights: list[Path]

    @property
    def probabilities(self) -> Path:
        return self.folder / "oof" / "probabilities"

    @property
    def references(self) -> Path:
        return self.folder / "oof" / "references"


def _headline(summary: dict, path: Path) -> dict[str, float]:
    if "headline" not in summary:
        raise PWMLDataError(
            path,
            "has no headline figures (scored by an earlier version); score the folder again: "
            f"rsrcnn-evaluate {path.parent.parent / 'references'} "
            f"{path.parent.parent / 'predictions'} -o {path.parent}",
        )
    figures = nan_for_null(summary["headline"])
    return {key: figures[key] for key in HEADLINE}


def _fold_settings(fold_dir: Path):
    """(weights, mask threshold, flip TTA) the fold's held-out cases were predicted with."""
    import yaml

    stamp_file = fold_dir / "predictions.json"
    if not stamp_file.is_file():
        raise PWMLDataError(
            fold_dir, "has no predictions.json: its held-out cases were not predicted"
        )
    stamp = read_json(stamp_file)
    try:
        model = yaml.safe_load(stamp["config"]["MODEL"])
        test = yaml.safe_load(stamp["config"]["TEST"])
        return Path(stamp["weights"]), float(model["RSRCNN"]["MASK_THRESHOLD"]), test["FLIP_TTA"]
    except (KeyError, TypeError, yaml.YAMLError) as e:
        raise PWMLDataError(stamp_file, f"does not record the prediction config ({e!r})") from e


def read_cv_row(spec: Union[str, Path]) -> CVRow:
    """A row from ``[NAME=]FOLDER`` (NAME defaults to the folder's name); PWMLDataError if the
    folder is not a complete, scored cross-validation."""
    text = str(spec)
    name, _, folder = text.partition("=") if "=" in text else ("", "", text)
    folder = Path(folder)
    name = name or folder.resolve().name
    if not _NAME.fullmatch(name):
        raise PWMLDataError(text, f"row name {name!r}: use letters, digits, '_', '.', '-'")
    if not folder.is_dir():
        raise PWMLDataError(folder, "cross-validation folder does not exist")
    record_file = folder / "cv_summary.json"
    if not record_file.is_file():
        raise PWMLDataError(folder, "has no cv_summary.json: not a finished tools/run_cv.py output")
    record = read_json(record_file)
    if not record.get("complete"):
        raise PWMLDataError(
            record_file,
            f"cross-validation is incomplete: folds {record.get('folds')} of "
            f"{record.get('num_folds')} scored; run the others with tools/run_cv.py first",
        )
    summary_file = folder / "oof" / "evaluation" / "summary.json"
    if not summary_file.is_file():
        raise PWMLDataError(
            folder, "has no oof/evaluation/summary.json: out-of-fold cases unscored"
        )
    summary = read_json(summary_file)
    settings = [_fold_settings(folder / f"fold_{f}") for f in range(record["num_folds"])]
    thresholds, tta = {s[1] for s in settings}, {s[2] for s in settings}
    if len(thresholds) > 1 or len(tta) > 1:
        raise PWMLDataError(
            folder,
            f"folds predicted with different MASK_THRESHOLD {sorted(thresholds)} or "
            f"FLIP_TTA {sorted(tta)}: not one row",
        )
    return CVRow(
        name,
        folder,
        _headline(summary, summary_file),
        list(summary["cases"]),
        summary.get("axis", "axial"),
        thresholds.pop(),
        bool(tta.pop()),
        [s[0] for s in settings],
    )


def check_same_cases(rows: Sequence[CVRow]) -> None:
    """PWMLDataError unless every row was scored on the first row's cases and labels."""
    first = rows[0]
    for row in rows[1:]:
        if row.cases != first.cases:
            differ = sorted(set(row.cases) ^ set(first.cases))
            raise PWMLDataError(
                row.folder,
                f"was evaluated on other cases than {first.folder} ({len(differ)} differ: "
                f"{', '.join(differ[:5])}); rows are compared on the same cases only",
            )
        for case in row.cases:
            mine, theirs = (_reference(r, case) for r in (row, first))
            if mine.read_bytes() != theirs.read_bytes():
                raise PWMLDataError(mine, f"reference label differs from {theirs}")


def _reference(row: CVRow, case: str) -> Path:
    found = [row.references / f"{case}{end}" for end in (".nii.gz", ".nii")]
    found = [p for p in found if p.is_file()]
    if not found:
        raise PWMLDataError(row.references, f"has no reference label of case {case!r}")
    return found[0]


def check_probabilities(row: CVRow) -> None:
    """PWMLDataError unless the row has an out-of-fold probability map of every case."""
    missing = [c for c in row.cases if not (row.probabilities / f"{c}_prob.nii.gz").is_file()]
    if missing:
        raise PWMLDataError(
            row.probabilities,
            f"no out-of-fold probability map for {len(missing)} of {len(row.cases)} cases "
            f"({', '.join(missing[:3])}): run tools/run_cv.py again with --save-probabilities "
            "(folds are not retrained), or pass --disable-ensembling",
        )
