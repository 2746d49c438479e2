"""Evaluate the classical detector (row A) on a registered dataset with the PWML evaluator.

    python tools/eval_classical.py --params output/A/params.yaml --dataset pwml_test \\
        --output output/A/inference/pwml_test

Prints the strict, reference and subject 3-D protocols and the lesion-wise
counts, as train_net's evaluation does for rows B–E, and writes into --output
``pwml_slices.csv``, ``pwml_subjects.csv`` and ``results.json`` (the figures
flattened as ``task/metric``).
The program behind tools/eval_classical.py (also ``rsrcnn-eval-classical``,
``python -m rsrcnn_d2.cli.eval_classical``).
"""

import argparse
import sys
from pathlib import Path

from ..errors import PWMLDataError
from ..tool_setup import quiet_known_warnings

__all__ = ["parse_args", "main"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--params", required=True, help="parameters file (tools/tune_classical.py)")
    p.add_argument("--dataset", default="pwml_test", help="registered dataset to evaluate on")
    p.add_argument("--output", required=True, help="folder for the CSVs and results.json")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_known_warnings()  # harmless third-party notices, in this program only
    from ..classical import evaluate_classical, flat_results, load_dataset_slices, load_params
    from ..data.fileio import atomic_write_json
    from ..evaluation.pwml_evaluator import format_table

    try:
        params = load_params(args.params)
        slices = load_dataset_slices(
            args.dataset,
            progress=not args.no_progress,
            from_volumes=params.mode == "3d",
            required=True,
        )
    except (PWMLDataError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = evaluate_classical(
        slices, params, args.dataset, args.output, progress=not args.no_progress
    )
    atomic_write_json(
        Path(args.output) / "results.json",
        {"params": str(args.params), "dataset": args.dataset, "results": flat_results(results)},
    )
    print(f"classical detector (row A) on {args.dataset}, parameters {args.params}:")
    print(format_table(results))
    print(f"per-slice CSV and results: {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
