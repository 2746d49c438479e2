"""Lesion-wise counts on hand-drawn slices, and slice_metrics' edge cases."""

import math

import numpy as np
import pytest

from rsrcnn_d2.evaluation import (
    LesionCounts,
    false_positives_per_slice,
    lesion_counts,
    lesion_f1,
    lesion_sensitivity,
    mean_of_defined,
    slice_metrics,
)


def draw(rows):
    return np.array([[c != "." for c in r] for r in rows])


TRUTH = draw(
    [
        "##......",
        "##......",
        "....#...",
        ".....#..",  # diagonal pair: one lesion (8-connectivity)
        "........",
        ".......#",
    ]
)
PRED = draw(
    [
        "#.......",
        "........",
        "........",
        ".....##.",  # touches the diagonal lesion
        "#.......",  # touches nothing: false positive
        "........",
    ]
)


def test_hand_drawn_counts():
    c = lesion_counts(PRED, TRUTH)
    assert c == LesionCounts(true_lesions=3, found=2, predicted=3, false_positives=1)
    assert c.missed == 1
    assert lesion_sensitivity(c) == pytest.approx(2 / 3)
    assert lesion_f1(c) == pytest.approx(4 / (4 + 1 + 1))


def test_merges_and_splits_are_not_penalised():
    truth = draw(["#.#", "...", "..."])
    merged = draw(["###", "...", "..."])
    assert lesion_counts(merged, truth) == LesionCounts(2, 2, 1, 0)
    split = draw(["#.#", "...", "..."])
    assert lesion_counts(split, draw(["###", "...", "..."])) == LesionCounts(1, 1, 2, 0)


def test_pooling_and_rates():
    slices = [LesionCounts(2, 1, 3, 1), LesionCounts(0, 0, 1, 1), LesionCounts()]
    pooled = sum(slices, LesionCounts())
    assert pooled == LesionCounts(2, 1, 4, 2)
    assert false_positives_per_slice(slices) == pytest.approx(2 / 3)
    assert false_positives_per_slice(pooled, num_slices=4) == 0.5
    assert math.isnan(false_positives_per_slice([]))
    assert math.isnan(lesion_sensitivity(LesionCounts(0, 0, 2, 2)))
    assert math.isnan(lesion_f1(LesionCounts()))  # empty counts: undefined, never 1
    assert math.isnan(lesion_f1([LesionCounts(), LesionCounts()]))
    assert lesion_f1(LesionCounts(0, 0, 1, 1)) == 0.0


def test_one_pixel_lesion_found_and_missed():
    truth = np.zeros((512, 512), bool)
    truth[200, 300] = True
    found = slice_metrics(truth, truth, spacing=(0.5, 0.5))
    assert (found.dice, found.sensitivity, found.hd, found.hd_mm) == (1.0, 1.0, 0.0, 0.0)
    assert found.lesions == LesionCounts(1, 1, 1, 0)
    assert found.tn == 512 * 512 - 1 and found.specificity == 1.0
    missed = slice_metrics(np.zeros_like(truth), truth)
    assert (missed.dice, missed.sensitivity) == (0.0, 0.0)
    assert math.isnan(missed.hd) and math.isnan(missed.hd95) and missed.pred_empty
    assert missed.lesions == LesionCounts(1, 0, 0, 0)


def test_empty_truth_and_both_empty():
    empty = np.zeros((6, 6), bool)
    blob = empty.copy()
    blob[1, 1] = True
    fp_only = slice_metrics(blob, empty)
    assert fp_only.dice == 0.0 and math.isnan(fp_only.sensitivity) and math.isnan(fp_only.hd)
    assert fp_only.specificity == pytest.approx(35 / 36) and fp_only.truth_empty
    nothing = slice_metrics(empty, empty)  # nothing to find: no Dice and no distance
    assert nothing.specificity == 1.0 and nothing.truth_empty and nothing.pred_empty
    undefined = (nothing.dice, nothing.sensitivity, nothing.hd, nothing.hd95, nothing.hd_mm)
    assert all(math.isnan(v) for v in undefined)
    assert math.isnan(slice_metrics(empty, empty, spacing=(1.0, 2.0)).hd_mm)


def test_known_hd_with_anisotropic_spacing():
    a, b = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    a[2, 3], b[5, 7] = True, True
    m = slice_metrics(a, b, spacing=(0.5, 2.0))
    assert m.hd == 5.0 and m.hd95 == 5.0
    assert m.hd_mm == pytest.approx(math.sqrt(1.5**2 + 8.0**2))
    assert slice_metrics(a, b, spacing=(0.5, 0.5)).hd_mm == 2.5


def test_mean_of_defined():
    assert mean_of_defined([1.0, float("nan"), 3.0]) == (2.0, 2, 1)
    mean, used, undefined = mean_of_defined([])
    assert math.isnan(mean) and (used, undefined) == (0, 0)
