"""Evaluate a folder of predicted NIfTI lesion masks against a folder of reference labels.

What ``rsrcnn-evaluate`` runs: volumes are paired by case id (``<case>.nii.gz``,
rsrcnn-predict's and nnU-Net's names, or ``<case>_lesion.nii.gz``), checked to lie on the
same voxel grid, cut into slices along one canonical axis exactly as
``prepare_pwml`` cuts training slices, and scored by the same per-slice records
and protocols as `PWMLEvaluator` (strict, reference, per-subject 3-D, lesion-wise
with 2-D lesions). On top, lesions as 3-D connected components of each whole
volume, the way a reader counts them. Every slice counts by default (whole
volumes); ``lesion_slices_only`` restricts the slice figures to slices with a
reference lesion, as the paper reports them.
"""

import logging
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..data.errors import PWMLDataError
from ..data.fileio import atomic_write_json
from ..data.nifti import (
    NIFTI_ENDINGS,
    affine_difference,
    axis_index,
    canonical_shape_and_zooms,
    case_name,
    read_volume,
    slice_spacing,
    volume_slice,
)
from ..data.owned_outputs import record_owned
from .lesionwise import LesionCounts, lesion_counts, lesion_f1, lesion_sensitivity
from .metrics import confusion
from .protocols import headline, slice_record, summarize_slices
from .report import SLICE_COLUMNS, format_headline, format_table, slice_row, write_csv_atomic

__all__ = [
    "CasePair",
    "pair_cases",
    "evaluate_case",
    "evaluate_folder",
    "PREDICTION_SUFFIX",
    "AFFINE_ATOL_MM",
]

logger = logging.getLogger(__name__)

PREDICTION_SUFFIX = "_lesion"  # rsrcnn-predict --mask-suffix _lesion (its earlier default)
PROBABILITY_SUFFIX = "_prob"  # rsrcnn-predict --save-prob: not masks, never paired
AFFINE_ATOL_MM = 1e-3  # float32 header rounding of different writers


@dataclass(frozen=True)
class CasePair:
    """One case's predicted and reference NIfTI files, paired by `pair_cases`."""

    case: str
    prediction: Path
    reference: Path


@dataclass(frozen=True)
class CaseResult:
    """One case's per-slice records and its whole-volume figures (every voxel, whatever
    slices were asked for): 3-D lesion counts and (tp, fp, fn) voxel counts."""

    records: list[dict]
    lesions3d: LesionCounts
    voxels: tuple[int, int, int]


