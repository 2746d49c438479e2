"""Calibrating a trained row's operating point on a validation set, as a function.

`calibrate_operating_point` is what tools/tune_operating_point.py runs (its ``main`` parses
the command line and calls it) and what the experiment drivers call in their own process:
the network runs once over the dataset (its outputs cached), the score threshold and, for a
row with a CRF, l1, l2, c1, e1 are searched (`operating_point.tune_operating_point`), and
the best point is written as a config (absolute ``_BASE_`` + the tuned keys + the inference
it was calibrated with) with the trials beside it as JSON. When no point beats predicting
no lesion, no config is written and the trials file says ``"best": null``.
"""

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from ..config import fall_back_to_cpu, get_rsrcnn_cfg
from ..data import build_pwml_test_loader
from ..data.fileio import atomic_write_json
from ..errors import ConfigError, PWMLDataError
from ..inference.calibration import InferenceSettings, calibration_record
from ..inference.predictor import LesionPredictor
from ..tool_setup import logged_step
from .dcrf_search import DEFAULT_BOUNDS, OBJECTIVES, PARAM_KEYS, check_bounds, params_from_cfg
from .operating_point import DEFAULT_SCORE_GRID, format_point, tune_operating_point
from .prediction_cache import (
    collect_predictions,
    load_prediction_cache,
    prediction_cache_key,
    save_prediction_cache,
)
from .tuned_config import write_tuned_config

__all__ = [
    "SEARCHES",
    "Calibration",
    "calibrate_operating_point",
    "load_slices",
    "calibrated_inference",
]

SEARCHES = ("score", "crf")
logger = logging.getLogger(__name__)


@dataclass
class Calibration:
    """What a calibration found. ``written``: the tuned config (``output``), None when no point
    scored above predicting no lesion (``found_nothing``); the figures say by how much."""

    output: Path
    written: Optional[Path]
    trials_file: Path
    dataset: str
    objective: str
    num_trials: int
    best_value: float
    empty_value: float

    @property
    def found_nothing(self) -> bool:
        """No point scored above predicting no lesion: no config was written."""
        return self.written is None


def load_slices(
    cfg,
    dataset: str,
    weights: str,
    cache: str,
    seed: int,
    log,
    allow_partial: bool = False,
    score_floor: Optional[float] = None,
    progress: bool = False,
):
    """Cached network outputs: from ``cache`` when it matches, else one pass of the model.

    Args:
        cfg: the row's config; its CRF is switched off for the pass (the trials vary it).
        dataset: registered dataset to run on.
        weights: checkpoint ("" or None: a randomly initialised network, with a warning).
        cache: a cache file to read when its key matches (PWMLDataError when it does
            not) or to write after the pass ("" or None: no cache).
        seed: seeds torch before the model is built (matters only without weights).
        log: the logger that reports what was read or run.
        allow_partial: the weights go through the predictor's checked loading: a
            checkpoint that does not fill the model is refused unless this is set.
        score_floor: runs the network with that detection threshold instead of the
            config's (lower, so that higher thresholds can be tried on the cache).
        progress: show a progress bar over the network pass.

    Returns:
        One `CachedSlice` per slice of ``dataset``.
    """
    model_cfg = cfg.clone()
    model_cfg.defrost()
    model_cfg.MODEL.DCRF.NAME = ""  # the CRF is what the trials vary
    if score_floor is not None:
        model_cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_floor)
    key = prediction_cache_key(model_cfg, dataset, weights)
    if not weights:
        key["random_init_seed"] = str(seed)
    if allow_partial:  # a cache of a partly loaded network is not reused by a checked run
        key["allow_partial_weights"] = "1"
    if cache and os.path.exists(cache):
        slices = load_prediction_cache(cache, key)
        log.info(f"read {len(slices)} slices' network outputs from {cache}")
        return slices
    if not weights:
        log.warning(
            "no weights given (--weights / MODEL.WEIGHTS): tuning on a randomly initialised network"
        )
    torch.manual_seed(seed)  # only matters without weights: a reproducible random network
    # the predictor's model building and checked loading; TEST.FLIP_TTA: tuned on the
    # flip-averaged masks (and the flip vote) the evaluation will see
    model = LesionPredictor.from_config(
        model_cfg,
        weights=[weights] if weights else [],
        allow_partial_weights=allow_partial,
        tta=model_cfg.TEST.FLIP_TTA,
    ).model
    slices = collect_predictions(model, build_pwml_test_loader(model_cfg, dataset), progress)
    log.info(f"ran the network on {len(slices)} slices of {dataset}")
    if cache:
        save_prediction_cache(cache, slices, key)
        log.info(f"cached the network outputs in {cache}")
    return slices


