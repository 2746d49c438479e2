"""Evaluation: per-slice metrics on binary masks and the PWML dataset evaluator.

metrics.py     overlap metrics and `slice_metrics` (every per-slice figure in one pass)
distance.py    Hausdorff distance and HD95 (2-D and 3-D, pixels or mm)
lesionwise.py  lesion-wise detection counts, sensitivity, FP per slice, F1
protocols.py   per-slice records; the strict, reference and per-subject 3-D protocols (definitions)
truth.py       where the truth of a slice comes from (input keys, annotations, the dataset)
report.py      per-slice CSV rows, atomic CSV files, the summary table
pwml_evaluator.py  PWMLEvaluator (detectron2 DatasetEvaluator): gathering the records of all workers
folder.py      folders of predicted and reference NIfTI masks (the program: rsrcnn_d2.cli.evaluate)
"""

from .distance import HausdorffDistances, hausdorff, hausdorff95, hausdorff_distances
from .lesionwise import (
    LesionCounts,
    false_positives_per_slice,
    lesion_counts,
    lesion_f1,
    lesion_sensitivity,
)
from .metrics import (
    SliceMetrics,
    confusion,
    dice,
    mean_of_defined,
    sensitivity,
    slice_metrics,
    specificity,
)
from .pwml_evaluator import PWMLEvaluator

__all__ = [
    "confusion",
    "dice",
    "sensitivity",
    "specificity",
    "SliceMetrics",
    "slice_metrics",
    "mean_of_defined",
    "HausdorffDistances",
    "hausdorff",
    "hausdorff95",
    "hausdorff_distances",
    "LesionCounts",
    "lesion_counts",
    "lesion_sensitivity",
    "false_positives_per_slice",
    "lesion_f1",
    "PWMLEvaluator",
]
