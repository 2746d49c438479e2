"""Leave-one-subject-out cross-validation of rows A, B, E and RS R-CNN+ on a slice folder.

`run_loso` converts a slice folder in the reference implementation's layout once with one
fold per subject (`prepare`) and runs each trained row's cross-validation through
`cv.run_cv` (one fold per subject; the fold's own training subjects validate it, there
being none to spare), per seed of a list (repetitions), then pools the held-out slices of
all folds into one strict-protocol table per seed (OUT/summary_<tag>.md: mean ± sd over the
seeds) with the per-fold mean ± sd beside it. Row A (rsrcnn_d2.classical) is tuned on the same
held-in subjects instead of trained. `pretrain` first trains and calibrates each row on
another slice folder, whose weights and operating point every fold then starts from.
The program, its options and its outputs: `rsrcnn_d2.cli.run_loso` (tools/run_loso.py,
``rsrcnn-loso``).
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from ..data.fileio import atomic_write_bytes, read_json
from ..data.sources import discover_subjects
from ..model_zoo import row_config
from .cv import run_cv
from .results import (
    REFERENCE_METRICS,
    SIZE_METRICS,
    pooled_results,
    seed_summary_table,
    size_results,
)
from .run_health import health_line, read_health
from .runner import DatasetRoot, calibrate, finished_result, train_and_record, trained_weights

__all__ = [
    "ROW_CONFIGS",
    "ROW_LABELS",
    "parse_weights",
    "prepare",
    "pretrain",
    "recalibrate_fold",
    "evaluate_fold_at",
    "run_loso",
    "summary_text",
]

ROW_CONFIGS = {row: row_config(row) for row in ("B", "E", "plus")}
ROW_LABELS = {
    "A": "A  classical (tuned on the held-in subjects)",
    "B": "B  Mask R-CNN",
    "E": "E  RS R-CNN",
    "plus": "RS R-CNN+ (E + 2.5-D + flip TTA)",
}
PRETRAIN_PREFIX = "anatomy"  # the pre-training cohort's datasets: anatomy_train, anatomy_val
CLASSICAL = "A"
# (random, guided) Bayesian trials: the pre-training's calibration (the tool's defaults) and a
# fold's on its few held-in slices
PRETRAIN_TRIALS, RECALIBRATION_TRIALS = (5, 25), (5, 15)
RECALIBRATED = "recalibrated"  # a fold's evaluation at a point calibrated on its held-in slices
AT_POINT = "at_point"  # a fold's evaluation at an operating point given by the user


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


def pretrain(
    slices: Path,
    out: Path,
    rows,
    iters: int,
    seed: int,
    retrain: bool = False,
    trials: Sequence[int] = PRETRAIN_TRIALS,
):
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
                trials=trials,
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


def _row_opts(iters: int, seed: int, weights: str) -> list:
    """A trained row's overrides for every fold: budget, seed, starting weights (the folds'
    datasets are run_cv's)."""
    period = max(1, iters // 2)
    return ["SOLVER.MAX_ITER", iters, "SOLVER.CHECKPOINT_PERIOD", period, "SEED", seed,
            "MODEL.WEIGHTS", weights]  # fmt: skip


def recalibrate_fold(
    config, run_dir: Path, fold: int, seed: int, trials: Sequence[int] = RECALIBRATION_TRIALS
) -> dict:
    """Calibrate a trained fold on its own held-in subjects (``pwml_fold<i>_train``, the only
    annotated slices a user of the fold has), evaluate the held-out subject there; the record,
    kept in ``run_dir/recalibrated``. The held-in slices are the ones the fold was just
    fine-tuned on, so the point is chosen on training data: what a user with a handful of
    slices can do, not an independent calibration."""
    from ..data.fileio import atomic_write_json
    from .runner import evaluate_checkpoint

    where = run_dir / RECALIBRATED
    done = finished_result(where)
    if done is not None:
        return done
    weights = trained_weights(run_dir)
    point = calibrate(
        config,
        weights,
        where / "operating_point.yaml",
        f"pwml_fold{fold}_train",
        seed=seed,
        trials=trials,
        cache=where / "held_in_probs.pt",
    )
    name = f"pwml_fold{fold}_val"
    record = {
        "config": str(point or config),
        "operating_point": read_json(where / "operating_point.json")["best"],
        "results": evaluate_checkpoint(point or config, weights, where, dataset=name),
    }
    atomic_write_json(where / "result.json", record)
    return record


def evaluate_fold_at(point, run_dir: Path, fold: int) -> dict:
    """Evaluate a trained fold's kept weights on its held-out subject with ``point``'s test-time
    settings (a config of the same row: score threshold, CRF), e.g. an operating point
    calibrated on another cohort; the record, kept in ``run_dir/at_point`` (made again when
    it was made at another point)."""
    from ..data.fileio import atomic_write_json
    from .runner import evaluate_checkpoint

    where = run_dir / AT_POINT
    done = finished_result(where)
    if done is not None and done.get("config") == str(point):
        return done
    name = f"pwml_fold{fold}_val"
    results = evaluate_checkpoint(point, trained_weights(run_dir), where, dataset=name)
    record = {"config": str(point), "results": results}
    atomic_write_json(where / "result.json", record)
    return record


def _row_dir(out: Path, tag: str, seed: int, row: str) -> Path:
    """One row's cross-validation for one seed (run_cv's output: fold_<i>/, cv_summary.md)."""
    return out / "runs" / tag / f"seed{seed}" / row


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
    pretrained: Optional[Path] = None,
    recalibrate: bool = False,
    evaluate_at: Optional[Mapping[str, str]] = None,
    tag: Optional[str] = None,
    seeds: Sequence[int] = (0,),
    retrain: bool = False,
    calibration_trials: Optional[Sequence[int]] = None,
) -> Path:
    """Every row of ``rows`` trained (row A: tuned) on all subjects of ``slices`` but one
    and evaluated on that one, for every subject and every seed of ``seeds`` (repetitions),
    into ``out``; the summary file.

    ``weights`` / ``configs``: {row: file} to start a row from (`parse_weights`);
    ``pretrained``: one checkpoint every trained row starts from (`rsrcnn-pretrain`'s
    ``pretrained.pth``; the paper's protocol), unless ``weights`` names the row;
    ``pretrain_slices``: a slice folder every trained row is first trained and calibrated on
    (with the first seed; given weights and configs win); ``recalibrate``: also calibrate
    each trained fold on its held-in subjects and evaluate it there (`recalibrate_fold`);
    ``evaluate_at``: {row: config} to evaluate each trained fold of that row at once more
    (`evaluate_fold_at`; e.g. the point calibrated on the synthetic cohort);
    ``tag`` names this set of runs (default: "pretrained" or "scratch"). A run trained with
    other options is refused unless ``retrain``. ``calibration_trials``: (random, guided)
    Bayesian trials of every calibration (None: `PRETRAIN_TRIALS` for the pre-training's,
    `RECALIBRATION_TRIALS` for the folds').
    """
    slices = Path(slices)
    out = Path(out).absolute()
    seeds = list(seeds)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    if pretrained and pretrain_slices:
        raise ValueError("pretrained (one checkpoint) and pretrain_slices exclude each other")
    weights, configs = dict(weights), dict(configs)
    if pretrained:
        pretrained = str(Path(pretrained).absolute())
        weights = {**{r: pretrained for r in rows if r != CLASSICAL}, **weights}
    if pretrain_slices:
        trained = [r for r in rows if r != CLASSICAL]
        pre_weights, pre_configs = pretrain(
            Path(pretrain_slices),
            out,
            trained,
            pretrain_iters,
            seeds[0],
            retrain,
            calibration_trials or PRETRAIN_TRIALS,
        )
        weights = {**pre_weights, **weights}  # given ones win
        configs = {**pre_configs, **configs}
    tag = tag or ("pretrained" if weights else "scratch")
    folds = prepare(slices, out / "pwml", seeds[0])
    _say_earlier_layout(out, tag, rows)
    roots = [DatasetRoot("pwml", out / "pwml")]
    splits = read_json(out / "pwml" / "splits.json")["folds"]

    fold_results, pooled, healths = defaultdict(list), defaultdict(list), {}
    tuned_folds, tuned_pooled = defaultdict(list), defaultdict(list)
    at_folds, at_pooled, evaluate_at = defaultdict(list), defaultdict(list), evaluate_at or {}
    for seed in seeds:
        for row in rows:
            row_dir = _row_dir(out, tag, seed, row)
            config = configs.get(row, ROW_CONFIGS.get(row))
            print(f"\n=== {tag}, seed {seed}: row {row}, {folds} folds -> {row_dir}", flush=True)
            if row == CLASSICAL:
                records = _classical_folds(row_dir, folds, splits, seed)
            else:  # the fold loop is run_cv's, with one fold per subject
                opts = _row_opts(iters, seed, weights.get(row, ""))
                run_cv(config, roots[0], row_dir, opts=opts, validation="held-in", retrain=retrain)
                records = [finished_result(row_dir / f"fold_{i}") for i in range(folds)]
            csvs, tuned_csvs, at_csvs = [], [], []
            for i, record in enumerate(records):
                fold_dir, name = row_dir / f"fold_{i}", f"pwml_fold{i}_val"
                fold_results[row].append(record["results"])
                csvs.append(fold_dir / "inference" / name / "pwml_slices.csv")
                if row == CLASSICAL:
                    continue
                healths[f"{row} seed {seed} fold {i}"] = read_health(fold_dir)
                if recalibrate:
                    tuned = recalibrate_fold(
                        config, fold_dir, i, seed, calibration_trials or RECALIBRATION_TRIALS
                    )
                    tuned_folds[row].append(tuned["results"])
                    tuned_csvs.append(
                        fold_dir / RECALIBRATED / "inference" / name / "pwml_slices.csv"
                    )
                if row in evaluate_at:
                    at_folds[row].append(evaluate_fold_at(evaluate_at[row], fold_dir, i)["results"])
                    at_csvs.append(fold_dir / AT_POINT / "inference" / name / "pwml_slices.csv")
            pooled[row].append(_pooled(csvs))
            if tuned_csvs:
                tuned_pooled[row].append(_pooled(tuned_csvs))
            if at_csvs:
                at_pooled[row].append(_pooled(at_csvs))

    start = ", ".join(f"{row} from {w}" for row, w in weights.items()) or "random initialisation"
    if configs:
        start += "; configs: " + ", ".join(f"{row} {c}" for row, c in configs.items())
    text = summary_text(
        slices.name, folds, iters, seeds, start, rows, pooled, fold_results, healths
    )
    if recalibrate:
        text += "\n" + _recalibrated_text(rows, tuned_pooled, tuned_folds)
    if at_pooled:
        given = ", ".join(f"{row} {point}" for row, point in evaluate_at.items())
        text += "\n" + _other_point_text(
            f"Each fold evaluated again at a given operating point ({given}; `evaluate_fold_at`), "
            "held-out slices of all folds pooled:",
            at_pooled,
            at_folds,
        )
    summary = out / f"summary_{tag}.md"
    atomic_write_bytes(summary, text.encode())
    print(text)
    return summary


