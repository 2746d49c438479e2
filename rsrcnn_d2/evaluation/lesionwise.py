"""Lesion-wise detection: which true lesions were found, which predicted blobs are false.

Pixel overlap metrics are dominated by the few larger lesions; a reader cares
whether each punctate lesion was seen at all. Lesions are the connected
components of a 2-D mask with the dataset's connectivity
(`rsrcnn_d2.data.instances.label_lesions`, 8-neighbourhood), so the lesions
counted here are the instances the model was trained on. Given whole volumes,
lesions are 3-D components (26-neighbourhood), as a reader counts them.

Definitions:
- a true lesion is *found* if any predicted pixel lies on it (any overlap);
- a predicted component is a *false positive* if it touches no true lesion;
- one predicted blob covering two true lesions finds both; two predicted blobs
  on one lesion find it once and neither is a false positive (merges and splits
  are not penalised: this is detection, not instance segmentation).

Counts are returned, not rates, so that they can be pooled over slices,
subjects or workers before any ratio is taken.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..data.instances import label_lesions
from .distance import union_bounding_box

__all__ = [
    "LesionCounts",
    "Counts",
    "lesion_counts",
    "lesion_sensitivity",
    "false_positives_per_slice",
    "lesion_f1",
]


@dataclass(frozen=True)
class LesionCounts:
    """Lesion-wise counts of one slice or pooled over many (``a + b``, ``sum(...)``)."""

    true_lesions: int = 0  # connected components of the truth
    found: int = 0  # true lesions overlapped by the prediction
    predicted: int = 0  # connected components of the prediction
    false_positives: int = 0  # predicted components overlapping no true lesion

    @property
    def missed(self) -> int:
        """True lesions no predicted pixel touched (FN of `lesion_f1`)."""
        return self.true_lesions - self.found

    def __add__(self, other: "LesionCounts") -> "LesionCounts":
        return LesionCounts(
            self.true_lesions + other.true_lesions,
            self.found + other.found,
            self.predicted + other.predicted,
            self.false_positives + other.false_positives,
        )

    def __radd__(self, other):  # lets sum() start from 0
        return self if isinstance(other, int) and other == 0 else NotImplemented


Counts = Union[LesionCounts, Iterable[LesionCounts]]  # one slice's, pooled, or per slice


def lesion_counts(pred: np.ndarray, truth: np.ndarray) -> LesionCounts:
    """Lesion-wise counts of one 2-D slice or 3-D volume (definitions in the module docstring).

    ``pred``, ``truth``: same-shaped binary masks, (H, W) (8-connected lesions) or
    (Z, H, W) (26-connected).
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    box = union_bounding_box(pred, truth)
    if box is None:
        return LesionCounts()
    pred, truth = pred[box], truth[box]  # components lie inside the box: same labels
    truth_labels, n_true = label_lesions(truth)
    pred_labels, n_pred = label_lesions(pred)
    both = pred & truth
    found = np.unique(truth_labels[both]).size
    hitting = np.unique(pred_labels[both]).size  # predicted components touching truth
    return LesionCounts(n_true, found, n_pred, n_pred - hitting)


def _pool(counts: Counts) -> LesionCounts:
    return counts if isinstance(counts, LesionCounts) else sum(counts, LesionCounts())


def lesion_sensitivity(counts: Counts) -> float:
    """found / true lesions; NaN when there is no true lesion. Accepts one or many counts."""
    c = _pool(counts)
    return float("nan") if c.true_lesions == 0 else c.found / c.true_lesions


def false_positives_per_slice(counts: Counts, num_slices: Optional[int] = None) -> float:
    """False-positive components per slice; NaN for no slices.

    ``counts`` is one LesionCounts per slice, or already pooled counts with
    ``num_slices`` given.
    """
    if isinstance(counts, LesionCounts):
        if num_slices is None:
            raise ValueError("pooled counts need num_slices")
        pooled, n = counts, num_slices
    else:
        counts = list(counts)
        pooled, n = _pool(counts), len(counts) if num_slices is None else num_slices
    return float("nan") if n == 0 else pooled.false_positives / n


def lesion_f1(counts: Counts) -> float:
    """Lesion-wise F1 = 2·found / (2·found + missed + false positives).

    TP is counted on the truth side (found lesions), FN = missed lesions and FP =
    predicted components touching no lesion, so every true lesion and every false
    blob is counted exactly once. With no true lesion and no false positive
    nothing was there to find: NaN (undefined, as Dice of two empty masks), never
    a perfect score from empty counts.
    """
    c = _pool(counts)
    denom = 2 * c.found + c.missed + c.false_positives
    return float("nan") if denom == 0 else 2.0 * c.found / denom
