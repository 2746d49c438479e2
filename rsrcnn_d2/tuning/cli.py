"""Calibrate a trained row's operating point on validation subjects: score threshold + CRF.

    python tools/tune_operating_point.py --config-file configs/PWML/E_rsrcnn_R_101_FPN.yaml \\
        --weights output/E/model_best.pth --dataset pwml_val --cache output/E/val_probs.pt \\
        [--objective dice|lesion_f1] --output output/E/E_tuned.yaml

The network runs once over the dataset (CRF off, detections down to the score
grid's lowest threshold, with TEST.FLIP_TTA when the config has it); every trial
re-selects the cached detections at its threshold, re-pastes their mask
probabilities through the CRF with its parameters and scores the objective:
strict mean Dice (slices with a lesion in truth or prediction, the default) or
lesion-wise F1. First the
threshold over a grid (--score-grid), then, for rows with a dense CRF, the
threshold and l1, l2, c1, e1 together by Bayesian optimisation from the grid's
best point. The config's own point is the first trial, so the result is never
worse than the config on this dataset. Writes ``_BASE_: <--config-file>`` (an
absolute path: the file works from any folder, copied or moved) +
MODEL.ROI_HEADS.SCORE_THRESH_TEST (+ MODEL.DCRF) + the inference it was
calibrated with (TEST.FLIP_TTA, TEST.ENSEMBLE_MIN_VOTES when members vote, and
the record TEST.CALIBRATED_WITH, which rsrcnn-predict checks), usable as
``--config-file`` by every tool, and the trials beside it as .json.

When no operating point scores above predicting no lesion at all (every point
0: the weights find no lesion on this dataset), there is nothing to calibrate:
no tuned config is written, the trials .json records it (``"best": null``) and
the program exits with status 1. Other exit statuses as every tool's
(rsrcnn_d2.errors): 2 bad data or arguments (``MODEL.DEVICE cuda`` without
CUDA among them), 3 bad config, 4 bad weights.

``tools/tune_dcrf.py`` is the old name: it tunes the CRF alone at the config's
threshold (``--search crf``), as before, and writes ``<config>_dcrf_tuned.yaml``.
``--dataset-root [NAME=]DIR`` (repeatable) registers another prepared cohort as
``NAME_<split>`` for --dataset; a missing or unprepared root exits with status 2.
The program behind ``tools/tune_operating_point.py`` (also ``python -m
rsrcnn_d2.tuning.cli``).
"""

import argparse
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

import torch

from ..config import check_requested_device, device_override, fall_back_to_cpu, get_rsrcnn_cfg
from ..data import build_pwml_test_loader
from ..data.fileio import atomic_write_json
from ..data.register import register_dataset_roots
from ..errors import EXIT_PARTIAL, ConfigError, PWMLDataError, report_errors
from ..inference.calibration import InferenceSettings, calibration_record
from ..inference.predictor import LesionPredictor
from ..tool_setup import quiet_known_warnings, setup_tool_logging
from .dcrf_search import (
    DEFAULT_BOUNDS,
    OBJECTIVES,
    PARAM_KEYS,
    format_params,
    params_from_cfg,
    tune_dcrf,
)
from .operating_point import (
    DEFAULT_SCORE_GRID,
    empty_prediction_value,
    format_point,
    tune_operating_point,
)
from .prediction_cache import (
    collect_predictions,
    load_prediction_cache,
    prediction_cache_key,
    save_prediction_cache,
)
from .tuned_config import write_tuned_config

__all__ = ["parse_args", "load_slices", "calibrated_inference", "main", "tune_dcrf_main"]

SEARCHES = ("score", "crf")


def parse_args(argv=None, legacy: bool = False):
    parser = argparse.ArgumentParser(
        prog="tune_dcrf" if legacy else "tune_operating_point",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--weights", default=None, help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="tune on a checkpoint that leaves some of the model's layers at their "
        "random initialisation (refused by default)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="registered dataset to tune on (default: the config's DATASETS.TEST[0])",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="tuned config YAML (default: OUTPUT_DIR/<config name>"
        + ("_dcrf_tuned.yaml" if legacy else "_tuned.yaml")
        + "); trials go beside it as .json",
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="file for the network's outputs: "
        "reused when it matches the model, config and dataset, else written",
    )
    parser.add_argument(
        "--dataset-root",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="register a prepared cohort (tools/prepare_pwml.py) as NAME_<split>; repeatable",
    )
    parser.add_argument(
        "--search",
        nargs="+",
        choices=SEARCHES,
        default=["crf"] if legacy else list(SEARCHES),
        help="what to tune: the score threshold, the CRF's parameters (rows with a CRF) "
        "or both (default: " + ("crf" if legacy else "both") + ")",
    )
    parser.add_argument(
        "--objective",
        choices=sorted(OBJECTIVES),
        default="dice",
        help="validation figure to maximise: "
        + "; ".join(f"{k}: {v}" for k, v in OBJECTIVES.items()),
    )
    parser.add_argument(
        "--score-grid",
        type=float,
        nargs="+",
        default=list(DEFAULT_SCORE_GRID),
        metavar="T",
        help="score thresholds tried (default 0.05, 0.10, ..., 0.95, 0.96, ..., 0.99); the "
        "config's is added",
    )
    parser.add_argument("--init-points", type=int, default=5, help="random trials")
    parser.add_argument("--n-iter", type=int, default=25, help="GP-guided trials")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the optimiser (and of the network when it has no weights)",
    )
    for name, (lo, hi) in DEFAULT_BOUNDS.items():
        parser.add_argument(
            f"--{name}",
            type=float,
            nargs=2,
            default=(lo, hi),
            metavar=("LOW", "HIGH"),
            help=f"search bounds of {name} (MODEL.DCRF.{PARAM_KEYS[name]}); default {lo:g} {hi:g}",
        )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if any(not 0 <= t <= 1 for t in args.score_grid):
        parser.error(f"--score-grid values must lie in [0, 1], got {args.score_grid}")
    return args


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

    ``score_floor`` runs the network with that detection threshold instead of the
    config's (lower, so that higher thresholds can be tried on the cache). The
    weights go through the predictor's checked loading: a checkpoint that does not
    fill the model is refused unless ``allow_partial``.
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


