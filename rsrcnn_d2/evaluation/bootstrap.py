"""Bootstrap intervals over test subjects for slice-averaged figures and their differences.

Why subjects: slices of one subject share its anatomy, contrast and lesion load,
so they are not independent draws; the unit a new user brings is a subject. A
figure averaged over slices (strict Dice) is a ratio: sum of slice values over
the number of slices. Each bootstrap sample draws subjects with replacement and
takes that ratio over their slices; a difference of two rows uses the same draw
for both (paired), so what the subjects share cancels. Percentile intervals.
"""

from collections.abc import Sequence
from typing import Optional

import numpy as np

__all__ = ["resample_ratios", "subject_interval", "paired_difference_interval"]


def resample_ratios(
    sums: np.ndarray, counts: np.ndarray, n_resamples: int = 10000, seed: int = 0
) -> np.ndarray:
    """Bootstrap samples of K slice averages, drawing subjects (not slices) with replacement.

    Args:
        sums: (S,) or (K, S): per subject, the sum of its slice values for each of K
            figures (rows).
        counts: (S,): each subject's number of slices, all > 0; or (K, S), each figure's
            own denominators (a ratio of pooled counts such as lesion F1, whose
            denominator differs between rows), each row with a positive total.
        n_resamples: number of draws of S subjects.
        seed: seed of numpy's generator, so that intervals are reproducible.

    Returns:
        (n_resamples, K) float64: per draw, ``sum(sums[k, drawn]) / sum(counts[k, drawn])``
        (NaN for a draw whose denominator is 0). The same draws serve every row, which is
        what makes differences paired.
    """
    sums = np.atleast_2d(np.asarray(sums, dtype=np.float64))
    counts = np.asarray(counts, dtype=np.float64)
    per_row = counts.ndim == 2
    if (
        sums.ndim != 2
        or counts.ndim not in (1, 2)
        or sums.shape[1] != counts.shape[-1]
        or (per_row and counts.shape != sums.shape)
    ):
        raise ValueError(f"sums {sums.shape} and counts {counts.shape} disagree on the subjects")
    # slice counts: every subject needs one; per-row denominators: every row a positive total
    needed = counts.sum(axis=-1) if per_row else counts
    if counts.shape[-1] == 0 or np.any(counts < 0) or np.any(needed <= 0):
        raise ValueError("every subject needs at least one slice")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, counts.shape[-1], size=(n_resamples, counts.shape[-1]))
    dens = np.broadcast_to(counts, sums.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = [row[draws].sum(axis=1) / den[draws].sum(axis=1) for row, den in zip(sums, dens)]
    return np.stack(ratios, axis=1)


# the largest share of draws that may have nothing to divide by (every drawn subject with a
# zero denominator) before the interval is undefined: past it, a few subjects carry the figure
MAX_UNDEFINED_DRAWS = 0.05


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the defined draws; NaN when more than `MAX_UNDEFINED_DRAWS` of
    them are undefined (a figure that few subjects carry has no honest interval)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    defined = samples[~np.isnan(samples)]  # draws with nothing to divide by
    if samples.size == 0 or defined.size < (1 - MAX_UNDEFINED_DRAWS) * samples.size:
        return float("nan"), float("nan")
    samples = defined
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def subject_interval(
    sums: Sequence[float],
    counts: Sequence[float],
    level: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """A slice-averaged figure with its subject-bootstrap interval.

    Args:
        sums: (S,): per subject, the sum of its slice values.
        counts: (S,): per subject, its number of slices.
        level: the interval's coverage, in (0, 1).
        n_resamples, seed: as `resample_ratios`.

    Returns:
        ``(estimate, low, high)``: the slice average over all subjects and the percentile
        interval of the resampled averages.
    """
    sums, counts = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    samples = resample_ratios(sums, counts, n_resamples, seed)[:, 0]
    return (float(sums.sum() / counts.sum()), *_interval(samples, level))


def paired_difference_interval(
    sums_a: Sequence[float],
    sums_b: Sequence[float],
    counts: Sequence[float],
    level: float = 0.95,
    n_resamples: int = 10000,
    seed: Optional[int] = 0,
    counts_b: Optional[Sequence[float]] = None,
) -> tuple[float, float, float]:
    """Whether two rows (methods) differ on the same test subjects: a paired interval.

    Args:
        sums_a, sums_b: (S,): per subject, the sum of its slice values under rows a and b.
        counts: (S,): per subject, its number of slices (the same slices for both rows).
        level: the interval's coverage, in (0, 1).
        n_resamples, seed: as `resample_ratios`; one draw serves both rows.
        counts_b: (S,): row b's own denominators where they differ from row a's
            (``counts``), as for lesion F1; None: the same.

    Returns:
        ``(estimate, low, high)`` of row a's figure minus row b's.
    """
    counts = np.asarray(counts, dtype=np.float64)
    both = np.stack([np.asarray(sums_a, np.float64), np.asarray(sums_b, np.float64)])
    # one denominator per subject (slices: each must have one) or one per row and subject
    dens = counts if counts_b is None else np.stack([counts, np.asarray(counts_b, np.float64)])
    samples = resample_ratios(both, dens, n_resamples, seed)
    dens = np.broadcast_to(dens, both.shape)
    estimate = float(both[0].sum() / dens[0].sum() - both[1].sum() / dens[1].sum())
    return (estimate, *_interval(samples[:, 0] - samples[:, 1], level))
