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

``tools/tune_dcrf.py`` is a deprecated alias: it runs this program with ``--search crf``
(the CRF alone at the config's threshold); its default output is now
``<config>_tuned.yaml``, no longer ``<config>_dcrf_tuned.yaml``.
``--dataset-root [NAME=]DIR`` (repeatable) registers another prepared cohort as
``NAME_<split>`` for --dataset; a missing or unprepared root exits with status 2.
The program behind tools/tune_operating_point.py (also ``rsrcnn-tune``,
``python -m rsrcnn_d2.cli.tune_operating_point``); `tune_dcrf_alias` behind tools/tune_dcrf.py.
"""

import argparse
import math
import sys

from ..errors import EXIT_PARTIAL, report_errors
from ..tool_setup import quiet_known_warnings, setup_tool_logging
from .common import add_dataset_root_option

__all__ = ["parse_args", "main", "tune_dcrf_alias"]

# The library's tables (rsrcnn_d2.tuning: calibrate.SEARCHES, dcrf_search.OBJECTIVES and
# PARAM_KEYS), as the parser names them before the library is loaded; the defaults (the
# score grid, the CRF's search bounds) are the library's, filled in after parsing.
SEARCHES = ("score", "crf")
OBJECTIVES = {
    "dice": "strict mean Dice (slices with a lesion in truth or prediction)",
    "lesion_f1": "lesion-wise F1 (2-D lesions pooled over the slices)",
}
PARAM_KEYS = {
    "l1": "GAUSSIAN_SXY",
    "l2": "BILATERAL_SXY",
    "c1": "BILATERAL_SRGB",
    "e1": "ITERATIONS",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="tune_operating_point", description=__doc__.split("\n")[0]
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
        help="tuned config YAML (default: OUTPUT_DIR/<config name>_tuned.yaml); "
        "trials go beside it as .json",
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="file for the network's outputs: "
        "reused when it matches the model, config and dataset, else written",
    )
    add_dataset_root_option(parser)
    parser.add_argument(
        "--search",
        nargs="+",
        choices=SEARCHES,
        default=list(SEARCHES),
        help="what to tune: the score threshold, the CRF's parameters (rows with a CRF) "
        "or both (default: both)",
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
        default=None,
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
    for name, key in PARAM_KEYS.items():
        parser.add_argument(
            f"--{name}",
            type=float,
            nargs=2,
            default=None,
            metavar=("LOW", "HIGH"),
            help=f"search bounds of {name} (MODEL.DCRF.{key}); default: "
            "rsrcnn_d2.tuning.DEFAULT_BOUNDS",
        )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.score_grid is not None and any(not 0 <= t <= 1 for t in args.score_grid):
        parser.error(f"--score-grid values must lie in [0, 1], got {args.score_grid}")
    # the library's defaults and its rule for a search box, once the command line is whole
    from ..tuning.dcrf_search import DEFAULT_BOUNDS, check_bounds
    from ..tuning.operating_point import DEFAULT_SCORE_GRID

    if args.score_grid is None:
        args.score_grid = list(DEFAULT_SCORE_GRID)
    for name, bounds in DEFAULT_BOUNDS.items():
        if getattr(args, name) is None:
            setattr(args, name, bounds)
    try:  # a box the CRF cannot run in: refused here, not after the network's pass
        check_bounds(_bounds(args))
    except ValueError as e:
        parser.error(f"search {e} (--l1 .. --e1)")
    return args


def _bounds(args) -> dict:
    return {k: tuple(getattr(args, k)) for k in PARAM_KEYS}


def _say_nothing_found(found) -> int:
    """One line on stderr for a calibration (a `rsrcnn_d2.tuning.Calibration`) that found
    nothing; the exit status."""
    empty = found.empty_value
    nothing = "undefined" if math.isnan(empty) else f"{empty:.4f}"
    earlier = f"; {found.output} is from an earlier run" if found.output.exists() else ""
    print(
        f"tune_operating_point: error: {found.dataset}: none of {found.num_trials} operating "
        f"points scores above predicting no lesion ({OBJECTIVES[found.objective]} "
        f"{found.best_value:.4f}, no lesion: {nothing}): nothing to calibrate, no tuned "
        f"config written (do the weights detect lesions on this dataset?){earlier}; trials in "
        f"{found.trials_file}",
        file=sys.stderr,
    )
    return EXIT_PARTIAL


@report_errors("tune_operating_point")
def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_known_warnings()
    setup_tool_logging(names=("rsrcnn_d2", "detectron2"))  # the console; the file per call
    from ..config import check_requested_device, device_override
    from ..data.register import register_dataset_roots
    from ..tuning.calibrate import calibrate_operating_point

    device = device_override(args.opts)
    if device:  # asked for by name: no silent fall-back (exit 2 without CUDA)
        check_requested_device(device, "MODEL.DEVICE")
    register_dataset_roots(args.dataset_root)  # a bad root: one line, exit 2 (report_errors)
    found = calibrate_operating_point(
        args.config_file,
        args.weights,
        args.dataset,
        args.output,
        opts=args.opts,
        search=args.search,
        objective=args.objective,
        score_grid=args.score_grid,
        bounds=_bounds(args),
        init_points=args.init_points,
        n_iter=args.n_iter,
        seed=args.seed,
        cache=args.cache,
        allow_partial_weights=args.allow_partial_weights,
        progress=not args.no_progress,
    )
    if found.found_nothing:
        return _say_nothing_found(found)
    return 0


DEPRECATED_TUNE_DCRF = (
    "tune_dcrf: warning: tools/tune_dcrf.py is deprecated, use tools/tune_operating_point.py "
    "--search crf (running it now; default output: <config>_tuned.yaml, "
    "no longer <config>_dcrf_tuned.yaml)"
)


def tune_dcrf_alias(argv=None) -> int:
    """tools/tune_dcrf.py: kept so that old commands still run, as ``main`` with the CRF
    alone; a ``--search`` the user gives comes later and wins."""
    print(DEPRECATED_TUNE_DCRF, file=sys.stderr)
    # "--search=crf" takes exactly one value: config overrides right after it stay overrides
    return main(["--search=crf", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