def _setup(args, legacy: bool):
    quiet_known_warnings()
    device = device_override(args.opts)
    if device:  # asked for by name: no silent fall-back (exit 2 without CUDA)
        check_requested_device(device, "MODEL.DEVICE")
    register_dataset_roots(args.dataset_root)  # a bad root: one line, exit 2 (report_errors)
    cfg = get_rsrcnn_cfg(args.config_file, args.opts)
    weights = cfg.MODEL.WEIGHTS if args.weights is None else args.weights
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise ConfigError(
            args.config_file, "no dataset to tune on: pass --dataset or set DATASETS.TEST"
        )
    suffix = "_dcrf_tuned.yaml" if legacy else "_tuned.yaml"
    output = Path(args.output or Path(cfg.OUTPUT_DIR) / f"{Path(args.config_file).stem}{suffix}")
    if output.is_dir():  # found now, not after every trial ran
        raise PWMLDataError(output, "is a folder; --output takes the tuned config file to write")
    # our lines and detectron2's (data loading) to the console and beside the tuned config
    log = setup_tool_logging(output.with_suffix(".log"), names=("rsrcnn_d2", "detectron2"))
    if fall_back_to_cpu(cfg):
        log.warning("no CUDA device: running on CPU (MODEL.DEVICE cpu)")
    return cfg, weights, dataset, output, log


def _bounds(args) -> dict:
    return {k: tuple(getattr(args, k)) for k in PARAM_KEYS}


def _search_options(args, cfg) -> dict:
    """The search settings both programs pass: CRF bounds, trials, seed, fixed compatibilities."""
    return {
        "bounds": _bounds(args),
        "init_points": args.init_points,
        "n_iter": args.n_iter,
        "seed": args.seed,
        "gaussian_compat": cfg.MODEL.DCRF.GAUSSIAN_COMPAT,
        "bilateral_compat": cfg.MODEL.DCRF.BILATERAL_COMPAT,
    }


def _comments(args, weights, what: str, inference: InferenceSettings) -> List[str]:
    comments = [
        f"{what} (seed {args.seed})",
        f"weights: {weights or '(none)'}",
        f"calibrated with: {inference} (TEST keys below; rsrcnn-predict runs the same)",
    ]
    if args.opts:
        overrides = " ".join(args.opts)
        comments.append(
            f"tuned with overrides (not repeated; the TEST keys below ran): {overrides}"
        )
    return comments


def _say_nothing_found(prog, dataset, what, trials, value, empty, output) -> int:
    """One line on stderr for a calibration that found nothing; the exit status."""
    nothing = "undefined" if math.isnan(empty) else f"{empty:.4f}"
    earlier = f"; {output} is from an earlier run" if output.exists() else ""
    print(
        f"{prog}: error: {dataset}: none of {trials} operating points scores above predicting "
        f"no lesion ({what} {value:.4f}, no lesion: {nothing}): nothing to calibrate, no tuned "
        f"config written (do the weights detect lesions on this dataset?){earlier}; trials in "
        f"{output.with_suffix('.json')}",
        file=sys.stderr,
    )
    return EXIT_PARTIAL


