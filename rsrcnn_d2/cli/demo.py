"""The main job end to end on an embedded synthetic default, on CPU: is RS R-CNN better than
Mask R-CNN on this cohort when both start, as in the paper, from one pre-trained Mask R-CNN?

Each step does what one of the project's tools does (training in a child process, the
rest in this one):

1. tools/pretrain.py                row B pre-trained on a source cohort (generator seeds
                                    the demo cohort does not use)  -> OUT/pretrain
2. tools/make_synthetic_cohort.py   anatomy-based synthetic NIfTI cohort -> OUT/cohort
3. tools/prepare_pwml.py            COCO slices, subject splits    -> OUT/pwml
4. tools/train_net.py               rows B (Mask R-CNN) and E (RS R-CNN, the recommended
                                    row; CPU twins) fine-tuned from step 1, same budget
                                    -> OUT/train/<row>
5. tools/tune_operating_point.py    each row's score threshold (+ CRF) on pwml_val
                                    -> OUT/train/<row>/operating_point.yaml
6. tools/train_net.py --eval-only   each row at its point on pwml_test, both protocols
7. tools/predict.py                 row E segments one held-out volume -> OUT/predict
8. figures + report                 box plots and the same slices under both rows
                                    (OUT/figures), overlays of the volume, OUT/report.md

Re-running is safe: the cohorts are reused, a finished pre-training with the same options
too, the conversion replaced, the rows retrained. ``--pretrained CKPT`` skips step 1 and
fine-tunes from CKPT (an `rsrcnn-pretrain` checkpoint, or detectron2's COCO Mask R-CNN).
The program behind tools/demo.py (also ``rsrcnn-demo``, ``python -m rsrcnn_d2.cli.demo``);
the steps are `rsrcnn_d2.experiments.demo.run_demo`.
"""

import argparse
import os
import sys

from ..errors import WeightsError, report_errors

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--subjects", type=int, default=14)
    parser.add_argument("--iters", type=int, default=180, help="fine-tuning iterations per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-subjects", type=int, default=10, help="source cohort size")
    parser.add_argument("--pretrain-iters", type=int, default=150, help="pre-training iterations")
    parser.add_argument(
        "--pretrained", metavar="CKPT", help="fine-tune from this checkpoint instead of step 1"
    )
    return parser


@report_errors("demo")
def main(argv=None) -> int:
    from ..tool_setup import quiet_known_warnings

    args = build_parser().parse_args(argv)
    quiet_known_warnings()  # harmless third-party notices, in this program only
    from ..experiments.demo import run_demo

    if args.pretrained and not os.path.isfile(args.pretrained):
        raise WeightsError(args.pretrained, "weights file does not exist")
    for name in ("subjects", "iters", "pretrain_subjects", "pretrain_iters"):
        if getattr(args, name) < 1:
            print(f"demo: error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    run_demo(
        args.output,
        subjects=args.subjects,
        iters=args.iters,
        seed=args.seed,
        pretrain_subjects=args.pretrain_subjects,
        pretrain_iters=args.pretrain_iters,
        pretrained=args.pretrained,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
