"""Tuning the classical detector's parameters on validation slices.

The parameters are tuned as the paper tunes its CRF: Bayesian optimisation
(the project's seeded loop, rsrcnn_d2.tuning.bayes) of a validation figure,
here strict mean Dice (slices with a lesion in truth or prediction; an empty
prediction on a lesion slice scores 0) or lesion-wise F1 (pooled counts). The
starting parameters are scored first, so the result is never worse than them on the tuning slices.
Integer parameters are rounded inside the objective (background_size to odd);
``tissue_mask`` and ``mode`` are not searched (they come from the start).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from ..evaluation.lesionwise import lesion_counts, lesion_f1
from ..evaluation.metrics import dice, mean_of_defined
from .dataset import DatasetSlice
from .detector import detect_slice
from .params import ClassicalParams

__all__ = [
    "OBJECTIVES",
    "DEFAULT_BOUNDS",
    "ClassicalTuningResult",
    "objective_value",
    "normalize_search_point",
    "tune_classical",
]

OBJECTIVES = ("dice", "lesion_f1")
# searched parameters and their default box; through_plane_weight only in "3d" mode
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "smoothing_sigma": (0.0, 2.0),
    "background_size": (3.0, 21.0),
    "threshold": (1.5, 12.0),
    "hysteresis": (0.3, 1.0),
    "min_area": (1.0, 6.0),
    "max_area": (6.0, 150.0),
    "tissue_erosion": (0.0, 8.0),
    "through_plane_weight": (0.0, 1.0),
}
_INTEGER = ("background_size", "min_area", "max_area", "tissue_erosion")


@dataclass
class ClassicalTuningResult:
    """The objective at the start and at the best parameters found, and every trial."""

    objective: str
    start_params: ClassicalParams
    start_value: float
    best_params: ClassicalParams
    best_value: float
    trials: list[tuple[ClassicalParams, float]] = field(default_factory=list)
    num_slices: int = 0


def objective_value(
    slices: Sequence[DatasetSlice], params: ClassicalParams, objective: str = "dice"
) -> float:
    """Strict mean Dice over ``slices``, or lesion-wise F1 of their pooled counts.

    Args:
        slices: the tuning slices.
        params: the detector's parameters to score.
        objective: one of `OBJECTIVES`.

    Returns:
        The figure; 0.0 when it is undefined (nothing to find and nothing found).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not slices:
        raise ValueError("no slices to score")
    masks = [detect_slice(s.image, params, s.neighbours).mask for s in slices]
    if objective == "dice":  # slices empty in both have no Dice: left out
        value = mean_of_defined(dice(m, s.truth) for m, s in zip(masks, slices))[0]
    else:
        value = lesion_f1([lesion_counts(m, s.truth) for m, s in zip(masks, slices)])
    return 0.0 if math.isnan(value) else value  # nothing defined: nothing to gain


def _round_half_up(x: float) -> int:
    """``x`` to the nearest integer, halves upwards (2.5 -> 3, -2.5 -> -2).

    Python's ``round`` sends halves to the even neighbour, which would bias the
    optimiser's integer parameters towards even values.
    """
    return int(math.floor(float(x) + 0.5))


def normalize_search_point(point: Mapping[str, float]) -> dict[str, object]:
    """An optimiser point as parameter values: integers rounded (background_size odd),
    floats to 4 significant digits, max_area at least min_area; other keys kept."""
    out = dict(point)
    for key, value in point.items():
        if key in _INTEGER:
            out[key] = _round_half_up(value)
        elif isinstance(value, float):
            out[key] = float(f"{value:.4g}")
    if "background_size" in out:
        out["background_size"] = 2 * (int(out["background_size"]) // 2) + 1
    if "min_area" in out and "max_area" in out:
        out["max_area"] = max(out["max_area"], out["min_area"])
    return out


def tune_classical(
    slices: Sequence[DatasetSlice],
    start: ClassicalParams,
    *,
    objective: str = "dice",
    bounds: Optional[Mapping[str, Sequence[float]]] = None,
    init_points: int = 10,
    n_iter: int = 30,
    seed: int = 0,
    progress: bool = True,
) -> ClassicalTuningResult:
    """Maximise ``objective`` over the searched parameters, starting from ``start``.

    Args:
        slices: the tuning slices (`load_dataset_slices`).
        start: scored first (so the result is never worse on these slices); its
            unsearched keys (``tissue_mask``, ``mode``) are kept.
        objective: one of `OBJECTIVES`.
        bounds: {parameter: (low, high)}; defaults to DEFAULT_BOUNDS (without
            through_plane_weight in "2d" mode); a start outside them is still scored
            first.
        init_points, n_iter, seed: as `rsrcnn_d2.tuning.bayes.bayes_maximize`.
        progress: show a progress bar.

    Returns:
        `ClassicalTuningResult` with every trial, the start first.
    """
    from tqdm import tqdm

    from ..tuning.bayes import bayes_maximize, best_trial

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if bounds is None:
        bounds = {
            k: v
            for k, v in DEFAULT_BOUNDS.items()
            if k != "through_plane_weight" or start.mode == "3d"
        }
    unknown = sorted(set(bounds) - set(DEFAULT_BOUNDS))
    if unknown:
        raise ValueError(
            f"cannot search {', '.join(unknown)}; searchable: {', '.join(DEFAULT_BOUNDS)}"
        )
    for key, (lo, hi) in bounds.items():
        if not lo <= hi:
            raise ValueError(f"bounds of {key}: need low <= high, got ({lo}, {hi})")
    bar = tqdm(
        total=init_points + n_iter + 1,
        desc=f"tuning ({objective})",
        unit="trial",
        disable=not progress,
    )

    def to_params(values: Mapping[str, object]) -> ClassicalParams:
        return start.replace(**normalize_search_point(values))

    def score(values: dict[str, object]) -> float:
        bar.update(1)
        return objective_value(slices, to_params(values), objective)

    start_values = {k: v for k, v in start.to_dict().items() if k in bounds}
    try:
        found = bayes_maximize(
            score,
            start_values,
            bounds,
            normalize=normalize_search_point,
            init_points=init_points,
            n_iter=n_iter,
            seed=seed,
            name="classical trial",
        )
    finally:
        bar.close()
    trials = [(to_params(v), value) for v, value in found]
    best_values, best_value = best_trial(found)
    return ClassicalTuningResult(
        objective,
        trials[0][0],
        trials[0][1],
        to_params(best_values),
        best_value,
        trials,
        len(slices),
    )