def _say_earlier_layout(out: Path, tag: str, rows) -> None:
    """Runs of an earlier release (runs/TAG/ROW/fold<i>, before seeds) are not reused: say so,
    rather than retrain beside them without a word."""
    old = [
        out / "runs" / tag / row for row in rows if (out / "runs" / tag / row / "fold0").is_dir()
    ]
    if old:
        print(
            f"note: {', '.join(map(str, old))} hold(s) runs of an earlier layout (ROW/fold<i>); "
            f"this release keeps runs in {out / 'runs' / tag}/seed<s>/ROW/fold_<i> and trains "
            "them anew",
            flush=True,
        )


def _classical_folds(row_dir: Path, folds: int, splits, seed: int) -> list[dict]:
    """Row A per fold: tuned on the held-in subjects, evaluated on the held-out one."""
    from .row_a import run_row_a

    records = []
    for i in range(folds):
        print(f"row A, fold {i + 1}/{folds} (held out: {', '.join(splits[i]['val'])})")
        run_dir = row_dir / f"fold_{i}"
        records.append(
            run_row_a(
                f"pwml_fold{i}_train", f"pwml_fold{i}_val", run_dir, seed=seed, progress=False
            )
        )
    return records


def _pooled(slice_csvs: Sequence[Path]) -> dict[str, float]:
    """The folds' held-out slices pooled: the slice protocols, and lesion figures by size from
    the subjects files beside them."""
    subjects = [p.with_name("pwml_subjects.csv") for p in slice_csvs]
    return {**pooled_results(slice_csvs), **size_results(*subjects)}


