"""Lesion-wise figures by lesion size (rsrcnn_d2/evaluation/lesion_size.py), hand-computed."""

import math

import numpy as np
import pytest

from rsrcnn_d2.evaluation.lesion_size import (
    SIZE_STRATA,
    SizeCounts,
    lesion_size_counts,
    pool_size_counts,
    size_figures,
    stratum_label,
    stratum_name,
)
from rsrcnn_d2.evaluation.protocols import slice_record, summarize_slices
from rsrcnn_d2.evaluation.report import format_table


def _three_sizes():
    """Truth: A (2 px, half found), B (9 px, missed), C (20 px, over-segmented to 24 px);
    prediction also holds a 3-px and a 7-px blob touching no lesion."""
    truth = np.zeros((10, 10), bool)
    pred = np.zeros_like(truth)
    truth[0, 0:2] = True  # A: 2 px
    pred[0, 0] = True  # covers half of A: lesion Dice 2*1/(2+1)
    truth[5:8, 4:7] = True  # B: 9 px, nothing predicted on it
    truth[0:4, 5:10] = True  # C: 20 px
    pred[0:4, 4:10] = True  # 24 px on C: lesion Dice 2*20/(20+24)
    pred[8, 0] = pred[9, 0] = pred[9, 1] = True  # false positive, 3 px
    pred[8, 3:7] = True
    pred[9, 3:6] = True  # false positive, 7 px
    return pred, truth


def test_strata_are_named_and_cover_every_size():
    assert [stratum_name(s) for s in SIZE_STRATA] == ["1to5px", "6to15px", "16pxplus"]
    assert [stratum_label(s) for s in SIZE_STRATA] == ["1-5 px", "6-15 px", "16+ px"]


def test_counts_by_size_on_a_hand_built_slice():
    small, medium, large = lesion_size_counts(*_three_sizes())
    assert small == SizeCounts(
        true_lesions=1, found=1, false_positives=1, dice_sum=pytest.approx(2 / 3)
    )
    assert medium == SizeCounts(true_lesions=1, found=0, false_positives=1, dice_sum=0.0)
    assert large == SizeCounts(
        true_lesions=1, found=1, false_positives=0, dice_sum=pytest.approx(40 / 44)
    )
    assert small.recall == 1.0 and small.f1 == pytest.approx(2 / 3)
    assert medium.recall == 0.0 and medium.f1 == 0.0 and medium.dice == 0.0
    assert large.f1 == 1.0 and large.dice == pytest.approx(40 / 44)


def test_one_blob_over_two_lesions_counts_whole_for_each():
    truth = np.zeros((3, 5), bool)
    truth[0, 0] = truth[0, 2] = True
    pred = np.zeros_like(truth)
    pred[0, 0:3] = True
    small = lesion_size_counts(pred, truth)[0]
    assert (small.true_lesions, small.found, small.false_positives) == (2, 2, 0)
    assert small.dice == pytest.approx(0.5)  # each: 2*1/(1+3)


def test_empty_masks_have_no_figures_and_a_lone_prediction_scores_zero():
    empty = np.zeros((4, 4), bool)
    for c in lesion_size_counts(empty, empty):
        assert c == SizeCounts()
        assert math.isnan(c.recall) and math.isnan(c.dice) and math.isnan(c.f1)
    pred = empty.copy()
    pred[1, 1] = True
    small = lesion_size_counts(pred, empty)[0]
    assert small.false_positives == 1 and small.f1 == 0.0 and math.isnan(small.recall)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="same shape|one shape"):
        lesion_size_counts(np.zeros((3, 3)), np.zeros((3, 4)))


def test_pooled_figures_and_the_evaluation_protocol():
    pred, truth = _three_sizes()
    empty = np.zeros_like(truth)
    records = [
        slice_record(pred, truth, {"file_name": "a.png", "subject": "s1", "slice_index": 0}),
        slice_record(empty, empty, {"file_name": "b.png", "subject": "s1", "slice_index": 1}),
        slice_record(pred, truth, {"file_name": "c.png", "subject": "s2", "slice_index": 0}),
    ]
    pooled = pool_size_counts(r["size_counts"] for r in records)
    assert pooled[0] == SizeCounts(2, 2, 2, pytest.approx(4 / 3))
    results, rows = summarize_slices(records)
    size = results["pwml_size"]
    assert size == size_figures(pooled)
    assert size["1to5px_lesions"] == 2 and size["1to5px_recall"] == 1.0
    assert size["1to5px_F1"] == pytest.approx(4 / 6) and size["6to15px_F1"] == 0.0
    assert size["16pxplus_Dice"] == pytest.approx(40 / 44)
    by_subject = {row["subject"]: row for row in rows}
    assert by_subject["s1"]["lesions_1to5px"] == 1 and by_subject["s1"]["fp_6to15px"] == 1
    assert by_subject["s2"]["dice_sum_16pxplus"] == pytest.approx(40 / 44)
    assert "1-5 px 2/2 found, lesion Dice 0.6667, F1 0.6667" in format_table(results)


def test_3d_lesion_figures_are_undefined_when_a_subjects_slices_cannot_be_stacked():
    """Slices of one subject of two sizes (as the reference slices' head crops) cannot be
    stacked: no 3-D lesions for it, so no pooled 3-D lesion F1 that would read as everyone's."""
    truth_a, truth_b = np.zeros((6, 6), bool), np.zeros((6, 8), bool)
    truth_a[1, 1] = truth_b[2, 2] = True
    records = [
        slice_record(truth_a, truth_a, {"file_name": "a.png", "subject": "s", "slice_index": 0}),
        slice_record(truth_b, truth_b, {"file_name": "b.png", "subject": "s", "slice_index": 5}),
    ]
    results, _ = summarize_slices(records)
    assert results["pwml_subject3d"]["n_not_stacked"] == 1.0
    assert math.isnan(results["pwml_lesion3d"]["F1"])
    assert math.isnan(results["pwml_headline"]["lesion_f1_3d"])
    assert results["pwml_headline"]["case_dice"] == 1.0  # voxel counts need no stacking
    assert results["pwml_lesion"]["found"] == 2.0  # 2-D lesions are still counted
