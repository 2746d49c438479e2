"""Calibrating a row's operating point (score threshold, the paper's CRF l1, l2, c1, e1) on
validation subjects.

prediction_cache.py  run the network once, keep mask probabilities, boxes, image, truth
dcrf_search.py       the CRF's l1..e1 and the objectives (strict mean Dice, lesion F1) of
                     re-pasted masks
operating_point.py   the threshold over a grid, then with the CRF (seeded Bayesian
                     optimisation, bayes.py); "found nothing" when no
                     point beats predicting no lesion
tuned_config.py      the result as a config file: absolute ``_BASE_`` + the tuned MODEL keys +
                     the TEST keys of the inference calibrated with
calibrate.py         the whole calibration as one function (the drivers call it in their
                     own process)

The program is `rsrcnn_d2.cli.tune_operating_point` (tools/tune_operating_point.py,
``rsrcnn-tune``; tools/tune_dcrf.py: its deprecated alias for --search crf).
"""

from .calibrate import Calibration, calibrate_operating_point
from .dcrf_search import (
    DEFAULT_BOUNDS,
    PARAM_KEYS,
    crf_from_params,
    format_params,
    mean_dice,
    normalize_params,
    params_from_cfg,
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
    "Calibration",
    "calibrate_operating_point",
    "DEFAULT_BOUNDS",
    "PARAM_KEYS",
    "crf_from_params",
    "format_params",
    "mean_dice",
    "normalize_params",
    "params_from_cfg",
    "CachedSlice",
    "collect_predictions",
    "load_prediction_cache",
    "prediction_cache_key",
    "save_prediction_cache",
    "write_tuned_config",
]