def calibrated_inference(cfg, slices) -> InferenceSettings:
    """The inference the cached ``slices`` come from: one checkpoint, cfg's TEST.FLIP_TTA,
    and the votes the cache recorded (a flip-TTA ensemble's; 1 for a plain model)."""
    votes = slices[0].min_votes if slices else 1
    return InferenceSettings(bool(cfg.TEST.FLIP_TTA), 1, int(votes))


def _inference_record(inference: InferenceSettings) -> dict:
    """The trials file's record of the inference calibrated with."""
    return {"flip_tta": inference.flip_tta, "models": inference.models, "votes": inference.votes}


def calibrate_operating_point(
    config_file: Union[str, Path],
    weights: Optional[Union[str, Path]],
    dataset: Optional[str],
    output: Optional[Union[str, Path]] = None,
    *,
    opts: Sequence[str] = (),
    search: Sequence[str] = SEARCHES,
    objective: str = "dice",
    score_grid: Sequence[float] = DEFAULT_SCORE_GRID,
    bounds: Optional[Mapping[str, tuple[float, float]]] = None,
    init_points: int = 5,
    n_iter: int = 25,
    seed: int = 0,
    cache: Optional[Union[str, Path]] = None,
    allow_partial_weights: bool = False,
    progress: bool = True,
) -> Calibration:
    """Calibrate a trained row's score threshold (and CRF) and write it as a tuned config.

    Raises ConfigError / PWMLDataError / WeightsError for a bad config, dataset, output or
    checkpoint, before the network runs where it can.

    Args:
        config_file: the row's config.
        weights: checkpoint to calibrate (None: MODEL.WEIGHTS).
        dataset: registered dataset to tune on (None: DATASETS.TEST[0]).
        output: the tuned config (default OUTPUT_DIR/<config>_tuned.yaml); the trials go
            beside it (.json), and the log (.log).
        opts: config overrides, as on the command line.
        search: "score" and/or "crf".
        objective: a key of `dcrf_search.OBJECTIVES`.
        score_grid: score thresholds tried exactly.
        bounds: of l1..e1 (default DEFAULT_BOUNDS).
        init_points, n_iter, seed: the Bayesian search's (`bayes.bayes_maximize`).
        cache: file for the network's outputs: read when it exists (PWMLDataError when
            made for another dataset, weights or config), else written (None: no cache).
        allow_partial_weights: load a checkpoint that does not fill the model.
        progress: show progress bars.

    Returns:
        `Calibration`; ``written`` is None when no point beat predicting no lesion.
    """
    opts = [str(o) for o in opts]
    bounds = check_bounds(bounds or DEFAULT_BOUNDS)  # (low, high) floats, or refused now
    cfg = get_rsrcnn_cfg(str(config_file), opts)
    weights = cfg.MODEL.WEIGHTS if weights is None else str(weights)
    dataset = dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise ConfigError(config_file, "no dataset to tune on: pass --dataset or set DATASETS.TEST")
    output = Path(output or Path(cfg.OUTPUT_DIR) / f"{Path(config_file).stem}_tuned.yaml")
    if output.is_dir():  # found now, not after every trial ran
        raise PWMLDataError(output, "is a folder; --output takes the tuned config file to write")
    # our lines and detectron2's (data loading) beside the tuned config, for this call only
    with logged_step(output.with_suffix(".log"), names=("rsrcnn_d2", "detectron2")):
        if fall_back_to_cpu(cfg):
            logger.warning("no CUDA device: running on CPU (MODEL.DEVICE cpu)")
        return _calibrate(
            cfg, str(config_file), opts, weights, dataset, output, search, objective,
            list(score_grid), bounds, init_points, n_iter, seed, cache, allow_partial_weights,
            progress,
        )  # fmt: skip


