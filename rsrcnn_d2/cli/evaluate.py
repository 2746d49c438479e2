"""``rsrcnn-evaluate`` / ``tools/evaluate.py``: score a folder of predicted NIfTI masks.

    rsrcnn-evaluate REFERENCE_DIR PREDICTION_DIR [-o OUT] [--axis axial]
                    [--lesion-slices-only] [--binarize] [--allow-missing] [--workers 2]

Reference labels ``<case>.nii.gz`` are paired with predictions named
``<case>.nii.gz`` (rsrcnn-predict, nnU-Net) or ``<case>_lesion.nii.gz``
(rsrcnn-predict --mask-suffix _lesion, its earlier default). Both
must lie on the same voxel grid (shape and affine). Every slice of every volume
is scored by default; --lesion-slices-only scores only slices with a reference
lesion, as the paper reports. Writes ``slices.csv``, ``cases.csv`` and
``summary.json`` to OUT (default PREDICTION_DIR/evaluation) and prints the table.
Exit status: 0 done, 2 bad input (the message names the file).
The program behind tools/evaluate.py (also ``rsrcnn-evaluate``,
``python -m rsrcnn_d2.cli.evaluate``).
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..errors import PWMLDataError, report_errors
from ..tool_setup import echo, quiet_known_warnings, setup_tool_logging
from ..writable import check_writable
from .common import add_axis_option

__all__ = ["build_parser", "main", "OUTPUT_FILES"]

OUTPUT_FILES = ("slices.csv", "cases.csv", "summary.json", "log.txt")  # what -o receives


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsrcnn-evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reference", help="folder of reference lesion labels (NIfTI)")
    p.add_argument("prediction", help="folder of predicted lesion masks (NIfTI)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="folder for the CSVs and summary.json (default: PREDICTION/evaluation)",
    )
    add_axis_option(p)
    p.add_argument(
        "--lesion-slices-only",
        action="store_true",
        help="score only slices with a reference lesion (the paper's figures)",
    )
    p.add_argument(
        "--binarize",
        action="store_true",
        help="treat every non-zero voxel as lesion instead of refusing non-binary masks",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="score the predicted cases when some references have no prediction",
    )
    p.add_argument("--workers", type=int, default=2, help="processes reading and scoring volumes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@report_errors("rsrcnn-evaluate")
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_known_warnings()
    output = Path(args.output) if args.output else Path(args.prediction) / "evaluation"
    if output.exists() and not output.is_dir():
        raise PWMLDataError(output, "is a file; -o takes the folder to write the figures into")
    check_writable(output)  # before the heavy imports: a read-only -o is told at once
    from ..data.owned_outputs import check_owned, record_owned
    from ..evaluation.folder import evaluate_folder, format_summary, pair_cases

    pair_cases(args.prediction, args.reference, args.allow_missing)  # bad folders: no output made
    check_owned(output, OUTPUT_FILES, "rsrcnn-evaluate")  # a user's summary.json is never replaced
    record_owned(output, OUTPUT_FILES, "rsrcnn-evaluate")
    # our warnings (e.g. subjects whose slices differ in size) to the console and log.txt
    setup_tool_logging(output / "log.txt")
    summary = evaluate_folder(
        args.prediction,
        args.reference,
        output,
        axis=args.axis,
        lesion_slices_only=args.lesion_slices_only,
        binarize=args.binarize,
        allow_missing=args.allow_missing,
        workers=args.workers,
        progress=not args.no_progress,
    )
    echo(format_summary(summary))  # to the console and log.txt
    echo(f"per-slice, per-case figures and summary.json in {output.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
