"""Seeded Bayesian optimisation of a few post-hoc parameters, starting from known values.

Shared by the operating point's tuning (operating_point.py) and the classical detector's
tuning (rsrcnn_d2.classical.tuning): both maximise a validation figure over a
box of parameters, some of them integers. What they share and this module does:

- the starting parameters are scored first (probed when inside the bounds, else
  scored beside the optimiser), so the best trial is never worse than the start;
- the optimiser works on a continuous box; ``normalize`` maps each of its points
  onto the parameters actually used (integers rounded, ...), and equal
  normalised points are scored once;
- ``init_points`` random points then ``n_iter`` Gaussian-process-guided ones,
  all drawn from ``seed``: equal inputs give equal trials.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Callable, Optional

__all__ = ["bayes_maximize", "best_trial"]

logger = logging.getLogger(__name__)

Params = dict[str, float]


def _inside(params: Mapping[str, float], bounds: Mapping[str, tuple[float, float]]) -> bool:
    return all(bounds[k][0] <= params[k] <= bounds[k][1] for k in bounds)


def bayes_maximize(
    score: Callable[[Params], float],
    start: Mapping[str, float],
    bounds: Mapping[str, Sequence[float]],
    *,
    normalize: Callable[[Mapping[str, float]], Params] = dict,
    init_points: int = 5,
    n_iter: int = 25,
    seed: int = 0,
    describe: Optional[Callable[[Params], str]] = None,
    name: str = "trial",
) -> list[tuple[Params, float]]:
    """Every (normalised params, score) pair evaluated, in order; the start's is first.

    Args:
        score: ``score(params) -> float`` to maximise; called once per distinct
            normalised point.
        start: a value for every key of ``bounds``; keys that are not searched are
            passed to ``normalize`` with every point, unchanged.
        bounds: {key: (low, high)}, the optimiser's continuous box.
        normalize: maps an optimiser point onto the parameters actually used
            (integers rounded, ...).
        init_points: random points before the Gaussian-process-guided ones.
        n_iter: Gaussian-process-guided points.
        seed: the optimiser's random state: equal inputs give equal trials.
        describe: formats parameters for the log lines (one per new point, at INFO).
        name: what the log lines call a trial.

    Returns:
        ``[(params, score), ...]`` in the order scored, the start first; use `best_trial`.
    """
    from bayes_opt import BayesianOptimization

    if init_points < 0 or n_iter < 0:
        raise ValueError("init_points and n_iter must be >= 0")
    bounds = {k: (float(lo), float(hi)) for k, (lo, hi) in bounds.items()}
    missing = [k for k in bounds if k not in start]
    if missing:
        raise KeyError(f"starting value missing for searched parameter(s) {', '.join(missing)}")
    fixed = {k: v for k, v in start.items() if k not in bounds}
    describe = describe or (lambda p: ", ".join(f"{k}={v:.4g}" for k, v in p.items()))
    trials: list[tuple[Params, float]] = []
    seen: dict[tuple, float] = {}

    def objective(**raw: float) -> float:
        params = normalize({**fixed, **raw})
        key = tuple(sorted(params.items()))
        if key not in seen:  # rounding maps many optimiser points onto one setting
            seen[key] = float(score(params))
            trials.append((params, seen[key]))
            logger.info(f"{name} {len(trials)}: {describe(params)} -> {seen[key]:.4f}")
        return seen[key]

    optimizer = BayesianOptimization(f=objective, pbounds=bounds, random_state=seed, verbose=0)
    searched = {k: float(start[k]) for k in bounds}
    if _inside(searched, bounds):
        optimizer.probe(params=searched, lazy=True)  # evaluated first by maximize()
    else:
        logger.warning(
            f"starting parameters {describe(normalize(dict(start)))} lie outside "
            "the search bounds; scored but not given to the optimiser"
        )
        objective(**searched)
    optimizer.maximize(init_points=init_points, n_iter=n_iter)  # a queued probe runs first
    return trials


def best_trial(trials: Sequence[tuple[Params, float]]) -> tuple[Params, float]:
    """The first trial reaching the highest score (the start wins ties, being first)."""
    if not trials:
        raise ValueError("no trials")
    return max(trials, key=lambda t: t[1])
