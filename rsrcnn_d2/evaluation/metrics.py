"""Overlap metrics on binary masks, as plain functions on arrays.

Edge cases are defined, not left to NaN:
- Dice of two empty masks is 1 (nothing to find, nothing found); Dice with an
  empty truth and a non-empty prediction, or the reverse, is 0.
- Sensitivity with an empty truth is undefined and returned as NaN (callers
  decide whether to skip it); specificity with no negatives likewise.
"""
import numpy as np

__all__ = ["confusion", "dice", "sensitivity", "specificity"]


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


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    tp, fp, fn, _ = confusion(pred, truth)
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2.0 * tp / denom


def sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    tp, _, fn, _ = confusion(pred, truth)
    return float("nan") if tp + fn == 0 else tp / (tp + fn)


def specificity(pred: np.ndarray, truth: np.ndarray) -> float:
    _, fp, _, tn = confusion(pred, truth)
    return float("nan") if tn + fp == 0 else tn / (tn + fp)
