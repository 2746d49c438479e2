"""The dense CRF's parameters and the validation objectives its tuning maximises.

The paper tunes the CRF's l1 (Gaussian sxy), l2 (bilateral sxy), c1 (bilateral
srgb) and e1 (mean-field steps) with a Gaussian-process optimiser on validation
Dice. The objectives here are computed by re-pasting cached mask probabilities
(prediction_cache.py) through the CRF: the strict mean Dice over the cached
slices (every slice with a lesion in truth or prediction counts; an empty
prediction on a lesion slice scores 0; a slice empty in both has no Dice and is
left out: `rsrcnn_d2.evaluation.dice`) or the lesion-wise F1. The search itself,
threshold and CRF together, is operating_point.py's (``tools/tune_operating_point.py
--search crf`` tunes the CRF alone at the config's threshold).
"""

import math
from collections.abc import Mapping, Sequence
from typing import Callable, Optional

import numpy as np
import torch

from ..evaluation import dice
from ..evaluation.lesionwise import LesionCounts, lesion_counts, lesion_f1
from ..evaluation.metrics import mean_of_defined
from ..modeling.dcrf import DenseCRFPostprocessor
from ..modeling.postprocessing import paste_lesions
from .prediction_cache import CachedSlice

__all__ = [
    "PARAM_KEYS",
    "DEFAULT_BOUNDS",
    "params_from_cfg",
    "normalize_params",
    "crf_from_params",
    "OBJECTIVES",
    "slice_prediction",
    "slice_predictions",
    "objective_value",
    "objective_values",
    "mean_dice",
    "check_bounds",
    "format_params",
]

# the paper's symbols -> the MODEL.DCRF keys they set
PARAM_KEYS = {
    "l1": "GAUSSIAN_SXY",
    "l2": "BILATERAL_SXY",
    "c1": "BILATERAL_SRGB",
    "e1": "ITERATIONS",
}
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "l1": (0.5, 10.0),
    "l2": (1.0, 20.0),
    "c1": (1.0, 30.0),
    "e1": (1.0, 10.0),
}

Refine = Callable[[np.ndarray, np.ndarray], np.ndarray]


def normalize_params(params: Mapping[str, float]) -> dict[str, float]:
    """The four parameters as the CRF uses them: l1, l2, c1 to 4 significant digits, e1 an int.

    The optimiser works on a continuous box; e1 (mean-field steps) is an integer,
    so it is rounded (half up) inside the objective and equal rounded points share
    one value. The standard deviations are kept to 4 significant digits, far finer
    than the CRF can tell apart, so that the tuned config holds readable numbers
    that are exactly the ones scored.
    """
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise KeyError(f"DCRF parameters missing: {', '.join(missing)}")
    out = {k: float(f"{float(params[k]):.4g}") for k in ("l1", "l2", "c1")}
    out["e1"] = int(math.floor(float(params["e1"]) + 0.5))
    return out


def params_from_cfg(cfg) -> dict[str, float]:
    """l1, l2, c1, e1 as set in cfg.MODEL.DCRF."""
    return normalize_params({k: cfg.MODEL.DCRF[key] for k, key in PARAM_KEYS.items()})


def crf_from_params(
    params: Mapping[str, float], gaussian_compat: float = 3.0, bilateral_compat: float = 10.0
) -> DenseCRFPostprocessor:
    """A DenseCRFPostprocessor with the given l1, l2, c1, e1 (compatibilities fixed).

    Args:
        params: l1, l2, c1, e1 (normalised by `normalize_params`).
        gaussian_compat: MODEL.DCRF.GAUSSIAN_COMPAT, not tuned.
        bilateral_compat: MODEL.DCRF.BILATERAL_COMPAT, not tuned.
    """
    p = normalize_params(params)
    return DenseCRFPostprocessor(
        gaussian_sxy=p["l1"],
        gaussian_compat=gaussian_compat,
        bilateral_sxy=p["l2"],
        bilateral_srgb=p["c1"],
        bilateral_compat=bilateral_compat,
        iterations=p["e1"],
    )


OBJECTIVES = {
    "dice": "strict mean Dice (slices with a lesion in truth or prediction)",
    "lesion_f1": "lesion-wise F1 (2-D lesions pooled over the slices)",
}


def slice_prediction(
    s: CachedSlice,
    refine: Optional[Refine] = None,
    threshold: float = 0.5,
    score_threshold: Optional[float] = None,
) -> np.ndarray:
    """The slice's lesion mask (H, W) as the model would output it at ``score_threshold``.

    Args:
        s: the cached network outputs of one slice.
        refine: the CRF (``refine(patch_u8, prob) -> prob``), or None.
        threshold: mask probability at or above which a pixel is lesion
            (MODEL.RSRCNN.MASK_THRESHOLD).
        score_threshold: the detections it keeps (`CachedSlice.kept`) are pasted (None:
            all cached).

    Returns:
        (H, W) bool numpy array in the output frame, as `paste_lesions` makes it.
    """
    return slice_predictions(s, refine, threshold, [score_threshold])[0]


