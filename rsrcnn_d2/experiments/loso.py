"""Leave-one-subject-out cross-validation of rows A, B, E and RS R-CNN+ on a slice folder.

`run_loso` converts a slice folder in the reference implementation's layout once with one
fold per subject (`prepare`), trains each row on all subjects but one through the training
program (`runner.train_and_record`) and evaluates it on that one, for every subject, then
pools the held-out slices of all folds into one strict-protocol table (OUT/summary_<tag>.md)
with the per-fold mean ± sd beside it. Row A (rsrcnn_d2.classical) is tuned on the same
held-in subjects instead of trained. `pretrain` first trains and calibrates each row on
another slice folder, whose weights and operating point every fold then starts from.
The program, its options and its outputs: `rsrcnn_d2.cli.run_loso` (tools/run_loso.py,
``rsrcnn-loso``).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from ..data.fileio import atomic_write_bytes, read_json
from ..data.sources import discover_subjects
from ..model_zoo import row_config
from .results import REFERENCE_METRICS, pooled_results, seed_summary_table
from .run_health import health_line, read_health
from .runner import DatasetRoot, calibrate, train_and_record, trained_weights

__all__ = ["ROW_CONFIGS", "ROW_LABELS", "parse_weights", "prepare", "pretrain", "run_loso"]

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


def run_loso(
    slices,
    out,
    *,
    rows: Sequence[str],
    iters: int,
    weights: Mapping[str, str],
    configs: Mapping[str, str],
    pretrain_slices: Optional[Path] = None,
    pretrain_iters: int = 500,
    tag: Optional[str] = None,
    seed: int = 0,
    retrain: bool = False,
) -> Path:
    """Every row of ``rows`` trained (row A: tuned) on all subjects of ``slices`` but one
    and evaluated on that one, for every subject, into ``out``; the summary file.

    ``weights`` / ``configs``: {row: file} to start a row from (`parse_weights`);
    ``pretrain_slices``: a slice folder every trained row is first trained and calibrated on (given
    weights and configs win); ``tag`` names this set of runs (default: "pretrained" or
    "scratch"). A run trained with other options is refused unless ``retrain``.
    """
    slices = Path(slices)
    out = Path(out).absolute()
    weights, configs = dict(weights), dict(configs)
    if pretrain_slices:
        trained = [r for r in rows if r != CLASSICAL]
        pre_weights, pre_configs = pretrain(
            Path(pretrain_slices), out, trained, pretrain_iters, seed, retrain
        )
        weights = {**pre_weights, **weights}  # given ones win
        configs = {**pre_configs, **configs}
    tag = tag or ("pretrained" if weights else "scratch")
    folds = prepare(slices, out / "pwml", seed)
    roots = [DatasetRoot("pwml", out / "pwml")]
    splits = read_json(out / "pwml" / "splits.json")["folds"]

    fold_results, pooled, healths = {}, {}, {}
    for row in rows:
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

                record = run_row_a(f"pwml_fold{i}_train", name, run_dir, seed=seed, progress=False)
            else:
                record = train_and_record(
                    configs.get(row, ROW_CONFIGS[row]),
                    run_dir,
                    [
                        "SOLVER.MAX_ITER",
                        iters,
                        "SOLVER.CHECKPOINT_PERIOD",
                        max(1, iters // 2),
                        "SEED",
                        seed,
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
                    retrain=retrain,
                    what=f"{tag}: row {row}, fold {i}",
                )
            fold_results[row].append(record["results"])
            if row != CLASSICAL:
                healths[f"{row} fold {i}"] = read_health(run_dir)
            csvs.append(run_dir / "inference" / name / "pwml_slices.csv")
        pooled[row] = [pooled_results(csvs)]

    labels = {row: ROW_LABELS[row] for row in rows}
    start = ", ".join(f"{row} from {w}" for row, w in weights.items()) or "random initialisation"
    if configs:
        start += "; configs: " + ", ".join(f"{row} {c}" for row, c in configs.items())
    text = "\n".join(
        [
            f"Leave-one-subject-out over {slices.name} ({folds} folds), "
            f"{iters} iterations per fold, "
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
    summary = out / f"summary_{tag}.md"
    atomic_write_bytes(summary, text.encode())
    print(text)
    return summary
