"""Pre-train one Mask R-CNN on a source cohort, to fine-tune every row from (the paper's
protocol, with a source the evaluation cohorts never saw in place of COCO).

    python tools/pretrain.py [--output output/pretrain] [--config ROW_B_TINY] [--subjects 48]
                             [--seed 1000] [--iters 1000] [--retrain]

Makes the anatomy-based source cohort (generator seeds from 1000 on, which no evaluation
cohort uses; lesion sizes, contrasts and counts spread wider than the default cohort's),
converts it, trains the config on it (row B's CPU-sized twin unless --config) and writes
OUTPUT/pretrained.pth: the weights alone, the input form they expect and the source's
settings. Then ``rsrcnn-ablation --pretrained OUTPUT/pretrained.pth`` (or ``MODEL.WEIGHTS``
in any row's config) fine-tunes from it: tensors of another shape (H-RPN's objectness,
LRS-Net's head) are re-initialised and listed. Re-running resumes where it stopped.
The program behind tools/pretrain.py (also ``rsrcnn-pretrain``, ``python -m
rsrcnn_d2.cli.pretrain``); the work is `rsrcnn_d2.experiments.pretrain`.
"""

import argparse
import sys

from ..errors import report_errors
from ..tool_setup import quiet_known_warnings

__all__ = ["build_parser", "main"]

SOURCE_SEED = 1000  # rsrcnn_d2.experiments.pretrain's, named before it is loaded


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsrcnn-pretrain",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--output", default="output/pretrain")
    p.add_argument("--config", default=None, help="config to pre-train (default: row B, tiny)")
    p.add_argument("--subjects", type=int, default=48, help="source cohort size")
    p.add_argument(
        "--seed",
        type=int,
        default=SOURCE_SEED,
        help=f"generator seed of the source cohort ({SOURCE_SEED} or more)",
    )
    p.add_argument("--iters", type=int, default=1000, help="training iterations")
    p.add_argument("--workers", type=int, default=2, help="processes simulating the cohort")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train again a run folder trained with other options (kept aside)",
    )
    return p


@report_errors("rsrcnn-pretrain")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_known_warnings()
    if args.seed < SOURCE_SEED:
        print(
            f"rsrcnn-pretrain: error: --seed {args.seed}: use {SOURCE_SEED} or more, seeds no "
            "evaluation cohort uses",
            file=sys.stderr,
        )
        return 2
    from ..experiments.pretrain import pretrain

    path = pretrain(
        args.output,
        args.config,
        subjects=args.subjects,
        seed=args.seed,
        iters=args.iters,
        workers=args.workers,
        retrain=args.retrain,
    )
    print(f"pre-trained weights: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
