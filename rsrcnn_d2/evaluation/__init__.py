"""Evaluation: metrics on binary masks."""
from .metrics import confusion, dice, sensitivity, specificity

__all__ = ["confusion", "dice", "sensitivity", "specificity"]
