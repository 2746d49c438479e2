"""Convert PWML data (NIfTI or PNG slice folders) into a registered COCO-style dataset.

    python tools/prepare_pwml.py SOURCE [-o/--output datasets/pwml] [--all-slices] [--seed 0]
    python tools/prepare_pwml.py SOURCE --check [--json REPORT.json]    # check only, write nothing

SOURCE is an nnU-Net raw folder (imagesTr/ + labelsTr/), a CSV/JSON pair list
(subject,image,mask) or the reference implementation's slice folders
(input/ + gt/). The default output, $DETECTRON2_DATASETS/pwml, is what
the package registers as pwml_train / pwml_val / pwml_test /
pwml_fold{i}_{train,val} (rsrcnn_d2.data.register). See datasets/README.md.
``--out`` is the deprecated spelling of ``--output``, kept so that existing scripts keep
working.

Every conversion first checks the whole cohort (rsrcnn_d2.data.check) and
refuses, listing every error, before it writes anything; warnings (a lesion-free
subject left out by the default lesion-slices mode, an odd voxel spacing) are
printed and the conversion goes on. ``--check`` only prints that check: every
problem, one line each naming the file, and the cohort's fingerprint.

Exit status (rsrcnn_d2.errors): 0 done (with --check: no error found), 2 bad
input data, arguments or output location (each problem on its own line naming
the file or option).
The program behind tools/prepare_pwml.py (also ``rsrcnn-prepare``,
``python -m rsrcnn_d2.cli.prepare``).
"""

import argparse
import math
import sys
from pathlib import Path

from ..errors import EXIT_DATA, PWMLDataError, report_errors
from ..writable import check_writable
from .common import add_axis_option

__all__ = ["parse_args", "main"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", help="nnU-Net folder, pair list (.csv/.json) or input/+gt/ folder")
    # --output as every other tool; --out is the earlier name, still accepted
    p.add_argument(
        "-o",
        "--output",
        "--out",
        dest="output",
        default=None,
        help="output folder (default: $DETECTRON2_DATASETS/pwml, the variable defaulting to "
        "datasets); --out is a deprecated alias",
    )
    add_axis_option(p, help="slice axis in canonical (RAS+) orientation (NIfTI only)")
    p.add_argument(
        "--all-slices",
        action="store_true",
        help="keep lesion-free slices and subjects too (default: lesion slices only, as the "
        "paper; a lesion-free subject is then left out, with a warning)",
    )
    p.add_argument(
        "--binarize",
        action="store_true",
        help="treat every non-zero mask value as lesion instead of rejecting the mask",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subject split and folds")
    p.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.7, 0.15, 0.15),
        metavar=("TRAIN", "VAL", "TEST"),
        help="subject split fractions",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help="cross-validation folds (default 5, or 0 for fewer than 5 subjects)",
    )
    p.add_argument("--workers", type=int, default=2, help="conversion processes")
    p.add_argument(
        "--check",
        action="store_true",
        help="only check the cohort with these options: print every problem and the "
        "fingerprint, write nothing; exit 0 without errors, 2 with",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="with --check: also write the report (problems, fingerprint) to this JSON file",
    )
    args = p.parse_args(argv)
    if args.json and not args.check:
        p.error("argument --json: only with --check (a conversion writes conversion.json)")
    given = sys.argv[1:] if argv is None else argv
    if any(a == "--out" or a.startswith("--out=") for a in given):
        print(f"{p.prog}: warning: --out is deprecated, use --output (or -o)", file=sys.stderr)
    fractions = args.fractions
    if not all(math.isfinite(f) and f >= 0 for f in fractions) or not math.isclose(
        sum(fractions), 1.0, abs_tol=1e-6
    ):
        p.error(
            f"argument --fractions: must be three numbers >= 0 that sum to 1, got "
            f"{' '.join(f'{f:g}' for f in fractions)}"
        )
    if args.folds is not None and args.folds < 0:
        p.error(f"argument --folds: must be 0 (no folds) or at least 2, got {args.folds}")
    if args.workers < 1:
        p.error(f"argument --workers: must be at least 1, got {args.workers}")
    if args.output is None:  # after the checks: the library loads only for a valid command
        from ..data.register import default_pwml_root

        args.output = str(default_pwml_root())
    return args


def _write_report(path: Path, report) -> None:
    """The report (a `DatasetReport`) as JSON at ``path``, which must not be one of the
    cohort's inputs."""
    from ..data.fileio import atomic_write_json

    inputs = {Path(report.source)} if report.source != "subjects" else set()
    for s in report.subjects:
        inputs |= {s.image, s.mask} | {f for _, image, mask in s.slices for f in (image, mask)}
    if path.exists() and (
        path.is_dir() or any(p is not None and p.exists() and p.samefile(path) for p in inputs)
    ):
        raise PWMLDataError(path, "is a folder or an input of the cohort; give a new file name")
    atomic_write_json(path, report.as_dict())


def _cohort_options(args) -> dict:
    """The options the check and the conversion share (the check judges what would convert)."""
    return dict(
        axis=args.axis,
        lesion_slices_only=not args.all_slices,
        binarize=args.binarize,
        seed=args.seed,
        fractions=tuple(args.fractions),
        num_folds=args.folds,
        workers=args.workers,
        progress=True,
    )


def _check_only(args) -> int:
    from ..data.check import check_dataset, count, format_report

    report = check_dataset(args.source, **_cohort_options(args))
    print(format_report(report))
    if args.json:
        _write_report(Path(args.json), report)
    if not report.ok:
        errors = count(len(report.errors), "error")
        print(
            f"prepare_pwml.py: error: {report.source}: {errors} (listed above); "
            "the cohort would not convert",
            file=sys.stderr,
        )
        return EXIT_DATA
    return 0


@report_errors("prepare_pwml.py")
def main(argv=None) -> int:
    from ..tool_setup import quiet_known_warnings, setup_tool_logging

    args = parse_args(argv)
    quiet_known_warnings()
    setup_tool_logging()  # the check's warnings on the console
    if args.check:
        return _check_only(args)
    output = Path(args.output)
    # before the heavy imports: a read-only output (or parent) is told at once; the
    # converter checks again, with links and files in the way
    check_writable(output.absolute().parent, "the folder holding the output")
    if output.is_dir() and not output.is_symlink():
        check_writable(output)
    from ..data.convert import convert_pwml
    from ..data.fingerprint import format_fingerprint

    summary = convert_pwml(args.source, args.output, **_cohort_options(args))
    print(
        f"{summary['num_subjects']} subjects, {summary['num_images']} slices, "
        f"{summary['num_annotations']} lesions -> {Path(args.output).absolute()}"
    )
    print("splits: " + ", ".join(summary["splits"]))
    print("fingerprint of the cohort:\n" + format_fingerprint(summary["fingerprint"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
