"""Table 1's ablation rows, the k sweep on row C and our row, several seeds, resumable.

    python tools/run_ablation.py [--output output/ablation] [--seeds 0 1 2] [--iters 500]
                                 [--rows B C D E plus] [--k 1.0 1.3 2.0] [--subjects 36]
                                 [--fractions 0.6 0.15 0.25] [--objective dice|lesion_f1]
                                 [--variant NAME ROW KEY VALUE [KEY VALUE ...]]
                                 [--pretrained OUT/pretrained.pth] [--final-weights]

Every run is the ordinary training program (``python -m rsrcnn_d2.cli.train_net``)
with a CPU-sized config (configs/PWML-Tiny/), trained on the cohort's train
subjects for a fixed number of iterations (the validation subjects steer the
plateau schedule and pick ``model_best.pth``) and evaluated once on its held-out
test subjects at the config's operating point (score threshold 0.7, the
reference's CRF parameters). Then every run is **calibrated** the same way
(tools/tune_operating_point.py on the validation subjects: the score threshold,
jointly with the CRF's parameters for rows that have one; objective --objective)
and evaluated once more on the test subjects at its calibrated point
(``runs/<run>/seed<s>/calibrated/``). The cohort (tools/make_synthetic_cohort.py,
the anatomy-based generator, + tools/prepare_pwml.py) is made once and shared by
all runs; seeds change initialisation and data order only.

Rows: B-E are the paper's (the reference code's settings); ``plus`` is ours,
RS R-CNN+ (row E + 2.5-D input + flip TTA, calibrated); the k sweep varies row
C's expansion factor (the paper's Table 2; 1.3 is row C itself) and comes with row C
unless --k names other factors (``--k`` alone: none). Row A (the
classical baseline, tuned on the validation subjects per seed) is available with
``--rows A``. ``--variant`` adds a run of your own: a row with config overrides,
e.g. ``--variant C_relu_off C MODEL.HRPN.OBJECTNESS_RELU False``.

Re-running skips finished runs and calibrations and resumes an interrupted
training from its last checkpoint; runs go seed by seed, so a partial sweep
still has whole seeds. OUTPUT/summary.md (--summary) holds the tables: mean ±
sd over seeds at both operating points, both protocols, lesion F1 with 2-D and
3-D lesions, and bootstrap 95 % intervals over the test subjects for each row's
strict Dice and the differences between rows (each part, each k against 1.3), and,
with the k sweep, row C's k chosen per seed on the validation subjects against
k = 1.3 (summary.json: the numbers).
--final-weights also calibrates and evaluates every trained run's model_final.pth
(runs/<run>_final/): the reference keeps the checkpoint of lowest validation loss,
which in a short fine-tuning can come before the heads have started (each run's
health says so); the summary then compares the rows both ways.
The program behind tools/run_ablation.py (also ``rsrcnn-ablation``,
``python -m rsrcnn_d2.cli.run_ablation``); the sweep is `rsrcnn_d2.experiments.ablation`.
"""

import argparse
import sys

from ..errors import report_errors
from ..model_zoo import ROW_CONFIGS
from ..tool_setup import quiet_known_warnings

__all__ = ["build_parser", "main"]

