"""Tune the dense CRF's l1, l2, c1, e1 by Bayesian optimisation on validation Dice.

The network runs once over the dataset (with its CRF off); every trial re-pastes
the cached mask probabilities through a CRF with the trial's parameters and
scores strict mean Dice (every slice counts). The config's own CRF parameters
are the first trial, so the result is never worse than them on this dataset.
Writes a config ``_BASE_: <--config-file>`` + the tuned MODEL.DCRF keys, usable
as ``--config-file`` by train_net.py and the other tools. For example:

    python tools/tune_dcrf.py --config-file configs/PWML/E_rsrcnn_R_101_FPN.yaml \\
        --weights output/E/model_final.pth --dataset pwml_val --cache output/E/val_probs.pt \\
        --output output/E/E_dcrf_tuned.yaml

``--dataset-root [NAME=]DIR`` (repeatable) registers another prepared cohort as
``NAME_<split>`` for --dataset; a missing or unprepared root exits with status 2.
The program behind ``tools/tune_dcrf.py`` (also ``python -m rsrcnn_d2.tuning.cli``).
"""

import argparse
import os
import sys
from pathlib import Path

import torch

from ..config import fall_back_to_cpu, get_rsrcnn_cfg
from ..data import build_pwml_test_loader
from ..data.fileio import atomic_write_json
from ..data.register import register_dataset_roots
from ..errors import ConfigError, PWMLDataError, report_errors
from ..inference.predictor import LesionPredictor
from ..tool_setup import quiet_known_warnings, setup_tool_logging
from .dcrf_search import DEFAULT_BOUNDS, PARAM_KEYS, format_params, params_from_cfg, tune_dcrf
from .prediction_cache import (
    collect_predictions,
    load_prediction_cache,
    prediction_cache_key,
    save_prediction_cache,
)
from .tuned_config import write_tuned_config

__all__ = ["parse_args", "load_slices", "main"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
        help="tuned config YAML (default: "
        "OUTPUT_DIR/<config name>_dcrf_tuned.yaml); trials go beside it as .json",
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
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def load_slices(
    cfg, dataset: str, weights: str, cache: str, seed: int, log, allow_partial: bool = False
):
    """Cached network outputs: from ``cache`` when it matches, else one pass of the model.

    The weights go through the predictor's checked loading: a checkpoint that
    does not fill the model is refused unless ``allow_partial``.
    """
    key = prediction_cache_key(cfg, dataset, weights)
    if not weights:
        key["random_init_seed"] = str(seed)
    if allow_partial:  # a cache of a partly loaded network is not reused by a checked run
        key["allow_partial_weights"] = "1"
    if cache and os.path.exists(cache):
        slices = load_prediction_cache(cache, key)
        log.info(f"read {len(slices)} slices' network outputs from {cache}")
        return slices
    model_cfg = cfg.clone()
    model_cfg.defrost()
    model_cfg.MODEL.DCRF.NAME = ""  # the CRF is what the trials vary
    if not weights:
        log.warning(
            "no weights given (--weights / MODEL.WEIGHTS): tuning on a randomly initialised network"
        )
    torch.manual_seed(seed)  # only matters without weights: a reproducible random network
    # the predictor's model building and checked loading; TEST.FLIP_TTA: the CRF is tuned
    # on the flip-averaged masks the evaluation will see
    model = LesionPredictor.from_config(
        model_cfg,
        weights=[weights] if weights else [],
        allow_partial_weights=allow_partial,
        tta=model_cfg.TEST.FLIP_TTA,
    ).model
    slices = collect_predictions(model, build_pwml_test_loader(model_cfg, dataset))
    log.info(f"ran the network on {len(slices)} slices of {dataset}")
    if cache:
        save_prediction_cache(cache, slices, key)
        log.info(f"cached the network outputs in {cache}")
    return slices


@report_errors("tune_dcrf")
def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_known_warnings()
    register_dataset_roots(args.dataset_root)  # a bad root: one line, exit 2 (report_errors)
    cfg = get_rsrcnn_cfg(args.config_file, args.opts)
    weights = cfg.MODEL.WEIGHTS if args.weights is None else args.weights
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise ConfigError(
            args.config_file, "no dataset to tune on: pass --dataset or set DATASETS.TEST"
        )
    output = Path(
        args.output or Path(cfg.OUTPUT_DIR) / f"{Path(args.config_file).stem}_dcrf_tuned.yaml"
    )
    # our lines and detectron2's (data loading) to the console and beside the tuned config
    log = setup_tool_logging(output.with_suffix(".log"), names=("rsrcnn_d2", "detectron2"))
    if fall_back_to_cpu(cfg):
        log.warning("no CUDA device: running on CPU (MODEL.DEVICE cpu)")

    slices = load_slices(
        cfg, dataset, weights, args.cache, args.seed, log, args.allow_partial_weights
    )
    if not slices:
        raise PWMLDataError(dataset, "the dataset has no slices to tune on")
    bounds = {k: tuple(getattr(args, k)) for k in PARAM_KEYS}
    result = tune_dcrf(
        slices,
        params_from_cfg(cfg),
        bounds=bounds,
        init_points=args.init_points,
        n_iter=args.n_iter,
        seed=args.seed,
        gaussian_compat=cfg.MODEL.DCRF.GAUSSIAN_COMPAT,
        bilateral_compat=cfg.MODEL.DCRF.BILATERAL_COMPAT,
        threshold=cfg.MODEL.RSRCNN.MASK_THRESHOLD,
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
    comments = [
        "Dense-CRF parameters tuned by tools/tune_dcrf.py (Bayesian optimisation, seed "
        f"{args.seed})",
        f"weights: {weights or '(none)'}",
    ]
    if args.opts:
        comments.append(f"tuned with overrides (not repeated here): {' '.join(args.opts)}")
    write_tuned_config(output, args.config_file, result.best_params, comments + lines)
    trials = output.with_suffix(".json")
    atomic_write_json(
        trials,
        {
            "dataset": dataset,
            "weights": weights,
            "seed": args.seed,
            "bounds": bounds,
            "no_crf_dice": result.no_crf_dice,
            "start": {**result.start_params, "dice": result.start_dice},
            "best": {**result.best_params, "dice": result.best_dice},
            "trials": [{**t.params, "dice": t.dice} for t in result.trials],
        },
    )
    print(f"tuned config: {output}\ntrials: {trials}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
