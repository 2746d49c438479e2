"""Cross-validate a config over the folds of a prepared cohort, resumably (nnU-Net's 5-fold habit).

    python tools/run_cv.py CONFIG --dataset-root [NAME=]DIR [--output OUT] [--folds 0 1 2 3 4]
                           [--num-gpus N] [--checkpoint best|final] [KEY VALUE ...]

Each fold i trains on the cohort's fold{i}_train subjects (tools/train_net.py),
then its model predicts the whole NIfTI volumes of the fold's held-out subjects,
which are scored on every slice (rsrcnn-evaluate's figures). All out-of-fold
predictions are pooled and scored once. OUT/cv_summary.md and .json give each
fold, the mean ± sd across folds and the pooled figures; OUT/fold_<i>/ holds
config.yaml and model_best.pth / model_final.pth for ensembling.

The held-out fold is also the validation set (DATASETS.VAL): it steers the
plateau LR schedule and picks model_best.pth, as nnU-Net validates on its
held-out fold; --checkpoint final predicts with model_final.pth instead.
Re-running skips finished folds and resumes an interrupted one, but only those
trained with the same config, overrides and cohort: a fold trained otherwise is
refused (exit 2, naming the fold and the differing keys) unless --retrain. Exit
status: 0 done, 1 a fold's training failed, 2 bad data or arguments, 3 bad config.
The program behind tools/run_cv.py (also ``rsrcnn-cv``, ``python -m rsrcnn_d2.cli.run_cv``).
"""

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_PARTIAL, report_errors
from ..tool_setup import quiet_known_warnings
from .common import CONFIG_KEY

__all__ = ["build_parser", "parse_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_cv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "config", help="the model's config file (e.g. configs/PWML/E_rsrcnn_R_101_FPN.yaml)"
    )
    p.add_argument(
        "--dataset-root",
        required=True,
        metavar="[NAME=]DIR",
        help="prepared cohort with folds (tools/prepare_pwml.py); NAME prefixes its "
        "dataset names (default: the folder's name)",
    )
    p.add_argument(
        "--output", default=None, help="output folder (default: output/cv_<config name>)"
    )
    p.add_argument(
        "--folds", type=int, nargs="+", default=None, help="folds to train (default: all)"
    )
    p.add_argument("--num-gpus", type=int, default=1, help="train_net's --num-gpus for each fold")
    p.add_argument(
        "--checkpoint",
        choices=["best", "final"],
        default="best",
        help="weights that predict the held-out cases: model_best.pth (lowest validation "
        "loss, where kept) or model_final.pth",
    )
    p.add_argument(
        "--save-probabilities",
        "--save-prob",
        dest="save_prob",
        action="store_true",
        help="also write each held-out case's probability map (fold_<i>/probabilities, pooled "
        "in oof/probabilities) for rsrcnn-find-best's ensembles of rows",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train a requested fold again when its folder holds a run trained with other "
        "options (the old folder is kept as fold_<i>.replaced-<time>); without it such a "
        "fold is refused",
    )
    p.add_argument(
        "opts", nargs="*", metavar="KEY VALUE", help="config overrides for every fold, last"
    )
    return p


def parse_args(argv):
    """Options, then the overrides from the first config KEY on (``--folds 0 1`` may precede
    them)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    start = next((i for i, a in enumerate(argv) if CONFIG_KEY.fullmatch(a)), len(argv))
    parser = build_parser()
    args = parser.parse_args(argv[:start])
    args.opts = argv[start:]
    if len(args.opts) % 2:
        parser.error(f"overrides come in KEY VALUE pairs: {' '.join(args.opts)}")
    return args


@report_errors("run_cv")
def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_known_warnings()
    from ..experiments.cv import run_cv

    output = Path(args.output or Path("output") / f"cv_{Path(args.config).stem}")
    try:
        record = run_cv(
            args.config,
            args.dataset_root,
            output,
            folds=args.folds,
            opts=args.opts,
            num_gpus=args.num_gpus,
            checkpoint=args.checkpoint,
            retrain=args.retrain,
            save_probabilities=args.save_prob,
        )
    except RuntimeError as e:  # a fold's training failed; finished folds stay
        print(f"run_cv: error: {e}", file=sys.stderr)
        return EXIT_PARTIAL
    print((output / "cv_summary.md").read_text())
    print(f"folds {record['folds']} of {record['num_folds']} scored; summary in {output.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
