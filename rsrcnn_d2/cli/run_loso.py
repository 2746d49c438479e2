"""Leave-one-subject-out cross-validation of rows A, B, E and RS R-CNN+ on a slice folder.

    python tools/run_loso.py SLICES [--output output/loso] [--rows A B E plus] [--iters 300]
                             [--pretrained CKPT] [--weights B=PATH --weights E=PATH]
                             [--config ROW=PATH] [--pretrain ANATOMY_SLICES
                             [--pretrain-iters 500]] [--seeds 0 1 2] [--recalibrate]
                             [--evaluate-at ROW=YAML]
                             [--tag NAME]

SLICES is a folder in the reference implementation's layout, such as the
reference slices ($PWML_REFERENCE_SLICES, see datasets/README.md; read, never written).
It is converted once with tools/prepare_pwml.py into OUTPUT/pwml with one fold
per subject, and each row is trained with tools/train_net.py on all subjects
but one and evaluated on that one, for every subject. The held-out slices of
all folds are then pooled into one strict-protocol table (OUTPUT/summary.md),
with the per-fold mean ± sd beside it. Row A, the classical baseline
(rsrcnn_d2.classical), is not trained: its parameters are tuned on the same
held-in subjects (Bayesian optimisation, --seed) and it is evaluated on the
held-out one.

--pretrained starts every trained row from one checkpoint, as the paper fine-tunes
every row from one pre-trained Mask R-CNN (tools/pretrain.py writes one:
OUT/pretrained.pth). --weights starts one row from a checkpoint, e.g. a model
trained on the synthetic cohort by tools/run_ablation.py
(runs/B/seed0/model_final.pth); --config gives a row another config (e.g. an
operating point calibrated on the synthetic cohort, or the row's own file for the
reference's CRF parameters). --pretrain does both
itself: each row is first trained on ANATOMY_SLICES (a slice folder such as
``tools/make_synthetic_cohort.py --slices`` writes: the anatomy-based cohort as
the reference's 8-bit head crops), converted into OUTPUT/pretrain/pwml and split
by subject, calibrated there on its validation subjects
(tools/tune_operating_point.py), and every fold then fine-tunes that model with
that operating point.
--seeds repeats the whole cross-validation once per seed (runs/TAG/seed<s>/...);
the tables give the pooled figures' mean ± sd over the seeds. --recalibrate also
calibrates each trained fold on its own held-in subjects (the slices it was
fine-tuned on: what a user with a few annotated slices can do) and evaluates the
held-out subject at that point, in a second set of tables. --evaluate-at ROW=YAML
evaluates each trained fold of ROW once more with YAML's test-time settings (an
operating point of the same row, e.g. one calibrated on the synthetic cohort by
tools/run_ablation.py: runs/E/seed0/calibrated/operating_point.yaml), without
training again.
--tag keeps runs with different starting points apart.
Finished folds and pre-trainings are skipped on re-running; an interrupted one
resumes.
The program behind tools/run_loso.py (also ``rsrcnn-loso``,
``python -m rsrcnn_d2.cli.run_loso``); the cross-validation is `rsrcnn_d2.experiments.loso`.
"""

import argparse
import sys
from pathlib import Path

from ..errors import report_errors
from ..tool_setup import quiet_known_warnings

__all__ = ["build_parser", "main"]

# rsrcnn_d2.experiments.loso's CLASSICAL and ROW_CONFIGS' rows, named before it is loaded
CLASSICAL = "A"  # row A, the classical baseline: tuned, not trained
ROWS = ("B", "E", "plus")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("slices", help="folder with input/<subject>/*.png and gt/<subject>/*.png")
    p.add_argument("--output", default="output/loso")
    p.add_argument("--rows", nargs="+", default=[CLASSICAL, "B", "E"], choices=[CLASSICAL, *ROWS])
    p.add_argument("--iters", type=int, default=300)
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="ROW=PATH",
        help="initial weights of a row (default: from scratch)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="ROW=PATH",
        help="config of a row (default: its configs/PWML-Tiny/ file)",
    )
    p.add_argument(
        "--pretrain",
        metavar="SLICES",
        default=None,
        help="slice folder to pre-train and calibrate every row on first",
    )
    p.add_argument("--pretrain-iters", type=int, default=500)
    p.add_argument(
        "--tag", default=None, help="name of this set of runs (default: scratch or pretrained)"
    )
    p.add_argument(
        "--pretrained",
        metavar="CKPT",
        default=None,
        help="checkpoint every trained row starts from (tools/pretrain.py's pretrained.pth)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="repetitions of the whole cross-validation, one per seed (default: 0)",
    )
    p.add_argument("--seed", type=int, default=None, help="one seed (the same as --seeds S)")
    p.add_argument(
        "--evaluate-at",
        action="append",
        default=[],
        metavar="ROW=YAML",
        help="also evaluate each trained fold of ROW at this operating point (same row)",
    )
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="also calibrate each fold on its held-in subjects and evaluate it there",
    )
    p.add_argument(
        "--calibration-trials",
        type=int,
        nargs=2,
        default=None,
        metavar=("RANDOM", "GUIDED"),
        help="Bayesian trials of every calibration (default: 5 25 for the pre-training's, "
        "5 15 for each fold's --recalibrate)",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train again a run whose folder holds one trained with other options (kept "
        "beside it as <folder>.replaced-<time>); without it such a run is refused (exit 2)",
    )
    return p


@report_errors("run_loso")
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.calibration_trials is not None and min(args.calibration_trials) < 0:
        parser.error("--calibration-trials: RANDOM and GUIDED are counts (0 or more)")
    quiet_known_warnings()  # harmless third-party notices, in this program only
    slices = Path(args.slices)
    if not (slices / "input").is_dir() or not (slices / "gt").is_dir():
        print(f"error: {slices}: expected input/ and gt/ folders of PNG slices", file=sys.stderr)
        return 2
    if args.seed is not None and args.seeds is not None:
        print("error: give --seed or --seeds, not both", file=sys.stderr)
        return 2
    seeds = args.seeds or [0 if args.seed is None else args.seed]
    if len(set(seeds)) != len(seeds):
        print(f"error: --seeds repeats a seed: {' '.join(map(str, seeds))}", file=sys.stderr)
        return 2
    if args.pretrained and args.pretrain:
        print(
            "error: give --pretrained (one checkpoint for every row) or --pretrain (each row "
            "trained on a slice folder first), not both",
            file=sys.stderr,
        )
        return 2
    if args.pretrained and not Path(args.pretrained).is_file():
        print(f"error: --pretrained: no such file: {args.pretrained}", file=sys.stderr)
        return 2
    from ..experiments.loso import parse_weights, run_loso

    summary = run_loso(
        slices,
        args.output,
        rows=args.rows,
        iters=args.iters,
        weights=parse_weights(args.weights),
        configs=parse_weights(args.config, "--config"),
        pretrain_slices=args.pretrain,
        pretrain_iters=args.pretrain_iters,
        pretrained=args.pretrained,
        recalibrate=args.recalibrate,
        evaluate_at=parse_weights(args.evaluate_at, "--evaluate-at"),
        tag=args.tag,
        seeds=seeds,
        retrain=args.retrain,
        calibration_trials=args.calibration_trials,
    )
    print(f"summary: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
