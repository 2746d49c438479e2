"""Row A: our classical (non-learned) PWML baseline, scored by the same evaluator as rows B–E.

The paper's row A is Mukherjee et al.'s classical method, which was not
released; this package is *our* local-contrast detector in its spirit, not
their method (detector.py says what it does).

params.py    ClassicalParams and its YAML/JSON file (safe loading, named errors)
detector.py  the detector: top-hat at lesion scale, robust z-score, size-filtered blobs
model.py     ClassicalLesionModel (detectron2 inference interface), ClassicalPredictor
dataset.py   a registered dataset's slices, truth and neighbours, read once
tuning.py    Bayesian tuning on validation strict Dice or lesion-wise F1
evaluate.py  PWMLEvaluator on the detector's outputs; row A's tune-on-val, test-once run
"""

from .dataset import DatasetSlice, load_dataset_slices, model_input
from .detector import (
    Detection,
    detect_slice,
    detect_stack,
    local_contrast,
    otsu_threshold,
    tissue_mask,
)
from .evaluate import evaluate_classical, flat_results, save_tuning, tune_and_evaluate
from .model import ClassicalLesionModel, ClassicalPredictor
from .params import MODES, ClassicalParams, load_params, params_from_dict, save_params
from .tuning import (
    DEFAULT_BOUNDS,
    OBJECTIVES,
    ClassicalTuningResult,
    normalize_search_point,
    objective_value,
    tune_classical,
)

__all__ = [
    "ClassicalParams",
    "MODES",
    "load_params",
    "save_params",
    "params_from_dict",
    "Detection",
    "detect_slice",
    "detect_stack",
    "local_contrast",
    "otsu_threshold",
    "tissue_mask",
    "ClassicalLesionModel",
    "ClassicalPredictor",
    "DatasetSlice",
    "load_dataset_slices",
    "model_input",
    "DEFAULT_BOUNDS",
    "OBJECTIVES",
    "ClassicalTuningResult",
    "objective_value",
    "normalize_search_point",
    "tune_classical",
    "evaluate_classical",
    "flat_results",
    "save_tuning",
    "tune_and_evaluate",
]
