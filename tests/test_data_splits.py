"""Subject splits and folds: disjoint, complete, seeded, sized as documented."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsrcnn_d2.data.splits import make_splits, split_sizes, subject_folds, subject_splits


@pytest.mark.parametrize(
    "n, sizes",
    [
        (70, [49, 11, 10]),
        (5, [3, 1, 1]),
        (6, [4, 1, 1]),
        (10, [7, 2, 1]),
        (1, [1, 0, 0]),
        (0, [0, 0, 0]),
    ],
)
def test_split_sizes(n, sizes):
    assert split_sizes(n, (0.7, 0.15, 0.15)) == sizes


def test_bad_fractions():
    with pytest.raises(ValueError):
        split_sizes(10, (0.7, 0.2, 0.2))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 80), seed=st.integers(0, 2**31 - 1))
def test_splits_partition_subjects(n, seed):
    subjects = [f"s{i:03d}" for i in range(n)]
    s = subject_splits(subjects, seed=seed)
    parts = [set(s[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(subjects)
    assert [len(p) for p in parts] == split_sizes(n, (0.7, 0.15, 0.15))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(5, 80), k=st.integers(2, 5), seed=st.integers(0, 2**31 - 1))
def test_folds_validate_every_subject_once(n, k, seed):
    subjects = [f"s{i:03d}" for i in range(n)]
    folds = subject_folds(subjects, k, seed)
    assert len(folds) == k
    vals = [v for f in folds for v in f["val"]]
    assert sorted(vals) == subjects  # each subject validated exactly once
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == set(subjects) and not set(f["train"]) & set(
            f["val"]
        )
    assert max(len(f["val"]) for f in folds) - min(len(f["val"]) for f in folds) <= 1


def test_seeded_and_order_independent():
    subjects = [f"s{i}" for i in range(20)]
    a = make_splits(subjects, seed=3)
    assert a == make_splits(list(reversed(subjects)), seed=3)
    assert a != make_splits(subjects, seed=4)
    assert a["seed"] == 3 and len(a["folds"]) == 5


def test_too_few_subjects_for_folds():
    with pytest.raises(ValueError, match="folds"):
        subject_folds(["a", "b"], 5)
    assert make_splits(["a", "b"], num_folds=0)["folds"] == []
    with pytest.raises(ValueError, match="unique"):
        subject_splits(["a", "a"])
