"""Lesion-wise figures by lesion size: are the smallest (punctate) lesions found and outlined?

Slice-averaged Dice is carried by the slices with larger lesions; the paper's claim
is about the small ones. Here each 2-D lesion (8-connected component of a slice's
truth, as in `lesionwise`) falls into a size stratum by its pixel count at the
slice's own resolution (`SIZE_STRATA`: 1-5, 6-15, 16+ px), and each stratum gets:

- ``recall``: true lesions of that size touched by the prediction;
- ``Dice``: the mean *lesion Dice* of those lesions, 2·|L ∩ P_L| / (|L| + |P_L|) with
  P_L the union of the predicted components touching lesion L (0 for a missed
  lesion, so it is strict: a miss is not left out). A predicted blob spanning two
  lesions counts whole for each, so merging neighbours costs Dice;
- ``F1``: 2·found / (2·found + missed + false positives), the false positives
  being the predicted components of that size touching no true lesion.

Counts are returned, not rates, so that slices, subjects and workers pool before any
ratio is taken; a stratum with nothing in it has NaN figures, never a perfect score.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..data.instances import label_lesions

__all__ = [
    "SIZE_STRATA",
    "stratum_name",
    "stratum_label",
    "SizeCounts",
    "lesion_size_counts",
    "pool_size_counts",
    "size_figures",
]

# (smallest, largest) pixels of a lesion in each stratum; None: no upper bound
SIZE_STRATA = ((1, 5), (6, 15), (16, None))


def stratum_name(stratum: tuple) -> str:
    """The stratum's key in results and CSV columns: "1to5px", "16pxplus" (no "-", since
    detectron2's result keys are metric names)."""
    low, high = stratum
    return f"{low}pxplus" if high is None else f"{low}to{high}px"


def stratum_label(stratum: tuple) -> str:
    """The stratum as tables show it: "1-5 px", "16+ px"."""
    low, high = stratum
    return f"{low}+ px" if high is None else f"{low}-{high} px"


@dataclass(frozen=True)
class SizeCounts:
    """One stratum's counts for one slice, or pooled (``a + b``)."""

    true_lesions: int = 0
    found: int = 0
    false_positives: int = 0  # predicted components of this size touching no true lesion
    dice_sum: float = 0.0  # sum of the lesion Dice of the true lesions (missed: 0)

    def __add__(self, other: "SizeCounts") -> "SizeCounts":
        return SizeCounts(
            self.true_lesions + other.true_lesions,
            self.found + other.found,
            self.false_positives + other.false_positives,
            self.dice_sum + other.dice_sum,
        )

    @property
    def recall(self) -> float:
        return float("nan") if self.true_lesions == 0 else self.found / self.true_lesions

    @property
    def dice(self) -> float:
        return float("nan") if self.true_lesions == 0 else self.dice_sum / self.true_lesions

    @property
    def f1(self) -> float:
        missed = self.true_lesions - self.found
        denom = 2 * self.found + missed + self.false_positives
        return float("nan") if denom == 0 else 2.0 * self.found / denom


def _stratum_of(sizes: np.ndarray) -> np.ndarray:
    """(N,) stratum index of each component size; every size >= 1 falls in one."""
    out = np.full(sizes.shape, -1, dtype=np.int64)
    for i, (low, high) in enumerate(SIZE_STRATA):
        out[(sizes >= low) & ((sizes <= high) if high is not None else True)] = i
    return out


def lesion_size_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[SizeCounts, ...]:
    """Per-stratum counts (one `SizeCounts` per `SIZE_STRATA` entry) of one 2-D slice.

    ``pred``, ``truth``: (H, W) binary masks of the same shape.
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"expected two (H, W) masks of one shape, got {pred.shape}, {truth.shape}")
    t_labels, n_true = label_lesions(truth)
    p_labels, n_pred = label_lesions(pred)
    t_sizes = np.bincount(t_labels.ravel(), minlength=n_true + 1)[1:]
    p_sizes = np.bincount(p_labels.ravel(), minlength=n_pred + 1)[1:]
    both = pred & truth
    # every (true lesion, predicted component) pair that overlaps, once
    pairs = np.unique(np.stack([t_labels[both], p_labels[both]]), axis=1) - 1  # (2, K)
    overlap = np.bincount(t_labels[both], minlength=n_true + 1)[1:]  # |L ∩ pred| = |L ∩ P_L|
    touching = np.bincount(pairs[0], weights=p_sizes[pairs[1]], minlength=n_true)  # |P_L|
    dice = 2.0 * overlap / (t_sizes + touching)
    found = overlap > 0
    hits_truth = np.zeros(n_pred, bool)
    hits_truth[pairs[1]] = True
    t_stratum, p_stratum = _stratum_of(t_sizes), _stratum_of(p_sizes)
    return tuple(
        SizeCounts(
            int((t_stratum == i).sum()),
            int((found & (t_stratum == i)).sum()),
            int((~hits_truth & (p_stratum == i)).sum()),
            float(dice[t_stratum == i].sum()),
        )
        for i in range(len(SIZE_STRATA))
    )


def pool_size_counts(per_slice: Iterable[tuple[SizeCounts, ...]]) -> tuple[SizeCounts, ...]:
    """Sum per-stratum counts over slices (or subjects)."""
    pooled = tuple(SizeCounts() for _ in SIZE_STRATA)
    for counts in per_slice:
        pooled = tuple(a + b for a, b in zip(pooled, counts))
    return pooled


def size_figures(pooled: tuple[SizeCounts, ...]) -> dict[str, float]:
    """Each stratum's figures: ``{"1to5px_lesions", "1to5px_found", "1to5px_recall",
    "1to5px_Dice", "1to5px_F1", "1to5px_FP", ...}`` (NaN rates where nothing was there)."""
    out = {}
    for stratum, c in zip(SIZE_STRATA, pooled):
        name = stratum_name(stratum)
        out[f"{name}_lesions"] = c.true_lesions
        out[f"{name}_found"] = c.found
        out[f"{name}_recall"] = c.recall
        out[f"{name}_Dice"] = c.dice
        out[f"{name}_F1"] = c.f1
        out[f"{name}_FP"] = c.false_positives
    return out