@report_errors("tune_operating_point")
def main(argv=None) -> int:
    args = parse_args(argv)
    cfg, weights, dataset, output, log = _setup(args, legacy=False)
    config_score = float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
    has_crf = bool(cfg.MODEL.DCRF.NAME)
    search_score = "score" in args.search
    grid = args.score_grid if search_score else [config_score]
    slices = load_slices(
        cfg,
        dataset,
        weights,
        args.cache,
        args.seed,
        log,
        args.allow_partial_weights,
        score_floor=min([*grid, config_score]),
        progress=not args.no_progress,
    )
    if not slices:
        raise PWMLDataError(dataset, "the dataset has no slices to tune on")
    inference = calibrated_inference(cfg, slices)
    log.info(f"calibrating with: {inference} (TEST.FLIP_TTA {cfg.TEST.FLIP_TTA})")
    if "crf" in args.search and not has_crf:
        log.info("the config has no dense CRF (MODEL.DCRF.NAME is empty): its threshold only")
    tune_crf = has_crf and "crf" in args.search
    result = tune_operating_point(
        slices,
        config_score,
        params_from_cfg(cfg) if has_crf else None,
        tune_crf=tune_crf,
        objective=args.objective,
        score_grid=grid,
        **_search_options(args, cfg),
        mask_threshold=cfg.MODEL.RSRCNN.MASK_THRESHOLD,
        progress=not args.no_progress,
    )
    lines = [
        f"{OBJECTIVES[args.objective]} on {dataset}, {result.num_slices} slices, "
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
            "seed": args.seed,
            "objective": args.objective,
            "search": [s for s in SEARCHES if s in args.search],
            "score_grid": grid,
            "bounds": _bounds(args),
            "calibrated_with": _inference_record(inference),
            "empty_prediction_value": result.empty_value,
            "start": {**result.start, "value": result.start_value},
            # nothing found: no best point, not the config's point dressed as one
            "best": None if result.found_nothing else {**result.best, "value": result.best_value},
            "trials": [{**p, "value": v} for p, v in result.trials],
        },
    )
    if result.found_nothing:
        return _say_nothing_found(
            "tune_operating_point",
            dataset,
            OBJECTIVES[args.objective],
            len(result.trials),
            result.best_value,
            result.empty_value,
            output,
        )
    crf = {k: result.best[k] for k in PARAM_KEYS} if tune_crf else None
    write_tuned_config(
        output,
        args.config_file,
        crf,
        _comments(
            args, weights, "Operating point calibrated by tools/tune_operating_point.py", inference
        )
        + lines,
        score_threshold=result.best["score"] if search_score else None,
        inference=calibration_record(cfg, inference),
    )
    print(f"tuned config: {output}\ntrials: {trials}")
    return 0


def _inference_record(inference: InferenceSettings) -> dict:
    """The trials file's record of the inference calibrated with."""
    return {"flip_tta": inference.flip_tta, "models": inference.models, "votes": inference.votes}


@report_errors("tune_dcrf")
def tune_dcrf_main(argv=None) -> int:
    """The old program (tools/tune_dcrf.py): the CRF alone, strict Dice, at the config's
    threshold; ``--search``/``--objective`` given to it run the new one."""
    args = parse_args(argv, legacy=True)
    if args.search != ["crf"] or args.objective != "dice":
        return main.__wrapped__(argv)
    cfg, weights, dataset, output, log = _setup(args, legacy=True)
    config_score = float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
    slices = load_slices(
        cfg,
        dataset,
        weights,
        args.cache,
        args.seed,
        log,
        args.allow_partial_weights,
        progress=not args.no_progress,
    )
    if not slices:
        raise PWMLDataError(dataset, "the dataset has no slices to tune on")
    inference = calibrated_inference(cfg, slices)
    log.info(f"calibrating with: {inference} (TEST.FLIP_TTA {cfg.TEST.FLIP_TTA})")
    result = tune_dcrf(
        slices,
        params_from_cfg(cfg),
        **_search_options(args, cfg),
        threshold=cfg.MODEL.RSRCNN.MASK_THRESHOLD,
        score_threshold=config_score,
    )
    start, best = format_params(result.start_params), format_params(result.best_params)
    lines = [
        f"mean Dice (strict) on {dataset}, {result.num_slices} slices, "
        f"{len(result.trials)} CRF settings tried:",
        f"  no CRF:                {result.no_crf_dice:.4f}",
        f"  config's CRF params:   {result.start_dice:.4f}  ({start})",
        f"  best found:            {result.best_dice:.4f}  ({best})",
    ]
    print("\n".join(lines))
    empty = empty_prediction_value(slices, "dice", cfg.MODEL.RSRCNN.MASK_THRESHOLD)
    found_nothing = not result.best_dice > empty
    trials = output.with_suffix(".json")
    atomic_write_json(
        trials,
        {
            "dataset": dataset,
            "weights": weights,
            "seed": args.seed,
            "bounds": _bounds(args),
            "calibrated_with": _inference_record(inference),
            "empty_prediction_value": empty,
            "no_crf_dice": result.no_crf_dice,
            "start": {**result.start_params, "dice": result.start_dice},
            "best": None if found_nothing else {**result.best_params, "dice": result.best_dice},
            "trials": [{**t.params, "dice": t.dice} for t in result.trials],
        },
    )
    if found_nothing:
        return _say_nothing_found(
            "tune_dcrf",
            dataset,
            OBJECTIVES["dice"],
            len(result.trials),
            result.best_dice,
            empty,
            output,
        )
    comments = _comments(
        args,
        weights,
        "Dense-CRF parameters tuned by tools/tune_dcrf.py (Bayesian optimisation",
        inference,
    )
    comments[0] = comments[0].replace(" (seed", ", seed")
    write_tuned_config(
        output,
        args.config_file,
        result.best_params,
        comments + lines,
        inference=calibration_record(cfg, inference),
    )
    print(f"tuned config: {output}\ntrials: {trials}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
