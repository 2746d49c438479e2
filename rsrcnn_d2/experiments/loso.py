"""Leave-one-subject-out cross-validation of rows A, B, E and RS R-CNN+ on a slice folder.

    python tools/run_loso.py SLICES [--output output/loso] [--rows A B E plus] [--iters 300]
                             [--weights B=PATH --weights E=PATH] [--config ROW=PATH]
                             [--pretrain ANATOMY_SLICES [--pretrain-iters 500]] [--tag NAME]

SLICES is a folder in the reference implementation's layout, such as the
reference slices ($PWML_REFERENCE_SLICES, see datasets/README.md; read, never written).
It is converted once with tools/prepare_pwml.py into OUTPUT/pwml with one fold
per subject, and each row is trained with tools/train_net.py on all subjects
but one and evaluated on that one, for every subject. The held-out slices of
all folds are then pooled into one strict-protocol table (OUTPUT/summary.md),
with the per-fold mean ± sd beside it. Row A, the classical baseline
(rsrcnn_d2.classical), is not trained: its parameters are tuned on the same
held-in subjects (Bayesian optimisation, --seed) and it is evaluated on the
held-out one.

--weights starts a row from a checkpoint, e.g. a model trained on the synthetic
cohort by tools/run_ablation.py (runs/B/seed0/model_final.pth); --config gives a
row another config (e.g. a calibrated operating point). --pretrain does both
itself: each row is first trained on ANATOMY_SLICES (a slice folder such as
``tools/make_synthetic_cohort.py --slices`` writes: the anatomy-based cohort as
the reference's 8-bit head crops), converted into OUTPUT/pretrain/pwml and split
by subject, calibrated there on its validation subjects
(tools/tune_operating_point.py), and every fold then fine-tunes that model with
that operating point. --tag keeps runs with different starting points apart.
Finished folds and pre-trainings are skipped on re-running; an interrupted one
resumes.
The program behind ``tools/run_loso.py`` (also ``python -m rsrcnn_d2.experiments.loso``).
"""

import argparse
import sys
from pathlib import Path

from ..data.fileio import atomic_write_bytes, read_json
from ..data.sources import discover_subjects
from ..errors import report_errors
from ..model_zoo import row_config
from ..tool_setup import quiet_known_warnings
from .results import REFERENCE_METRICS, pooled_results, seed_summary_table
from .run_health import health_line, read_health
from .runner import DatasetRoot, calibrate, train_and_record, trained_weights

__all__ = ["ROW_CONFIGS", "ROW_LABELS", "parse_weights", "prepare", "pretrain", "main"]

ROW_CONFIGS = {row: row_config(row) for row in ("B", "E", "plus")}
ROW_LABELS = {
    "A": "A  classical (tuned on the held-in subjects)",
    "B": "B  Mask R-CNN",
    "E": "E  RS R-CNN",
    "plus": "RS R-CNN+ (E + 2.5-D + flip TTA)",
}
PRETRAIN_PREFIX = "anatomy"  # the pre-training cohort's datasets: anatomy_train, anatomy_val
CLASSICAL = "A"


def parse_weights(items, option: str = "--weights"):
    """{row: absolute path} from ROW=PATH items (--weights, --config)."""
    weights = {}
    for item in items:
        row, sep, path = item.partition("=")
        if not sep or row not in ROW_CONFIGS:
            raise SystemExit(
                f"error: {option} wants ROW=PATH with ROW in {sorted(ROW_CONFIGS)}: {item!r}"
            )
        if not Path(path).is_file():
            raise SystemExit(f"error: {option} {row}: no such file: {path}")
        weights[row] = str(Path(path).absolute())
    return weights


