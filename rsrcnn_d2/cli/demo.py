"""The main job end to end on an embedded synthetic default, on CPU: is RS R-CNN better than
Mask R-CNN on this cohort, and what does our row add?

Each step does what one of the project's tools does (training in a child process, the
rest in this one):

1. tools/make_synthetic_cohort.py   anatomy-based synthetic NIfTI cohort -> OUT/cohort
2. tools/prepare_pwml.py            COCO slices, subject splits    -> OUT/pwml
3. tools/train_net.py               rows B (Mask R-CNN), E (RS R-CNN) and RS R-CNN+ (CPU
                                    twins), same budget            -> OUT/train/<row>
4. tools/tune_operating_point.py    each row's score threshold (+ CRF) on pwml_val
                                    -> OUT/train/<row>/operating_point.yaml
5. tools/train_net.py --eval-only   each row at its point on pwml_test, both protocols
6. tools/predict.py                 RS R-CNN+ segments one held-out volume -> OUT/predict
7. figures + report                 box plots and the same slices under the three rows
                                    (OUT/figures), overlays of the volume, OUT/report.md

Re-running is safe: the cohort is reused, the conversion replaced, the models retrained.
The program behind tools/demo.py (also ``rsrcnn-demo``, ``python -m rsrcnn_d2.cli.demo``);
the steps are `rsrcnn_d2.experiments.demo.run_demo`.
"""

import argparse
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--subjects", type=int, default=14)
    parser.add_argument("--iters", type=int, default=500, help="training iterations per row")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None) -> int:
    from ..tool_setup import quiet_known_warnings

    args = build_parser().parse_args(argv)
    quiet_known_warnings()  # harmless third-party notices, in this program only
    from ..experiments.demo import run_demo

    run_demo(args.output, subjects=args.subjects, iters=args.iters, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
