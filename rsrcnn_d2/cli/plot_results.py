"""Box plots of per-slice metrics of several models side by side (the paper's Fig. 2).

Each ``--csv LABEL=PATH`` is a ``pwml_slices.csv`` written by PWMLEvaluator
(train_net.py --eval-only puts it in OUTPUT_DIR/inference/<dataset>/). For example:

    python tools/plot_results.py --csv D=output/D/inference/pwml_val/pwml_slices.csv \\
        --csv E=output/E/inference/pwml_val/pwml_slices.csv --output figures/fig2.png

Empty or NaN cells (undefined for that slice) are left out and counted, as are the
scores of slices empty in truth and prediction; a value outside its metric's range
(Dice not in [0, 1], a negative distance) is refused. CSVs scored over different
slice selections (the paper's lesion slices vs whole volumes) are refused in one
figure unless --allow-mixed-selections.
Exit status: 0 written; 2 a bad CSV, argument or output location (one line on stderr).
The program behind tools/plot_results.py (also ``rsrcnn-plot``,
``python -m rsrcnn_d2.cli.plot_results``).
"""

import argparse
import sys

from ..errors import PWMLDataError, report_errors
from ..tool_setup import quiet_known_warnings

__all__ = ["parse_csvs", "main"]


def parse_csvs(items: list[str]) -> dict[str, str]:
    """['B=a.csv', 'E=b.csv'] -> {'B': 'a.csv', 'E': 'b.csv'}, labels unique, in order."""
    csvs: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise PWMLDataError(f"--csv {item}", "expected LABEL=PATH")
        if label in csvs:
            raise PWMLDataError(f"--csv {item}", f"label {label!r} given twice")
        csvs[label] = path
    return csvs


@report_errors("plot_results")
def main(argv=None) -> int:
    """Exit 0 with the figure written; 2 (one line on stderr) for a bad CSV, argument or output."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--csv",
        action="append",
        required=True,
        metavar="LABEL=PATH",
        help="a model's per-slice CSV; repeat for each model",
    )
    parser.add_argument("--output", default="boxplots.png", help="PNG to write")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["dice", "sensitivity"],
        help="CSV columns to plot, one panel each",
    )
    parser.add_argument("--title", default="")
    parser.add_argument(
        "--allow-mixed-selections",
        action="store_true",
        help="draw CSVs that scored different slices (lesion slices only vs whole volumes) "
        "in one figure; refused by default",
    )
    args = parser.parse_args(argv)
    quiet_known_warnings()  # harmless third-party notices, in this program only
    from ..visualization.boxplots import boxplot_from_csvs

    out = boxplot_from_csvs(
        parse_csvs(args.csv),
        args.output,
        metrics=args.metrics,
        title=args.title,
        log=print,
        allow_mixed_selections=args.allow_mixed_selections,
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