def _pooled_tables(rows, pooled, seeds_title: str) -> list[str]:
    labels = {row: ROW_LABELS[row] for row in rows}
    return [
        seed_summary_table(pooled, labels, count_title=seeds_title),
        "",
        "Reference protocol (empty predictions skipped), held-out slices of all folds pooled:",
        "",
        seed_summary_table(pooled, labels, REFERENCE_METRICS, count_title=seeds_title),
        "",
        "Lesion-wise by lesion size (2-D lesions), held-out slices of all folds pooled:",
        "",
        seed_summary_table(pooled, labels, SIZE_METRICS, count_title=seeds_title),
    ]


def summary_text(name, folds, iters, seeds, start, rows, pooled, fold_results, healths) -> str:
    """The LOSO summary: pooled held-out figures (mean ± sd over the seeds when there are
    several), the reference protocol, by lesion size, per fold, training health."""
    labels = {row: ROW_LABELS[row] for row in rows}
    n_slices = {r: int(v[0]["pwml_strict/n_slices"]) for r, v in pooled.items()}
    slices_note = ", ".join(f"{labels[r].split()[0]} {n}" for r, n in n_slices.items())
    return "\n".join(
        [
            f"Leave-one-subject-out over {name} ({folds} folds), {iters} iterations per fold, "
            f"seeds {', '.join(map(str, seeds))}, starting from {start}; strict protocol.",
            "",
            f"Held-out slices of all folds pooled ({slices_note} slices), "
            + ("mean ± sd over the seeds:" if len(seeds) > 1 else "one seed:"),
            "",
            *_pooled_tables(rows, pooled, "seeds"),
            "",
            "Mean ± sd over folds" + (" and seeds" if len(seeds) > 1 else "") + " (strict):",
            "",
            seed_summary_table(fold_results, labels, count_title="folds"),
            "",
            *([health_line(healths), ""] if healths else []),
        ]
    )


def _recalibrated_text(rows, tuned_pooled, tuned_folds) -> str:
    return _other_point_text(
        "Each fold calibrated again on its own held-in subjects (the slices it was "
        "fine-tuned on; `recalibrate_fold`), held-out slices of all folds pooled:",
        {r: tuned_pooled[r] for r in rows if r in tuned_pooled},
        tuned_folds,
    )


def _other_point_text(title: str, pooled, per_fold) -> str:
    """The pooled and per-fold tables of the folds evaluated at another operating point."""
    return "\n".join(
        [
            title,
            "",
            *_pooled_tables(list(pooled), pooled, "seeds"),
            "",
            "Mean ± sd over folds (strict), at that point:",
            "",
            seed_summary_table(per_fold, {r: ROW_LABELS[r] for r in pooled}, count_title="folds"),
            "",
        ]
    )
