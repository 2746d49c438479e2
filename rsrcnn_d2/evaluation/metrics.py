"""Per-slice metrics on binary masks, as plain functions on arrays.

Edge cases are defined, not left to chance:
- Dice of two empty masks is undefined (NaN): nothing was there to find, so
  nothing was found right either. Scoring it 1 let a model that predicts nothing
  look good on any whole volume; callers exclude such slices or cases from means
  and count them (nnU-Net's convention for empty cases). Dice with an empty
  truth and a non-empty prediction, or the reverse, is 0.
- Sensitivity with an empty truth is undefined and returned as NaN (callers
  decide whether to skip it); specificity with no negatives likewise.
- HD / HD95 (see distance.py): HD over all pixels as the reference computes
  it, HD95 by the standard boundary definition (MONAI's, nnU-Net users'); NaN
  when either mask is empty (no boundary to measure; "missing" when exactly one is).

`slice_metrics` computes every per-slice figure the evaluator reports in one
pass: all of them depend only on the pixels inside the bounding box of the
union of both masks (true negatives outside it are counted, not visited), so a
512×512 slice with a few punctate lesions costs a small crop, not the slice.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .distance import check_spacing, hausdorff_distances, union_bounding_box
from .lesionwise import LesionCounts, lesion_counts

__all__ = [
    "confusion",
    "dice",
    "sensitivity",
    "specificity",
    "dice_from_counts",
    "sensitivity_from_counts",
    "specificity_from_counts",
    "SliceMetrics",
    "slice_metrics",
    "mean_of_defined",
]


def confusion(pred: np.ndarray, truth: np.ndarray):
    """(tp, fp, fn, tn) pixel counts of two same-shaped binary masks."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    tn = pred.size - tp - fp - fn
    return tp, fp, fn, tn


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice from counts, so that slices or a case's voxels can be pooled before the ratio.

    Args:
        tp, fp, fn: pixel (or voxel) counts, e.g. from `confusion`.

    Returns:
        2·TP / (2·TP + FP + FN); NaN when both masks are empty.
    """
    denom = 2 * tp + fp + fn
    return float("nan") if denom == 0 else 2.0 * tp / denom


def sensitivity_from_counts(tp: int, fn: int) -> float:
    """TP / (TP + FN); NaN with an empty truth."""
    return float("nan") if tp + fn == 0 else tp / (tp + fn)


def specificity_from_counts(fp: int, tn: int) -> float:
    """TN / (TN + FP); NaN when there are no negatives."""
    return float("nan") if tn + fp == 0 else tn / (tn + fp)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two same-shaped binary masks; NaN when both are empty (module docstring)."""
    tp, fp, fn, _ = confusion(pred, truth)
    return dice_from_counts(tp, fp, fn)


def sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pixel sensitivity of two same-shaped binary masks; NaN with an empty truth."""
    tp, _, fn, _ = confusion(pred, truth)
    return sensitivity_from_counts(tp, fn)


def specificity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pixel specificity of two same-shaped binary masks; NaN with no negatives."""
    _, fp, _, tn = confusion(pred, truth)
    return specificity_from_counts(fp, tn)


@dataclass(frozen=True)
class SliceMetrics:
    """Every per-slice figure of one (prediction, truth) pair.

    ``hd``/``hd95`` are in pixels; ``hd_mm``/``hd95_mm`` in the units of the
    spacing given (NaN when none was). ``lesions``: lesion-wise counts.
    """

    tp: int
    fp: int
    fn: int
    tn: int
    dice: float
    sensitivity: float
    specificity: float
    hd: float
    hd95: float
    hd_mm: float
    hd95_mm: float
    lesions: LesionCounts

    @property
    def truth_empty(self) -> bool:
        """No lesion pixel in the truth (the slice's sensitivity is undefined)."""
        return self.tp + self.fn == 0

    @property
    def pred_empty(self) -> bool:
        """No predicted pixel (the reference protocol skips such slices)."""
        return self.tp + self.fp == 0


def slice_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Optional[Sequence[float]] = None
) -> SliceMetrics:
    """Dice, sensitivity, specificity, HD, HD95 and lesion counts of one 2-D slice.

    Edge cases as in the module docstring.

    Args:
        pred, truth: (H, W) binary masks of the same shape.
        spacing: (row, column) pixel size in mm, or None (then the mm figures are NaN).

    Returns:
        `SliceMetrics`; both masks empty: tn = H·W, Dice, sensitivity and distances NaN.
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    spacing = check_spacing(spacing, pred.ndim)
    size = pred.size
    box = union_bounding_box(pred, truth)
    if box is None:  # both empty: nothing to find, so no Dice and no distance
        nan = float("nan")
        spec = specificity_from_counts(0, size)
        return SliceMetrics(0, 0, 0, size, nan, nan, spec, nan, nan, nan, nan, LesionCounts())
    pred, truth = pred[box], truth[box]  # outside the box: true negatives only
    tp, fp, fn, _ = confusion(pred, truth)
    tn = size - tp - fp - fn
    hd, hd95 = hausdorff_distances(pred, truth)
    if spacing is None:
        hd_mm = hd95_mm = float("nan")
    elif spacing[0] == spacing[1]:  # isotropic: a scale, no second distance pass
        hd_mm, hd95_mm = hd * spacing[0], hd95 * spacing[0]
    else:
        hd_mm, hd95_mm = hausdorff_distances(pred, truth, spacing)
    return SliceMetrics(
        tp,
        fp,
        fn,
        tn,
        dice_from_counts(tp, fp, fn),
        sensitivity_from_counts(tp, fn),
        specificity_from_counts(fp, tn),
        hd,
        hd95,
        hd_mm,
        hd95_mm,
        lesion_counts(pred, truth),
    )


def mean_of_defined(values: Iterable[float]) -> tuple[float, int, int]:
    """(mean of the non-NaN values, how many were used, how many were NaN).

    Undefined per-slice values (sensitivity on an empty truth, HD with one empty
    mask) are excluded from means and counted, never silently dropped or zeroed.
    The mean of nothing is NaN.
    """
    used = [float(v) for v in values]
    defined = [v for v in used if not math.isnan(v)]
    mean = math.fsum(defined) / len(defined) if defined else float("nan")
    return mean, len(defined), len(used) - len(defined)
