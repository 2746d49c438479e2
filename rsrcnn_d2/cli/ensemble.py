"""``rsrcnn-ensemble`` / ``tools/ensemble.py``: average saved probability maps, threshold them.

    rsrcnn-ensemble -i FOLDER_1 FOLDER_2 [...] -o OUT [--threshold 0.5] [--save-probabilities]

As nnU-Net's ``nnUNetv2_ensemble``: each FOLDER holds ``<case>_prob.nii.gz`` maps
(``rsrcnn-predict --save-probabilities``, one folder per model or row), the same
cases in each. For every case OUT gets ``<case>.nii.gz`` (uint8): the voxels whose
mean probability is >= THRESHOLD, the rule rsrcnn-predict applies to one model's
map (``MODEL.RSRCNN.MASK_THRESHOLD``, 0.5 by default; use the rows' value, which
``rsrcnn-find-best`` writes into its command). ``--save-probabilities`` also writes
the mean map ``<case>_prob.nii.gz``. Maps must share their voxel grid; OUT may not
lie inside an input folder. Exit status: 0 done, 2 bad input or output (one line
naming the file).
The program behind tools/ensemble.py (also ``rsrcnn-ensemble``,
``python -m rsrcnn_d2.cli.ensemble``).
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..errors import report_errors
from ..tool_setup import quiet_known_warnings
from .common import probability_threshold

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsrcnn-ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-i",
        "--input",
        nargs="+",
        required=True,
        metavar="FOLDER",
        help="folders of <case>_prob.nii.gz maps (rsrcnn-predict --save-probabilities)",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--threshold",
        type=probability_threshold,
        default=0.5,
        help="a voxel is lesion where the mean probability is >= this "
        "(default 0.5, MODEL.RSRCNN.MASK_THRESHOLD's default)",
    )
    p.add_argument(
        "--save-probabilities",
        "--save-prob",
        dest="save_prob",
        action="store_true",
        help="also write the mean maps <case>_prob.nii.gz",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@report_errors("rsrcnn-ensemble")
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_known_warnings()
    from ..inference.ensemble_folders import ensemble_folders

    written = ensemble_folders(
        args.input,
        args.output,
        threshold=args.threshold,
        save_probabilities=args.save_prob,
        progress=not args.no_progress,
    )
    print(
        f"{len(written)} case(s): mean of {len(args.input)} probability maps >= "
        f"{args.threshold:g}, masks in {Path(args.output).resolve()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