# rsrcnn_d2.experiments.ablation's CLASSICAL, K_ROW and ROW_K, named before it is loaded
CLASSICAL = "A"  # row A, the classical baseline: no config
K_ROW, ROW_K = "C", 1.3  # the k sweep varies row C; its config has 1.3
DEFAULT_KS = [1.0, ROW_K, 2.0]  # the paper's Table 2
DEFAULT_ROWS = ["B", "C", "D", "E", "plus"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--output", default="output/ablation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=500)
    p.add_argument(
        "--rows", nargs="+", default=DEFAULT_ROWS, choices=[CLASSICAL, *ROW_CONFIGS["tiny"]]
    )
    p.add_argument(
        "--k",
        type=float,
        nargs="*",
        default=None,
        help=f"expansion factors for row {K_ROW} ({ROW_K} is row {K_ROW} itself; default "
        f"{' '.join(map(str, DEFAULT_KS))} when --rows has {K_ROW}, none otherwise; "
        "--k alone: none)",
    )
    p.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME ROW KEY VALUE",
        help="an extra run: a row with overrides",
    )
    p.add_argument("--subjects", type=int, default=36, help="synthetic cohort size")
    p.add_argument("--cohort-seed", type=int, default=0)
    p.add_argument(
        "--coarse-cohort",
        action="store_true",
        help="simulate the cohort on a coarse grid (1.4-1.5 mm in-plane, 2.6-3.0 mm slices: "
        "about 8x fewer voxels, half the slices): a quick smoke run of the sweep, not results",
    )
    p.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.6, 0.15, 0.25),
        metavar=("TRAIN", "VAL", "TEST"),
        help="subject split (enough test subjects for the bootstrap intervals)",
    )
    p.add_argument(
        "--objective",
        choices=["dice", "lesion_f1"],
        default="dice",
        help="what calibration maximises on the validation subjects; each objective has its "
        "own calibrated evaluations (runs/<run>/seed<s>/calibrated for dice, "
        "calibrated_lesion_f1) and summary (summary.md, summary_lesion_f1.md), so a re-run "
        "with the other one adds to the first instead of reusing it",
    )
    p.add_argument(
        "--calibration-trials",
        type=int,
        nargs=2,
        default=(5, 15),
        metavar=("RANDOM", "GUIDED"),
        help="Bayesian trials of the joint threshold + CRF search (rows with a CRF)",
    )
    p.add_argument("--no-calibrate", action="store_true", help="train only (no calibration)")
    p.add_argument("--no-train", action="store_true", help="calibrate finished runs only")
    p.add_argument("--summary-only", action="store_true", help="only tabulate finished runs")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train again a run whose folder holds one trained with other options (the old "
        "folder is kept as seed<k>.replaced-<time>); without it such a run is refused (exit 2)",
    )
    p.add_argument(
        "--figures",
        action="store_true",
        help="also draw OUTPUT/figures/: box plots of every row and overlays of rows B, E "
        "and plus (seed --seeds[0], calibrated)",
    )
    p.add_argument(
        "--summary",
        help="summary file name inside OUTPUT (default: summary.md; summary_lesion_f1.md for "
        "--objective lesion_f1)",
    )
    p.add_argument(
        "--pretrained",
        metavar="CKPT",
        default=None,
        help="fine-tune every trained run from this checkpoint (rsrcnn-pretrain's "
        "pretrained.pth: the paper's protocol) instead of the configs' weights",
    )
    p.add_argument(
        "--final-weights",
        action="store_true",
        help="also calibrate and evaluate every trained run's final weights (<run>_final), "
        "beside the checkpoint training kept (model_best.pth)",
    )
    return p


def k_sweep(rows, ks):
    """The expansion factors to run row C at: those asked with --k, else the paper's Table 2
    when row C is among the rows (``--rows D E`` trains no row C)."""
    if ks is not None:
        return ks
    return list(DEFAULT_KS) if K_ROW in rows else []


@report_errors("run_ablation")
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.calibration_trials is not None and min(args.calibration_trials) < 0:
        parser.error("--calibration-trials: RANDOM and GUIDED are counts (0 or more)")
    quiet_known_warnings()  # harmless third-party notices, in this program only
    if len(set(args.seeds)) != len(args.seeds):  # a seed twice would count twice in mean ± sd
        print(f"error: --seeds repeats a seed: {' '.join(map(str, args.seeds))}", file=sys.stderr)
        return 2
    from ..experiments.ablation import run_ablation, summary_file
    from ..synth import COARSE_GRID

    failed = run_ablation(
        args.output,
        seeds=args.seeds,
        iters=args.iters,
        rows=args.rows,
        ks=k_sweep(args.rows, args.k),
        variants=args.variant,
        subjects=args.subjects,
        cohort_seed=args.cohort_seed,
        fractions=args.fractions,
        objective=args.objective,
        calibration_trials=args.calibration_trials,
        no_calibrate=args.no_calibrate,
        no_train=args.no_train,
        summary_only=args.summary_only,
        retrain=args.retrain,
        figures=args.figures,
        pretrained=args.pretrained,
        final_weights=args.final_weights,
        summary=args.summary or summary_file(args.objective),
        cohort_params=COARSE_GRID if args.coarse_cohort else None,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
