"""Calibrating a row's operating point (score threshold, the paper's CRF l1, l2, c1, e1) on
validation subjects.

prediction_cache.py  run the network once, keep mask probabilities, boxes, image, truth
dcrf_search.py       strict mean Dice of re-pasted masks; Bayesian optimisation over it
operating_point.py   the threshold over a grid, then with the CRF; "found nothing" when no
                     point beats predicting no lesion
tuned_config.py      the result as a config file: absolute ``_BASE_`` + the tuned MODEL keys +
                     the TEST keys of the inference calibrated with
cli.py               tools/tune_operating_point.py (and tools/tune_dcrf.py)
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
