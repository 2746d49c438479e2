"""Subject-level splits: train/val/test and k-fold cross-validation.

Slices of one infant are strongly correlated (neighbouring slices show the same
lesions), so every split is made over subjects, never over slices: a subject's
slices are all in one part. Splits are seeded and written to ``splits.json``
beside the converted data so any run can be reproduced or audited.

Part sizes use the largest-remainder rule on ``fraction * n`` (70 subjects at
0.7/0.15/0.15 give 49/11/10; 5 subjects give 3/1/1). Folds: the subjects are
shuffled once and dealt into k near-equal groups; fold i validates on group i
and trains on the rest, so every subject is validated exactly once.
"""

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "split_sizes",
    "subject_splits",
    "default_num_folds",
    "subject_folds",
    "make_splits",
    "SPLIT_NAMES",
    "FOLD_PARTS",
    "split_names",
    "split_subjects",
]

SPLIT_NAMES = ("train", "val", "test")
FOLD_PARTS = ("train", "val")


def split_names(num_folds: int) -> list[str]:
    """Every split a converted root has: "all", train/val/test, then fold{i}_train, fold{i}_val.

    The one list behind the files the converter writes (instances_<name>.json)
    and the dataset names registration makes of them.
    """
    return ["all", *SPLIT_NAMES] + [
        f"fold{i}_{part}" for i in range(num_folds) for part in FOLD_PARTS
    ]


def split_subjects(splits: dict) -> dict[str, list[str]]:
    """{split name: subjects} of a splits.json content, for every name of `split_names`
    but "all"."""
    parts = {name: splits[name] for name in SPLIT_NAMES}
    for i, fold in enumerate(splits["folds"]):
        parts.update({f"fold{i}_{part}": fold[part] for part in FOLD_PARTS})
    return parts


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer part sizes summing to ``n``, as close to ``fraction * n`` as possible."""
    if (
        n < 0
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    quotas = [f * n for f in fractions]
    sizes = [int(math.floor(q)) for q in quotas]
    # hand out what is left to the largest remainders; ties go to the earlier part
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - sizes[i]), i))
    for i in order[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _shuffled(subjects: Sequence[str], rng: np.random.Generator) -> list[str]:
    ordered = sorted(set(subjects))
    if len(ordered) != len(subjects):
        raise ValueError("subject ids must be unique")
    return [ordered[i] for i in rng.permutation(len(ordered))]


def subject_splits(
    subjects: Sequence[str], fractions=(0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[str]]:
    """The seeded train/val/test split of the subjects.

    Args:
        subjects: unique subject ids (ValueError otherwise).
        fractions: train, val and test shares, >= 0 and summing to 1 (`split_sizes`).
        seed: the same seed and subjects give the same split.

    Returns:
        {"train", "val", "test"}: sorted subject lists, disjoint, covering ``subjects``.
    """
    shuffled = _shuffled(subjects, np.random.default_rng(seed))
    sizes = split_sizes(len(shuffled), fractions)
    out, start = {}, 0
    for name, size in zip(SPLIT_NAMES, sizes):
        out[name] = sorted(shuffled[start : start + size])
        start += size
    return out


def default_num_folds(num_subjects: int) -> int:
    """Folds made when none are asked for: 5, or none for a cohort of fewer than 5 subjects."""
    return 5 if num_subjects >= 5 else 0


def subject_folds(
    subjects: Sequence[str], num_folds: int = 5, seed: int = 0
) -> list[dict[str, list[str]]]:
    """The seeded k-fold cross-validation folds of the subjects.

    Args:
        subjects: unique subject ids.
        num_folds: k, with 2 <= k <= len(subjects) (ValueError otherwise).
        seed: drawn from a different stream than `subject_splits`, so folds do not
            mirror the split.

    Returns:
        ``num_folds`` dicts {"train", "val"} of sorted subject lists; each subject is in
        exactly one "val", and fold sizes differ by at most one.
    """
    if num_folds < 2 or num_folds > len(subjects):
        raise ValueError(
            f"cannot make {num_folds} folds of {len(subjects)} subjects "
            "(need 2 <= folds <= subjects)"
        )
    # a different stream from subject_splits', so folds do not mirror the split
    shuffled = _shuffled(subjects, np.random.default_rng([seed, 1]))
    groups = np.array_split(np.arange(len(shuffled)), num_folds)
    folds = []
    for group in groups:
        val = {shuffled[i] for i in group}
        folds.append({"train": sorted(set(shuffled) - val), "val": sorted(val)})
    return folds


def make_splits(
    subjects: Sequence[str], seed: int = 0, fractions=(0.7, 0.15, 0.15), num_folds: int = 5
) -> dict:
    """The content of splits.json: seed, fractions, subjects, the split and the folds.

    Args:
        subjects: unique subject ids.
        seed: as `subject_splits` and `subject_folds`.
        fractions: as `subject_splits`.
        num_folds: as `subject_folds`; 0 writes no folds (for cohorts smaller than the
            fold count).

    Returns:
        ``{"seed", "fractions", "subjects", "train", "val", "test", "folds"}``.
    """
    return {
        "seed": int(seed),
        "fractions": dict(zip(SPLIT_NAMES, [float(f) for f in fractions])),
        "subjects": sorted(subjects),
        **subject_splits(subjects, fractions, seed),
        "folds": subject_folds(subjects, num_folds, seed) if num_folds else [],
    }