def _calibrate(
    cfg, config_file, opts, weights, dataset, output, search, objective, score_grid, bounds,
    init_points, n_iter, seed, cache, allow_partial, progress,
) -> Calibration:  # fmt: skip
    log = logging.getLogger("rsrcnn_d2")
    config_score = float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
    has_crf = bool(cfg.MODEL.DCRF.NAME)
    search_score = "score" in search
    grid = score_grid if search_score else [config_score]
    slices = load_slices(
        cfg,
        dataset,
        weights,
        None if cache is None else str(cache),
        seed,
        log,
        allow_partial,
        score_floor=min([*grid, config_score]),
        progress=progress,
    )
    if not slices:
        raise PWMLDataError(dataset, "the dataset has no slices to tune on")
    inference = calibrated_inference(cfg, slices)
    log.info(f"calibrating with: {inference} (TEST.FLIP_TTA {cfg.TEST.FLIP_TTA})")
    if "crf" in search and not has_crf:
        log.info("the config has no dense CRF (MODEL.DCRF.NAME is empty): its threshold only")
    tune_crf = has_crf and "crf" in search
    result = tune_operating_point(
        slices,
        config_score,
        params_from_cfg(cfg) if has_crf else None,
        tune_crf=tune_crf,
        objective=objective,
        score_grid=grid,
        bounds=bounds,
        init_points=init_points,
        n_iter=n_iter,
        seed=seed,
        gaussian_compat=cfg.MODEL.DCRF.GAUSSIAN_COMPAT,
        bilateral_compat=cfg.MODEL.DCRF.BILATERAL_COMPAT,
        mask_threshold=cfg.MODEL.RSRCNN.MASK_THRESHOLD,
        progress=progress,
    )
    lines = [
        f"{OBJECTIVES[objective]} on {dataset}, {result.num_slices} slices, "
        f"{len(result.trials)} operating points tried:",
        f"  config's point:   {result.start_value:.4f}  ({format_point(result.start)})",
        f"  best found:       {result.best_value:.4f}  ({format_point(result.best)})",
    ]
    print("\n".join(lines))
    trials = output.with_suffix(".json")
    atomic_write_json(
        trials,
        {
            "dataset": dataset,
            "weights": weights,
            "seed": seed,
            "objective": objective,
            "search": [s for s in SEARCHES if s in search],
            "score_grid": grid,
            "bounds": bounds,
            "calibrated_with": _inference_record(inference),
            "empty_prediction_value": result.empty_value,
            "start": {**result.start, "value": result.start_value},
            # nothing found: no best point, not the config's point dressed as one
            "best": None if result.found_nothing else {**result.best, "value": result.best_value},
            "trials": [{**p, "value": v} for p, v in result.trials],
        },
    )
    found = Calibration(
        output,
        None,
        trials,
        dataset,
        objective,
        len(result.trials),
        result.best_value,
        result.empty_value,
    )
    if result.found_nothing:
        return found
    crf = {k: result.best[k] for k in PARAM_KEYS} if tune_crf else None
    comments = [
        f"Operating point calibrated by tools/tune_operating_point.py (seed {seed})",
        f"weights: {weights or '(none)'}",
        f"calibrated with: {inference} (TEST keys below; rsrcnn-predict runs the same)",
    ]
    if opts:
        comments.append(
            f"tuned with overrides (not repeated; the TEST keys below ran): {' '.join(opts)}"
        )
    write_tuned_config(
        output,
        config_file,
        crf,
        comments + lines,
        score_threshold=result.best["score"] if search_score else None,
        inference=calibration_record(cfg, inference),
    )
    print(f"tuned config: {output}\ntrials: {trials}")
    found.written = output
    return found