def pretrain(slices: Path, out: Path, rows, iters: int, seed: int, retrain: bool = False):
    """Train each row on ``slices`` (converted once into OUT/pretrain/pwml), calibrate it on
    its validation subjects; ({row: weights}, {row: calibrated config})."""
    from ..data import convert_pwml

    root = DatasetRoot(PRETRAIN_PREFIX, out / "pretrain" / "pwml")
    if not (root.folder / "conversion.json").exists():
        convert_pwml(slices, root.folder, seed=seed)
    root.register(replace=True)
    weights, configs = {}, {}
    for row in rows:
        run_dir = out / "pretrain" / "runs" / row
        print(f"\n=== pre-training row {row} on {slices} -> {run_dir}", flush=True)
        train_and_record(
            ROW_CONFIGS[row],
            run_dir,
            [
                "SOLVER.MAX_ITER",
                iters,
                "SOLVER.CHECKPOINT_PERIOD",
                max(1, iters // 4),
                "SEED",
                seed,
                "DATASETS.TRAIN",
                f"('{PRETRAIN_PREFIX}_train',)",
                "DATASETS.VAL",
                f"('{PRETRAIN_PREFIX}_val',)",
                "DATASETS.TEST",
                f"('{PRETRAIN_PREFIX}_val',)",
            ],
            [root],
            retrain=retrain,
            what=f"pre-training of row {row}",
        )
        point = run_dir / "operating_point.yaml"
        if not point.exists():
            point = calibrate(
                ROW_CONFIGS[row],
                trained_weights(run_dir),
                point,
                f"{PRETRAIN_PREFIX}_val",
                seed=seed,
                trials=(5, 25),  # the tool's defaults
            ) or Path(ROW_CONFIGS[row])  # nothing to calibrate: the row's own point
        weights[row], configs[row] = str(trained_weights(run_dir)), str(point)
    return weights, configs


def prepare(slices: Path, pwml: Path, seed: int) -> int:
    """Convert SLICES with one fold per subject (once) and register it as pwml_*; return the
    number of folds."""
    from ..data import convert_pwml

    if not (pwml / "conversion.json").exists():
        subjects = len(discover_subjects(slices))  # leave-one-out: as many folds as subjects
        convert_pwml(slices, pwml, seed=seed, num_folds=subjects)
    DatasetRoot("pwml", pwml).register(replace=True)
    return len(read_json(pwml / "splits.json")["folds"])


@report_errors("run_loso")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("slices", help="folder with input/<subject>/*.png and gt/<subject>/*.png")
    p.add_argument("--output", default="output/loso")
    p.add_argument(
        "--rows", nargs="+", default=[CLASSICAL, "B", "E"], choices=[CLASSICAL, *ROW_CONFIGS]
    )
    p.add_argument("--iters", type=int, default=300)
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="ROW=PATH",
        help="initial weights of a row (default: from scratch)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="ROW=PATH",
        help="config of a row (default: its configs/PWML-Tiny/ file)",
    )
    p.add_argument(
        "--pretrain",
        metavar="SLICES",
        default=None,
        help="slice folder to pre-train and calibrate every row on first",
    )
    p.add_argument("--pretrain-iters", type=int, default=500)
    p.add_argument(
        "--tag", default=None, help="name of this set of runs (default: scratch or pretrained)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train again a run whose folder holds one trained with other options (kept "
        "beside it as <folder>.replaced-<time>); without it such a run is refused (exit 2)",
    )
    args = p.parse_args(argv)
    quiet_known_warnings()  # harmless third-party notices, in this program only

    slices = Path(args.slices)
    if not (slices / "input").is_dir() or not (slices / "gt").is_dir():
        print(f"error: {slices}: expected input/ and gt/ folders of PNG slices", file=sys.stderr)
        return 2
    weights = parse_weights(args.weights)
    configs = parse_weights(args.config, "--config")
    out = Path(args.output).absolute()
    if args.pretrain:
        trained = [r for r in args.rows if r != CLASSICAL]
        pre_weights, pre_configs = pretrain(
            Path(args.pretrain), out, trained, args.pretrain_iters, args.seed, args.retrain
        )
        weights = {**pre_weights, **weights}  # given ones win
        configs = {**pre_configs, **configs}
    tag = args.tag or ("pretrained" if weights else "scratch")
    folds = prepare(slices, out / "pwml", args.seed)
    roots = [DatasetRoot("pwml", out / "pwml")]
    splits = read_json(out / "pwml" / "splits.json")["folds"]

    fold_results, pooled, healths = {}, {}, {}
    for row in args.rows:
        csvs, fold_results[row] = [], []
        for i in range(folds):
            name = f"pwml_fold{i}_val"
            run_dir = out / "runs" / tag / row / f"fold{i}"
            print(
                f"\n=== {tag}: row {row}, fold {i + 1}/{folds} (held out: subject "
                f"{', '.join(splits[i]['val'])}) -> {run_dir}",
                flush=True,
            )
            if row == CLASSICAL:
                from .row_a import run_row_a

                record = run_row_a(
                    f"pwml_fold{i}_train", name, run_dir, seed=args.seed, progress=False
                )
            else:
                record = train_and_record(
                    configs.get(row, ROW_CONFIGS[row]),
                    run_dir,
                    [
                        "SOLVER.MAX_ITER",
                        args.iters,
                        "SOLVER.CHECKPOINT_PERIOD",
                        max(1, args.iters // 2),
                        "SEED",
                        args.seed,
                        "MODEL.WEIGHTS",
                        weights.get(row, ""),
                        "DATASETS.TRAIN",
                        f"('pwml_fold{i}_train',)",
                        # no spare subject for validation: the schedule and model_best follow
                        # the training subjects' loss, never the held-out one's
                        "DATASETS.VAL",
                        f"('pwml_fold{i}_train',)",
                        "DATASETS.TEST",
                        f"('{name}',)",
                    ],
                    roots,
                    retrain=args.retrain,
                    what=f"{tag}: row {row}, fold {i}",
                )
            fold_results[row].append(record["results"])
            if row != CLASSICAL:
                healths[f"{row} fold {i}"] = read_health(run_dir)
            csvs.append(run_dir / "inference" / name / "pwml_slices.csv")
        pooled[row] = [pooled_results(csvs)]

    labels = {row: ROW_LABELS[row] for row in args.rows}
    start = ", ".join(f"{row} from {w}" for row, w in weights.items()) or "random initialisation"
    if configs:
        start += "; configs: " + ", ".join(f"{row} {c}" for row, c in configs.items())
    text = "\n".join(
        [
            f"Leave-one-subject-out over {slices.name} ({folds} folds), "
            f"{args.iters} iterations per fold, "
            f"starting from {start}; strict protocol.",
            "",
            "Held-out slices of all folds pooled:",
            "",
            seed_summary_table(
                pooled,
                labels,
                count_title="slices",
                counts={r: int(v[0]["pwml_strict/n_slices"]) for r, v in pooled.items()},
            ),
            "",
            "Reference protocol (empty predictions skipped), held-out slices of all folds pooled:",
            "",
            seed_summary_table(
                pooled,
                labels,
                REFERENCE_METRICS,
                count_title="slices",
                counts={r: int(v[0]["pwml_strict/n_slices"]) for r, v in pooled.items()},
            ),
            "",
            "Mean ± sd over folds (strict):",
            "",
            seed_summary_table(fold_results, labels, count_title="folds"),
            "",
            *([health_line(healths), ""] if healths else []),
        ]
    )
    atomic_write_bytes(out / f"summary_{tag}.md", text.encode())
    print(text)
    print(f"summary: {out / f'summary_{tag}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
