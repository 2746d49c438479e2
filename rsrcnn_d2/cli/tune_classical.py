"""Tune the classical detector (row A) by Bayesian optimisation on a registered dataset.

    python tools/tune_classical.py --dataset pwml_val --output output/A/params.yaml \\
        [--start params.yaml] [--mode 2d|3d] [--objective dice|lesion_f1] \\
        [--init-points 10] [--n-iter 30] [--seed 0]

The starting parameters (--start, else the defaults) are scored first, so the
written parameters are never worse than them on the tuning dataset. Writes the
best parameters to --output (YAML, or JSON for a .json name; what
``rsrcnn-predict --classical`` and tools/eval_classical.py read) and every
trial to ``<output stem>_trials.json`` beside it; nothing else. In "3d" mode
each slice's neighbours are cut from its source volume (rsrcnn_d2.classical.dataset).
The program behind tools/tune_classical.py (also ``rsrcnn-tune-classical``,
``python -m rsrcnn_d2.cli.tune_classical``).
"""

import argparse
import sys

from ..errors import PWMLDataError
from ..tool_setup import quiet_known_warnings

__all__ = ["parse_args", "main"]

# rsrcnn_d2.classical's MODES and OBJECTIVES, named before the library is loaded
MODES = ("2d", "3d")
OBJECTIVES = ("dice", "lesion_f1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", default="pwml_val", help="registered dataset to tune on")
    p.add_argument("--output", required=True, help="parameters file to write (.yaml or .json)")
    p.add_argument(
        "--start", default=None, help="parameters file to start from (default: defaults)"
    )
    p.add_argument("--mode", choices=MODES, default=None, help="override the start's mode")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="dice",
        help="strict mean Dice or lesion-wise F1 (default %(default)s)",
    )
    p.add_argument("--init-points", type=int, default=10, help="random trials")
    p.add_argument("--n-iter", type=int, default=30, help="Gaussian-process-guided trials")
    p.add_argument("--seed", type=int, default=0, help="seed of the optimiser")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_known_warnings()  # harmless third-party notices, in this program only
    from ..classical import (
        ClassicalParams,
        load_dataset_slices,
        load_params,
        save_tuning,
        tune_classical,
    )

    try:
        start = load_params(args.start) if args.start else ClassicalParams()
        if args.mode:
            start = start.replace(mode=args.mode)
        slices = load_dataset_slices(
            args.dataset,
            progress=not args.no_progress,
            from_volumes=start.mode == "3d",
            required=True,
        )
    except (PWMLDataError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = tune_classical(
        slices,
        start,
        objective=args.objective,
        init_points=args.init_points,
        n_iter=args.n_iter,
        seed=args.seed,
        progress=not args.no_progress,
    )
    path = save_tuning(result, args.output, args.dataset, args.seed)
    print(
        f"{args.objective} on {args.dataset} ({result.num_slices} slices, "
        f"{len(result.trials)} settings tried): start {result.start_value:.4f}, "
        f"best {result.best_value:.4f}"
    )
    print(f"parameters: {path}\ntrials: {path.with_name(path.stem + '_trials.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