def _masks_in(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise PWMLDataError(folder, f"{role} folder does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not path.name.endswith(NIFTI_ENDINGS):
            continue
        case = case_name(path)
        if role == "prediction" and case.endswith(PROBABILITY_SUFFIX):
            continue  # rsrcnn-predict --save-probabilities: a map, not a mask (references: a case)
        if role == "prediction" and case.endswith(PREDICTION_SUFFIX) and case != PREDICTION_SUFFIX:
            case = case[: -len(PREDICTION_SUFFIX)]
        if case in found:
            raise PWMLDataError(path, f"case {case!r} also given by {found[case].name}")
        found[case] = path
    if not found:
        raise PWMLDataError(folder, f"no NIfTI masks (.nii / .nii.gz) in the {role} folder")
    return found


def pair_cases(
    predictions: Union[str, Path], references: Union[str, Path], allow_missing: bool = False
) -> list[CasePair]:
    """Predicted and reference masks paired by case id, in case order.

    Args:
        predictions: folder of predicted masks (``<case>.nii.gz`` or
            ``<case>_lesion.nii.gz``; ``_prob`` maps are skipped).
        references: folder of reference labels (``<case>.nii.gz``).
        allow_missing: a reference without a prediction is an error unless this is set
            (then only the predicted cases are scored). A prediction without a
            reference is always an error (its figures would be meaningless).

    Returns:
        One `CasePair` per predicted case, sorted by case id. PWMLDataError on a missing
        folder, a folder without masks, a repeated case or an unpaired file.
    """
    preds = _masks_in(Path(predictions), "prediction")
    refs = _masks_in(Path(references), "reference")
    orphans = sorted(set(preds) - set(refs))
    if orphans:
        raise PWMLDataError(
            preds[orphans[0]],
            f"no reference label for {len(orphans)} predicted "
            f"case(s) in {references}: {', '.join(orphans[:5])}",
        )
    missing = sorted(set(refs) - set(preds))
    if missing and not allow_missing:
        raise PWMLDataError(
            predictions,
            f"no prediction for {len(missing)} reference case(s): "
            f"{', '.join(missing[:5])} (--allow-missing scores the others)",
        )
    return [CasePair(case, preds[case], refs[case]) for case in sorted(preds)]


def _binary(volume: np.ndarray, path: Path, binarize: bool) -> np.ndarray:
    if binarize:
        return volume > 0
    if volume.dtype.kind in "ub" and volume.max(initial=0) <= 1:  # the usual uint8 mask: one pass
        return volume.view(bool) if volume.dtype.itemsize == 1 else volume.astype(bool)
    if not ((volume == 0) | (volume == 1)).all():
        bad = np.unique(volume[(volume != 0) & (volume != 1)])[:5]
        raise PWMLDataError(
            path,
            f"mask is not binary (values such as {bad.tolist()} besides 0 "
            "and 1); --binarize treats every non-zero voxel as lesion",
        )
    return volume.astype(bool)


def _read_pair(pair: CasePair, binarize: bool):
    pred, ref = read_volume(pair.prediction), read_volume(pair.reference)
    if pred.source.shape != ref.source.shape:
        raise PWMLDataError(
            pair.prediction,
            f"shape {pred.source.shape} differs from the "
            f"reference {pair.reference} {ref.source.shape}",
        )
    if not np.allclose(pred.source.affine, ref.source.affine, atol=AFFINE_ATOL_MM):
        raise PWMLDataError(
            pair.prediction,
            f"affine differs from the reference {pair.reference} "
            f"({affine_difference(pred.source.affine, ref.source.affine)})",
        )
    _, zooms = canonical_shape_and_zooms(ref.source)  # the slices are cut from canonical voxels
    return (
        _binary(pred.canonical, pair.prediction, binarize),
        _binary(ref.canonical, pair.reference, binarize),
        zooms,
    )


def evaluate_case(
    pair: CasePair,
    axis: Union[str, int] = "axial",
    lesion_slices_only: bool = False,
    binarize: bool = False,
) -> CaseResult:
    """Per-slice records and whole-volume figures of one case; PWMLDataError naming a bad
    file.

    Args:
        pair: the case's two files; they must have the same shape and affine.
        axis: the slicing axis, a name ("axial", ...) or a canonical axis index.
        lesion_slices_only: keep only the slices with a reference lesion (the 3-D figures
            still cover every voxel).
        binarize: any non-zero voxel is lesion; else a mask with values other than 0
            and 1 is an error.

    Returns:
        A ``CaseResult``: `slice_record` of each kept slice, the 3-D lesion counts and the
        (tp, fp, fn) voxel counts of the whole volume.
    """
    pred, ref, zooms = _read_pair(pair, binarize)
    voxels = confusion(pred, ref)[:3]
    axis = axis_index(axis)
    spacing = slice_spacing(zooms, axis)
    in_plane = tuple(a for a in range(3) if a != axis)
    has_lesion = ref.any(axis=in_plane)
    keep = [k for k in range(ref.shape[axis]) if has_lesion[k] or not lesion_slices_only]
    if not keep:  # a lesion-free case and only lesion slices asked for: its 3-D counts only
        return CaseResult([], lesion_counts(pred, ref), voxels)
    # slice-major contiguous copies: the per-slice passes then read memory in order
    pred_slices = np.stack([volume_slice(pred, axis, k) for k in keep])
    ref_slices = np.stack([volume_slice(ref, axis, k) for k in keep])
    records = []
    for i, k in enumerate(keep):
        inp = {
            "file_name": pair.prediction.name,
            "image_id": f"{pair.case}:{k}",
            "subject": pair.case,
            "slice_index": k,
            "spacing": spacing,
        }
        records.append(slice_record(pred_slices[i], ref_slices[i], inp))
    return CaseResult(records, lesion_counts(pred, ref), voxels)


def _evaluate_one(pair, **kwargs):
    try:
        return pair, evaluate_case(pair, **kwargs), None
    except PWMLDataError as e:
        return pair, None, e


def _scored(pairs: list[CasePair], workers: int, progress: bool, **kwargs):
    from tqdm import tqdm

    work = partial(_evaluate_one, **kwargs)
    bar = dict(total=len(pairs), desc="evaluating", unit="case", disable=not progress)
    if workers <= 1 or len(pairs) == 1:
        yield from tqdm(map(work, pairs), **bar)
        return
    with get_context("fork").Pool(min(workers, len(pairs))) as pool:
        yield from tqdm(pool.imap(work, pairs), **bar)


def evaluate_folder(
    predictions: Union[str, Path],
    references: Union[str, Path],
    output: Optional[Union[str, Path]] = None,
    *,
    axis: str = "axial",
    lesion_slices_only: bool = False,
    binarize: bool = False,
    allow_missing: bool = False,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Score every predicted case; write ``slices.csv``, ``cases.csv``, ``summary.json`` to
    ``output``.

    The first bad file stops the run with its error.

    Args:
        predictions, references, allow_missing: as `pair_cases`.
        output: folder for the three files (created; None: write nothing).
        axis, lesion_slices_only, binarize: as `evaluate_case`.
        workers: processes reading and scoring cases in parallel (1: this process).
        progress: show a progress bar.

    Returns:
        The summary: ``headline`` first (per-case Dice of the whole volumes, cases empty
        in both left out and counted; lesion-wise F1 of 3-D lesions), then the slice
        protocols' results, 3-D lesion-wise figures and what the figures cover.
    """
    pairs = pair_cases(predictions, references, allow_missing)
    records: list[dict] = []
    lesions3d: dict[str, LesionCounts] = {}
    voxels: dict[str, tuple[int, int, int]] = {}
    for pair, result, error in _scored(
        pairs,
        workers,
        progress,
        axis=axis,
        lesion_slices_only=lesion_slices_only,
        binarize=binarize,
    ):
        if error is not None:
            raise error
        records.extend(result.records)
        lesions3d[pair.case] = result.lesions3d
        voxels[pair.case] = result.voxels
    if not records:
        raise PWMLDataError(
            references,
            "no slice to score (no reference lesion in any volume, "
            "and only lesion slices were asked for)",
        )
    results, case_rows = summarize_slices(records)
    pooled = sum(lesions3d.values(), LesionCounts())
    for row in case_rows:
        counts = lesions3d[row["subject"]]
        row.update(
            true_lesions_3d=counts.true_lesions,
            found_3d=counts.found,
            predicted_3d=counts.predicted,
            false_positives_3d=counts.false_positives,
        )
    results.pop("pwml_headline")  # of the scored slices; the whole volumes' follows
    summary = {
        "headline": headline(voxels, pooled),
        "slices": (
            "lesion slices only (as the paper)"
            if lesion_slices_only
            else "all slices; slice figures over slices with a lesion in truth or prediction"
        ),
        "axis": axis,
        "n_cases": len(pairs),
        "distance_units": (
            "HD/HD95 in pixels (voxels for 3-D); HD_mm/HD95_mm in mm from the headers"
        ),
        **results,
        "pwml_lesion3d": {
            "true_lesions": pooled.true_lesions,
            "found": pooled.found,
            "predicted": pooled.predicted,
            "false_positives": pooled.false_positives,
            "sensitivity": lesion_sensitivity(pooled),
            "F1": lesion_f1(pooled),
            "FP_per_case": pooled.false_positives / len(pairs),
        },
        "cases": [p.case for p in pairs],
    }
    if output is not None:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        rows = sorted(records, key=lambda r: (r["subject"], r["z"]))
        write_csv_atomic(str(output / "slices.csv"), SLICE_COLUMNS, [slice_row(r) for r in rows])
        write_csv_atomic(str(output / "cases.csv"), list(case_rows[0].keys()), case_rows)
        atomic_write_json(output / "summary.json", summary)
        record_owned(output, ("slices.csv", "cases.csv", "summary.json"), "rsrcnn-evaluate")
    return summary


def format_summary(summary: dict) -> str:
    """The headline first (per-case Dice of the whole volumes, 3-D lesion F1), then the
    slice protocols' table and what the figures cover."""
    return (
        f"{format_headline(summary['headline'])}\n\n"
        f"slice figures (the paper's protocols, for comparison):\n"
        f"{format_table(summary)}\n"
        f"{summary['n_cases']} cases, {summary['axis']} slices: {summary['slices']}"
    )
