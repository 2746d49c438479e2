"""Overlap metrics against hand-counted cases."""

import math

import numpy as np
import pytest

from rsrcnn_d2.evaluation import confusion, dice, sensitivity, specificity


def test_hand_counted_case():
    truth = np.zeros((4, 5), bool)
    truth[1, 1:4] = True  # 3 lesion pixels
    pred = np.zeros((4, 5), bool)
    pred[1, 2:5] = True  # 2 hits, 1 false positive
    assert confusion(pred, truth) == (2, 1, 1, 16)
    assert dice(pred, truth) == pytest.approx(4 / 6)
    assert sensitivity(pred, truth) == pytest.approx(2 / 3)
    assert specificity(pred, truth) == pytest.approx(16 / 17)


def test_one_pixel_lesion_found_and_missed():
    truth = np.zeros((8, 8), bool)
    truth[3, 3] = True
    assert dice(truth, truth) == 1.0
    assert dice(np.zeros_like(truth), truth) == 0.0
    assert sensitivity(np.zeros_like(truth), truth) == 0.0


def test_empty_cases():
    empty = np.zeros((3, 3), bool)
    some = empty.copy()
    some[0, 0] = True
    assert math.isnan(dice(empty, empty))  # nothing to find: no score, never 1
    assert dice(some, empty) == 0.0
    assert math.isnan(sensitivity(some, empty))
    assert math.isnan(specificity(np.ones((2, 2), bool), np.ones((2, 2), bool)))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))
