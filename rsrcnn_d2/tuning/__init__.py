"""Tuning the dense CRF (the paper's l1, l2, c1, e1) on validation Dice.

prediction_cache.py  run the network once, keep mask probabilities, boxes, image, truth
dcrf_search.py       strict mean Dice of re-pasted masks; Bayesian optimisation over it
tuned_config.py      the result as a config file: ``_BASE_`` + MODEL.DCRF
"""

from .dcrf_search import (
    DEFAULT_BOUNDS,
    PARAM_KEYS,
    Trial,
    TuningResult,
    crf_from_params,
    format_params,
    mean_dice,
    normalize_params,
    params_from_cfg,
    tune_dcrf,
)
from .prediction_cache import (
    CachedSlice,
    collect_predictions,
    load_prediction_cache,
    prediction_cache_key,
    save_prediction_cache,
)
from .tuned_config import write_tuned_config

__all__ = [
    "DEFAULT_BOUNDS",
    "PARAM_KEYS",
    "Trial",
    "TuningResult",
    "crf_from_params",
    "format_params",
    "mean_dice",
    "normalize_params",
    "params_from_cfg",
    "tune_dcrf",
    "CachedSlice",
    "collect_predictions",
    "load_prediction_cache",
    "prediction_cache_key",
    "save_prediction_cache",
    "write_tuned_config",
]
