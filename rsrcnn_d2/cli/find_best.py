"""``rsrcnn-find-best`` / ``tools/find_best.py``: the best row, or pair of rows ensembled, on
cross-validation (nnU-Net's ``nnUNetv2_find_best_configuration``).

    rsrcnn-find-best [NAME=]CV_FOLDER [NAME=]CV_FOLDER ... -o OUT
                     [--metric case_dice|lesion_f1_3d] [--disable-ensembling]
                     [--threshold T] [--workers 2]

Each CV_FOLDER is a finished tools/run_cv.py output of one row (every fold scored,
run with --save-probabilities unless --disable-ensembling); NAME (default: the
folder's name) labels it. Candidates: every row, on its pooled out-of-fold
figures, and every pair of rows, whose out-of-fold probability maps are averaged
per case and thresholded (mean >= T; T is the rows' MODEL.RSRCNN.MASK_THRESHOLD
unless --threshold) before they are scored the same way. All are ranked by the
mean per-case 3-D Dice (default) or the 3-D lesion-wise F1; an undefined figure
ranks last. Prints the table; writes OUT/find_best.json, OUT/inference_command.txt
(the rsrcnn-predict / rsrcnn-ensemble commands of the winner) and each pair's
masks and evaluation in OUT/ensembles/<A>+<B>/.

Exit status: 0 done; 2 bad arguments or data (a CV folder incomplete, rows scored
on different cases, probability maps missing), one line naming the file.
The program behind tools/find_best.py (also ``rsrcnn-find-best``,
``python -m rsrcnn_d2.cli.find_best``).
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..errors import report_errors
from ..tool_setup import quiet_known_warnings, setup_tool_logging
from .common import probability_threshold

__all__ = ["build_parser", "main", "METRICS"]

# rsrcnn_d2.experiments.find_best.METRICS: the headline figures a candidate is ranked by
METRICS = ("case_dice", "lesion_f1_3d")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsrcnn-find-best",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "rows",
        nargs="+",
        metavar="[NAME=]CV_FOLDER",
        help="tools/run_cv.py output folders, one per row",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--metric",
        choices=METRICS,
        default="case_dice",
        help="headline figure to rank by (default: case_dice, mean per-case 3-D Dice)",
    )
    p.add_argument(
        "--disable-ensembling",
        action="store_true",
        help="rank the rows only (no probability maps needed)",
    )
    p.add_argument(
        "--threshold",
        type=probability_threshold,
        default=None,
        help="ensembles' lesion threshold on the mean probability (default: the rows' "
        "MODEL.RSRCNN.MASK_THRESHOLD)",
    )
    p.add_argument("--workers", type=int, default=2, help="processes scoring each ensemble")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


@report_errors("rsrcnn-find-best")
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_known_warnings()
    from ..experiments.find_best import format_candidates, plan, run_plan

    output = Path(args.output)
    checked = plan(  # every input checked before OUT (and its log.txt) is made
        args.rows,
        output,
        metric=args.metric,
        ensembles=not args.disable_ensembling,
        threshold=args.threshold,
    )
    setup_tool_logging(output / "log.txt")
    record = run_plan(checked, workers=args.workers, progress=not args.no_progress)
    print(format_candidates(record))
    print(f"\nbest: {record['best']['name']}; inference command:")
    print("\n".join(record["inference_command"]))
    print(f"\nfind_best.json and inference_command.txt in {output.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
