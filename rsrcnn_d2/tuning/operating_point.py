"""Calibrating a row's operating point: the detection score threshold, with the CRF's l1..e1.

Why: the paper's 0.7 score threshold suits Mask R-CNN's classifier, not
necessarily the H-RPN rows' (they score lesions differently), so comparing rows
at one fixed threshold compares their calibration as much as their masks. Every
row is therefore calibrated the same way on the validation subjects: the score
threshold over a grid (each point scored exactly), then, for rows with a dense
CRF, the threshold and the four CRF parameters together by the seeded Bayesian
optimiser, starting from the grid's best point. The network ran once
(prediction_cache.py, at the grid's lowest threshold); a higher threshold only
drops cached detections (`CachedSlice.kept`).

The config's own point (its threshold and CRF parameters) is the first trial and
wins ties, so the result is never worse than the config on the tuning set. A
calibration none of whose points scores above predicting no lesion at all
(`OperatingPoint.found_nothing`, e.g. untrained heads) has found nothing to calibrate:
the tool says so instead of writing a "tuned" config.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Optional

from .bayes import bayes_maximize, best_trial
from .dcrf_search import (
    DEFAULT_BOUNDS,
    OBJECTIVES,
    PARAM_KEYS,
    check_bounds,
    crf_from_params,
    format_params,
    normalize_params,
    objective_value,
    objective_values,
)
from .prediction_cache import CachedSlice

__all__ = [
    "DEFAULT_SCORE_GRID",
    "OperatingPoint",
    "tune_operating_point",
    "format_point",
    "empty_prediction_value",
]

# 0.05 .. 0.95 by 0.05, then finer towards 1: Mask R-CNN's false positives can score above 0.9
DEFAULT_SCORE_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (
    0.96,
    0.97,
    0.98,
    0.99,
)


@dataclass
class OperatingPoint:
    """The config's point and the best found: ``score`` (threshold) and, with a CRF, l1..e1.

    ``empty_value``: the objective of predicting no lesion anywhere, what a calibration
    must beat (0 where every slice scored has a lesion).
    """

    objective: str
    start: dict[str, float]
    start_value: float
    best: dict[str, float]
    best_value: float
    trials: list[tuple[dict[str, float], float]] = field(default_factory=list)
    num_slices: int = 0
    empty_value: float = 0.0

    @property
    def found_nothing(self) -> bool:
        """No point scores above an empty prediction (or the objective is undefined)."""
        return not self.best_value > self.empty_value


def _normalize(point: Mapping[str, float]) -> dict[str, float]:
    """The threshold to 3 decimals (finer than scores can be told apart), CRF parameters as
    the CRF uses them."""
    out = {"score": round(float(point["score"]), 3)}
    if any(k in point for k in PARAM_KEYS):
        out.update(normalize_params(point))
    return out


def format_point(point: Mapping[str, float]) -> str:
    """'score>=0.45' or 'score>=0.45, l1=2, l2=4, c1=6, e1=1'."""
    text = f"score>={point['score']:.3g}"
    crf = {k: point[k] for k in PARAM_KEYS if k in point}
    return text + (", " + format_params(crf) if crf else "")


def empty_prediction_value(
    slices: Sequence[CachedSlice], objective: str = "dice", mask_threshold: float = 0.5
) -> float:
    """``objective`` of ``slices`` with every detection dropped: a model that finds nothing.

    What a calibration must beat to have found anything.

    Args:
        slices: cached network outputs.
        objective: a key of `dcrf_search.OBJECTIVES`.
        mask_threshold: as `dcrf_search.slice_prediction`'s ``threshold``.
    """
    empty = [
        replace(
            s,
            mask_probs=s.mask_probs[:0],
            network_boxes=s.network_boxes[:0],
            scores=None if s.scores is None else s.scores[:0],
            member_scores=None if s.member_scores is None else s.member_scores[:0],
        )
        for s in slices
    ]
    return objective_value(empty, objective, None, mask_threshold)


def tune_operating_point(
    slices: Sequence[CachedSlice],
    start_score: float,
    crf_params: Optional[Mapping[str, float]] = None,
    *,
    tune_crf: bool = True,
    objective: str = "dice",
    score_grid: Sequence[float] = DEFAULT_SCORE_GRID,
    bounds: Mapping[str, Sequence[float]] = DEFAULT_BOUNDS,
    init_points: int = 5,
    n_iter: int = 25,
    seed: int = 0,
    gaussian_compat: float = 3.0,
    bilateral_compat: float = 10.0,
    mask_threshold: float = 0.5,
    progress: bool = False,
) -> OperatingPoint:
    """Best (score threshold[, CRF parameters]) for ``objective`` on ``slices``.

    Args:
        slices: cached network outputs, cached at a threshold no higher than the grid's
            lowest point.
        start_score: the config's threshold, the first trial.
        crf_params: the row's CRF (None: the row has none, only the threshold is
            searched).
        tune_crf: False keeps the CRF's parameters fixed.
        objective: a key of `dcrf_search.OBJECTIVES`.
        score_grid: thresholds in [0, 1], each scored exactly.
        bounds: of l1..e1 for the Bayesian search.
        init_points, n_iter, seed: as `bayes.bayes_maximize`.
        gaussian_compat, bilateral_compat: the CRF's fixed compatibilities.
        mask_threshold: as `dcrf_search.slice_prediction`'s ``threshold``.
        progress: a bar over the slices of the grid (the Bayesian trials log one line each).

    Returns:
        `OperatingPoint` with every trial, the config's point first.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    grid = sorted({round(float(t), 3) for t in score_grid})
    if not grid or grid[0] < 0 or grid[-1] > 1:
        raise ValueError(f"score grid must lie in [0, 1], got {list(score_grid)}")
    tune_crf = crf_params is not None and tune_crf
    if tune_crf:  # refused before the grid runs, not after
        bounds = check_bounds(bounds)

    def score(point: dict[str, float]) -> float:
        crf = None
        if crf_params is not None:
            crf = crf_from_params(point, gaussian_compat, bilateral_compat)
        return objective_value(slices, objective, crf, mask_threshold, point["score"])

    crf_start = {} if crf_params is None else normalize_params(crf_params)
    start = _normalize({"score": start_score, **crf_start})
    points = [start]  # the config's point first: it wins ties
    points += [p for p in (_normalize({"score": t, **crf_start}) for t in grid) if p != start]
    # the grid shares one CRF: every slice is pasted once for all its thresholds
    crf = None if crf_params is None else crf_from_params(start, gaussian_compat, bilateral_compat)
    values = objective_values(
        slices, objective, crf, mask_threshold, [p["score"] for p in points], progress
    )
    trials = list(zip(points, values))
    if tune_crf:
        from_grid, _ = best_trial(trials)
        box = {"score": (grid[0], grid[-1]), **{k: tuple(bounds[k]) for k in PARAM_KEYS}}
        found = bayes_maximize(
            score,
            from_grid,
            box,
            normalize=_normalize,
            init_points=init_points,
            n_iter=n_iter,
            seed=seed,
            describe=format_point,
            name="operating point trial",
        )
        seen = {tuple(sorted(p.items())) for p, _ in trials}
        trials += [(p, v) for p, v in found if tuple(sorted(p.items())) not in seen]
    best, best_value = best_trial(trials)
    return OperatingPoint(
        objective=objective,
        start=start,
        start_value=trials[0][1],
        best=dict(best),
        best_value=best_value,
        trials=trials,
        num_slices=len(slices),
        empty_value=empty_prediction_value(slices, objective, mask_threshold),
    )