def slice_predictions(
    s: CachedSlice,
    refine: Optional[Refine],
    threshold: float,
    score_thresholds: Sequence[Optional[float]],
) -> list[np.ndarray]:
    """`slice_prediction` at each of ``score_thresholds``, each detection pasted (and refined)
    once: a detection's pasted mask does not depend on the others, so the mask at a threshold
    is the union of the kept detections' masks.

    Returns:
        One (H, W) bool numpy array per threshold.
    """
    keeps = [s.kept(t) for t in score_thresholds]
    pasted = torch.stack(keeps).any(dim=0)  # (R,) kept at one threshold at least
    masks, _, _ = paste_lesions(
        s.mask_probs[pasted],
        s.network_boxes[pasted],
        s.network_image,
        *s.truth.shape,
        s.crop_box,
        threshold,
        refine=refine if bool(pasted.any()) else None,
    )  # (P, H, W)
    return [masks[keep[pasted]].any(dim=0).numpy() for keep in keeps]


def objective_value(
    slices: Sequence[CachedSlice],
    objective: str = "dice",
    refine: Optional[Refine] = None,
    threshold: float = 0.5,
    score_threshold: Optional[float] = None,
) -> float:
    """``objective`` (a key of OBJECTIVES) of the masks pasted from ``slices``.

    Args:
        slices: cached network outputs.
        objective: a key of `OBJECTIVES`.
        refine, threshold, score_threshold: as `slice_prediction`.

    Returns:
        The figure; 0.0 when it is undefined (nothing to find and nothing found), so an
        optimiser always gets a number.
    """
    return objective_values(slices, objective, refine, threshold, [score_threshold])[0]


def objective_values(
    slices: Sequence[CachedSlice],
    objective: str,
    refine: Optional[Refine],
    threshold: float,
    score_thresholds: Sequence[Optional[float]],
    progress: bool = False,
) -> list[float]:
    """`objective_value` at each of ``score_thresholds``, each slice pasted once
    (`slice_predictions`); ``progress`` shows a bar over the slices."""
    from tqdm import tqdm

    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    if not slices:
        raise ValueError("no slices to score")
    scores = [[] for _ in score_thresholds]
    counts = [LesionCounts() for _ in score_thresholds]
    for s in tqdm(slices, desc="score thresholds", unit="slice", disable=not progress):
        truth = s.truth.numpy()
        for i, pred in enumerate(slice_predictions(s, refine, threshold, score_thresholds)):
            if objective == "dice":
                scores[i].append(dice(pred, truth))
            else:
                counts[i] = counts[i] + lesion_counts(pred, truth)
    # slices (or counts) with nothing to find and nothing found have no score; an
    # objective must be a number, and a set where nothing is defined gives nothing to gain
    values = [
        mean_of_defined(sc)[0] if objective == "dice" else lesion_f1(c)
        for sc, c in zip(scores, counts)
    ]
    return [0.0 if math.isnan(v) else v for v in values]


def mean_dice(
    slices: Sequence[CachedSlice],
    refine: Optional[Refine] = None,
    threshold: float = 0.5,
    score_threshold: Optional[float] = None,
) -> float:
    """Strict mean Dice of the lesion masks pasted from ``slices`` (``refine``: the CRF or None).

    Args:
        slices: cached network outputs (ValueError when empty).
        refine, threshold, score_threshold: as `slice_prediction`.
    """
    if not slices:
        raise ValueError("mean_dice: no slices to score")
    return objective_value(slices, "dice", refine, threshold, score_threshold)


def check_bounds(bounds: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    """The CRF's search box as (low, high) floats; a box the CRF cannot run in is refused
    before any trial (a ValueError naming the parameter)."""
    out = {}
    for k in PARAM_KEYS:
        if k not in bounds:
            raise KeyError(f"bounds for DCRF parameter {k!r} missing")
        lo, hi = (float(v) for v in bounds[k])
        # at least one mean-field step; the CRF's standard deviations must be positive
        ok = 1 <= lo <= hi if k == "e1" else 0 < lo <= hi
        if not ok:
            need = "1 <= low <= high" if k == "e1" else "0 < low <= high"
            raise ValueError(f"bounds of {k}: need {need}, got ({lo}, {hi})")
        out[k] = (lo, hi)
    return out


def format_params(params: Mapping[str, float]) -> str:
    """'l1=2, l2=4, c1=6, e1=1': parameters for logs and reports."""
    return ", ".join(f"{k}={params[k]:.4g}" for k in PARAM_KEYS)
