"""Cross-validation over the folds of a prepared cohort, as nnU-Net users run it (tools/run_cv.py).

For each fold i of ``splits.json`` (tools/prepare_pwml.py writes them): train on
``fold{i}_train`` through the training program (`rsrcnn_d2.cli.train_net`),
predict the **whole volumes** of the fold's held-out subjects (``fold{i}_val``)
from their original NIfTI files, and score them with `evaluate_folder` (every
slice counts). All out-of-fold predictions are then pooled and scored once.
A cohort converted from slice images (PNG folders: the reference slices) has no
volumes: each fold is scored on its held-out slices by the training's own test
evaluation, and the folds' CSVs are pooled (leave-one-subject-out, `loso`, runs so).
Output folder::

    OUT/fold_<i>/                   train_net's run: config.yaml, model_best.pth and/or
                                    model_final.pth, log.txt, metrics.json, result.json
    OUT/fold_<i>/predictions/<case>.nii.gz   the fold model's masks of its held-out cases
                                    (predictions.json: the weights and config that made them)
    OUT/fold_<i>/references/<case>.nii[.gz]  copies of their reference labels
    OUT/fold_<i>/probabilities/<case>_prob.nii.gz  with save_probabilities: the maps
                                    rsrcnn-find-best averages to ensemble rows
    OUT/fold_<i>/run_options.json   what the fold was trained with (run_options.py)
    OUT/fold_<i>/evaluation/        slices.csv, cases.csv, summary.json
    OUT/oof/                        the same folders for all folds' cases together
    OUT/cv_summary.json, OUT/cv_summary.md   per fold, mean ± sd across folds, pooled

Validation: the held-out fold is also DATASETS.VAL, as nnU-Net validates on it:
it steers the plateau LR schedule and picks ``model_best.pth`` (lowest
validation loss), so the held-out figures are not fully independent of
training decisions. ``checkpoint="final"`` predicts with ``model_final.pth``
instead (the schedule still sees the fold).

Resumable: a fold with ``result.json`` is not retrained, an interrupted one is
resumed from its last checkpoint (`train_and_record`), both only if trained with
the same options (`run_options`; otherwise refused unless ``retrain``); predictions made with
the same weights file and test-time config are kept, and so is an evaluation
newer than them. Folds trained by earlier runs into the same OUT (e.g. one fold
per machine) are scored and pooled with the requested ones.
Nothing is written outside OUT, and the cohort and its source files are only read.
"""

import csv
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ..data.errors import PWMLDataError
from ..data.fileio import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    nan_for_null,
    read_json,
    remove_stale_staging,
    replace_dir,
    staging_dir_for,
)
from ..data.nifti import NIFTI_ENDINGS, axis_index, read_volume, split_nifti_name
from ..data.output_lock import output_lock
from ..data.register import (
    DatasetRoot,
    check_prepared_root,
    register_dataset_roots,
)
from .results import lesion3d_results, mean_sd, pooled_results, size_results
from .run_health import HEALTH_NOTE, health_cell, read_health
from .run_options import asked_options, check_run_dir, stale_options
from .runner import RESULT_FILE, train_and_record, trained_weights

__all__ = [
    "Cohort",
    "read_cohort",
    "run_cv",
    "summarize_cv",
    "format_cv_summary",
    "CV_METRICS",
    "SCORED",
]

# (key, label, task and field in evaluate_folder's summary)
# the headline first (per-case Dice of whole volumes, lesion F1 of 3-D lesions), as nnU-Net
CV_METRICS = (
    ("case_Dice", "**Dice per case** (3-D; cases empty in both left out)", "headline", "case_dice"),
    ("lesion_F1_3d", "**lesion F1**, 3-D lesions", "headline", "lesion_f1_3d"),
    ("n_cases_empty_both", "cases empty in truth and prediction", "headline", "n_cases_empty_both"),
    ("Dice", "Dice per slice (slices with a lesion in truth or prediction)", "pwml_strict", "Dice"),
    ("Sens", "sensitivity per slice (same slices)", "pwml_strict", "Sens"),
    ("HD95_mm", "HD95 mm per slice (same slices)", "pwml_strict", "HD95_mm"),
    ("lesion_F1_2d", "lesion F1, 2-D lesions per slice", "pwml_strict", "lesion_F1"),
)
SCORED = (
    "whole volumes: every slice of each held-out subject's original NIfTI volume "
    "(not only the converted lesion slices)"
)
# what each validation policy means: DATASETS.VAL of a fold, and the summary's sentence
VALIDATION = {
    "held-out": (
        "the held-out fold is DATASETS.VAL: it steers the plateau LR schedule and picks "
        "model_best.pth, as nnU-Net validates on its held-out fold"
    ),
    "held-in": (
        "the fold's training subjects are DATASETS.VAL (no subject to spare, as in "
        "leave-one-subject-out): the schedule and model_best.pth never see the held-out one"
    ),
}
SCORED_SLICES = (
    "the converted slices of each held-out subject (a cohort of slice images has no "
    "volumes), by the training's own evaluation of its kept weights"
)
_FORBIDDEN_OPTS = ("DATASETS.TRAIN", "DATASETS.VAL", "DATASETS.TEST", "OUTPUT_DIR")


@dataclass(frozen=True)
class Cohort:
    """What the driver needs of a prepared root: its folds and each subject's source files."""

    root: Path
    axis: Optional[str]  # None for a slice-folder cohort
    binarize: bool
    folds: list[dict[str, list[str]]]
    sources: dict[str, tuple]  # subject -> (image, mask) source paths
    volumes: bool = True  # NIfTI volumes (scored whole); False: a folder of PNG slices


def read_cohort(root: Union[str, Path]) -> Cohort:
    """The prepared root's folds and sources; PWMLDataError if it cannot be cross-validated."""
    root = check_prepared_root(root)
    conversion = read_json(root / "conversion.json") if (root / "conversion.json").is_file() else {}
    splits = read_json(root / "splits.json")
    folds = splits.get("folds") or []
    if not folds:
        raise PWMLDataError(
            root / "splits.json",
            "has no cross-validation folds; convert with tools/prepare_pwml.py --folds K (K >= 2)",
        )
    sources = {}
    for image in read_json(root / "annotations" / "instances_all.json")["images"]:
        sources.setdefault(image["subject"], (Path(image["source_file"]), Path(image["mask_file"])))
    first = next(iter(sources.values()))
    volumes = str(first[0]).endswith(NIFTI_ENDINGS)  # else slice images: scored as slices
    axis = conversion.get("axis")
    if volumes and not axis:
        raise PWMLDataError(
            root / "conversion.json", "does not say along which axis slices were cut"
        )
    for fold in folds:
        for subject in fold["val"]:
            if subject not in sources:
                raise PWMLDataError(
                    root / "splits.json",
                    f"fold subject {subject!r} has no slices in annotations/instances_all.json",
                )
            for path in sources[subject] if volumes else ():
                if not path.is_file():  # checked before any training, not after fold 0
                    raise PWMLDataError(
                        path,
                        f"source file of subject {subject!r} (recorded in "
                        f"{root / 'annotations' / 'instances_all.json'}) is missing; "
                        "held-out cases are predicted from the original volumes",
                    )
    binarize = bool(conversion.get("binarize", False))
    return Cohort(root, axis, binarize, folds, sources, volumes)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _check_output(output: Path, cohort: Cohort) -> None:
    """OUT may not overlap the prepared root or hold a source file (it is written, they are
    read)."""
    if output.is_symlink() or output.is_file():
        raise PWMLDataError(output, "output location is a file or a symbolic link; give a folder")
    if _inside(output, cohort.root) or _inside(cohort.root, output):
        raise PWMLDataError(
            output,
            f"output folder overlaps the dataset root {cohort.root}; choose a folder outside it",
        )
    for image, mask in cohort.sources.values():
        for source in (image, mask):
            if _inside(source, output):
                raise PWMLDataError(output, f"output folder contains the source file {source}")


def _fold_opts(prefix: str, fold: int, validation: str = "held-out") -> list[str]:
    train, val = f"{prefix}_fold{fold}_train", f"{prefix}_fold{fold}_val"
    return [
        "DATASETS.TRAIN",
        f"('{train}',)",
        "DATASETS.VAL",
        f"('{val if validation == 'held-out' else train}',)",
        "DATASETS.TEST",
        f"('{val}',)",
    ]


def _inference_dir(run_dir: Path, prefix: str, fold: int) -> Path:
    """Where a fold's training evaluated its held-out subjects (train_net's DATASETS.TEST)."""
    return run_dir / "inference" / f"{prefix}_fold{fold}_val"


def _slice_summary(inference_dirs: Sequence[Path]) -> dict:
    """A slice cohort's fold (or pooled folds) in evaluate_folder's summary form, from the
    evaluator's CSVs of each training's own test evaluation (``pwml_slices.csv``,
    ``pwml_subjects.csv``) on disjoint held-out subjects."""
    slices = [d / "pwml_slices.csv" for d in inference_dirs]
    subjects = [d / "pwml_subjects.csv" for d in inference_dirs]
    for path in [*slices, *subjects]:
        if not path.is_file():
            raise PWMLDataError(path, "missing: the fold's training did not evaluate its test set")
    flat = {**pooled_results(slices), **lesion3d_results(*subjects), **size_results(*subjects)}
    summary = {}
    for key, value in flat.items():
        task, name = key.split("/", 1)
        summary.setdefault("headline" if task == "pwml_headline" else task, {})[name] = value
    summary["cases"] = sorted(
        {row["subject"] for path in subjects for row in csv.DictReader(path.open(newline=""))}
    )
    return summary


def _copy_file(source: Path, target: Path) -> None:
    """A plain copy written atomically (never a link into the input); an identical one is kept."""
    data = source.read_bytes()
    if not (target.is_file() and target.read_bytes() == data):
        atomic_write_bytes(target, data)


def _fold_weights(run_dir: Path, checkpoint: str) -> Path:
    weights = trained_weights(run_dir) if checkpoint == "best" else run_dir / "model_final.pth"
    if not weights.is_file():
        raise PWMLDataError(run_dir, f"fold finished but {weights.name} is missing")
    return weights


def predict_fold(
    cohort: Cohort,
    fold: int,
    run_dir: Path,
    checkpoint: str = "best",
    opts: Sequence[str] = (),
    log: Callable[[str], None] = print,
    save_probabilities: bool = False,
) -> Path:
    """Write ``<case>.nii.gz`` masks of the fold's held-out cases and copies of their labels.

    The fold's own config.yaml and weights are used; ``opts`` are the user's
    overrides again (e.g. MODEL.DEVICE). Predictions made with the same weights
    file (path and mtime) and the same MODEL/INPUT/TEST keys, recorded in
    ``predictions.json``, are kept (a SOLVER change does not touch them).
    ``save_probabilities``: also ``probabilities/<case>_prob.nii.gz``, rsrcnn-predict's
    --save-probabilities map (whose ``>= MODEL.RSRCNN.MASK_THRESHOLD`` is the mask), for
    rsrcnn-find-best to ensemble rows on; a case whose map is missing is predicted again.
    """
    from ..config import fall_back_to_cpu, get_rsrcnn_cfg
    from ..inference.calibration import describe_inference
    from ..inference.inputs import PredictionInput, check_input_geometry
    from ..inference.predictor import LesionPredictor, predict_volume
    from ..inference.writers import save_volume_like, to_input_orientation

    predictions, references = run_dir / "predictions", run_dir / "references"
    probabilities = run_dir / "probabilities"
    weights = _fold_weights(run_dir, checkpoint)
    cfg = get_rsrcnn_cfg(str(run_dir / "config.yaml"), [*opts, "MODEL.WEIGHTS", str(weights)])
    fall_back_to_cpu(cfg)
    cfg.freeze()
    stamp = {
        "weights": str(weights),
        "weights_mtime_ns": weights.stat().st_mtime_ns,
        "config": {key: cfg[key].dump() for key in ("MODEL", "INPUT", "TEST")},
    }
    stamp_file = run_dir / "predictions.json"
    current = stamp_file.is_file() and read_json(stamp_file) == stamp
    todo = []
    for case in cohort.folds[fold]["val"]:
        image, mask = cohort.sources[case]
        _copy_file(mask, references / f"{case}{split_nifti_name(mask.name)[1]}")
        target = predictions / f"{case}.nii.gz"
        prob_file = probabilities / f"{case}_prob.nii.gz"
        if not (current and target.is_file() and (prob_file.is_file() or not save_probabilities)):
            todo.append((case, image, target))
    if not todo:
        return predictions
    if not current:  # other weights or overrides: none of the old masks or maps may be used
        for case, _, target in todo:
            target.unlink(missing_ok=True)
            (probabilities / f"{case}_prob.nii.gz").unlink(missing_ok=True)
        atomic_write_json(stamp_file, stamp)
    predictor = LesionPredictor.from_config(cfg)  # TEST.FLIP_TTA, as the evaluation does
    log(f"fold {fold}: {describe_inference(cfg, predictor.inference, 'from the config')}")
    axis = axis_index(cohort.axis)
    for case, image, target in todo:
        item = PredictionInput("nifti", image, case)
        check_input_geometry(predictor, item, axis)
        volume = read_volume(image)
        mask, prob = predict_volume(predictor, volume.canonical, axis)
        save_volume_like(
            to_input_orientation(mask, volume.source.affine), volume.source, target, np.uint8
        )
        if save_probabilities:
            save_volume_like(
                to_input_orientation(prob, volume.source.affine),
                volume.source,
                probabilities / f"{case}_prob.nii.gz",
                np.float32,
            )
        log(f"fold {fold}: {image} -> {target}")
    return predictions


def _evaluate(predictions: Path, references: Path, output: Path, cohort: Cohort) -> dict:
    """evaluate_folder's summary; a summary newer than every scored file is read, not recomputed."""
    from ..evaluation.folder import evaluate_folder

    done = output / "summary.json"
    if done.is_file():
        scored = [
            p.stat().st_mtime for folder in (predictions, references) for p in folder.iterdir()
        ]
        summary = read_json(done)
        # newer than every scored file, and scored by this release's rules (headline first)
        if scored and done.stat().st_mtime >= max(scored) and "headline" in summary:
            return nan_for_null(summary)
    return evaluate_folder(
        predictions,
        references,
        output,
        axis=cohort.axis,
        binarize=cohort.binarize,
        workers=1,
        progress=False,
    )


def _pool(output: Path, folds: Sequence[int], cohort: Cohort) -> dict:
    """Hard links (copies where links fail) of every fold's cases in OUT/oof, scored once."""
    oof = output / "oof"
    remove_stale_staging(oof)
    staging = staging_dir_for(oof)
    try:
        for fold in folds:
            for part in ("predictions", "references", "probabilities"):
                source = output / f"fold_{fold}" / part
                if part == "probabilities" and not source.is_dir():
                    continue  # only folds predicted with save_probabilities have them
                (staging / part).mkdir(exist_ok=True)
                for path in sorted(source.iterdir()):
                    if path.name.startswith("."):
                        continue
                    try:
                        os.link(path, staging / part / path.name)
                    except OSError:
                        shutil.copyfile(path, staging / part / path.name)
        summary = _evaluate(
            staging / "predictions", staging / "references", staging / "evaluation", cohort
        )
        replace_dir(staging, oof)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _figures(summary: dict) -> dict[str, float]:
    return {key: float(summary[task][field]) for key, _, task, field in CV_METRICS}


def summarize_cv(per_fold: Mapping[int, dict], pooled: Optional[dict]) -> dict:
    """Mean ± sample sd across folds of each figure, and the pooled out-of-fold figures."""
    figures = {fold: _figures(s) for fold, s in per_fold.items()}
    mean, sd, n = {}, {}, {}
    for key, *_ in CV_METRICS:
        mean[key], sd[key], n[key] = mean_sd([f[key] for f in figures.values()])
    return {
        "per_fold": {str(k): v for k, v in figures.items()},
        "mean": mean,
        "sd": sd,
        "n_folds": n,
        "pooled": _figures(pooled) if pooled is not None else None,
    }


def _cell(value: float, digits: int = 4) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def format_cv_summary(record: dict) -> str:
    """cv_summary.md: one row per figure; folds, mean ± sd across folds, pooled out-of-fold."""
    folds = list(record["per_fold"])
    lines = [
        f"# Cross-validation: {record['config']}",
        "",
        f"Dataset root: {record['dataset_root']}; folds run: "
        f"{', '.join(folds)} of {record['num_folds']}"
        + ("" if record["complete"] else " (incomplete: pooled figures cover these folds only)"),
        f"Scored: {record['scored']}.",
        f"Validation: {record['validation']}.",
        f"Weights: {record['checkpoint']}.",
        "",
        "| figure | " + " | ".join(f"fold {f}" for f in folds) + " | mean ± sd | pooled OOF |",
        "|---|" + "---|" * len(folds) + "---|---|",
    ]
    for key, label, *_ in CV_METRICS:
        digits = 1 if key.startswith("n_") else 4  # a count: its mean needs no more
        cells = [_cell(record["per_fold"][f][key], digits) for f in folds]
        mean, sd = record["mean"][key], record["sd"][key]
        spread = (
            f"{_cell(mean, digits)} ± {_cell(sd, digits)}"
            if not np.isnan(sd)
            else _cell(mean, digits)
        )
        pooled = _cell(record["pooled"][key], digits) if record["pooled"] else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {spread} | {pooled} |")
    health = record.get("health") or {}
    lines.append(
        "| training health | " + " | ".join(health_cell(health.get(f)) for f in folds) + " | | |"
    )
    lines += [
        "",
        "sd: sample standard deviation (n-1) across folds; – where undefined. "
        "A case or slice empty in both truth and prediction has no Dice (not 1): it is "
        "left out of the means and counted. " + HEALTH_NOTE + ".",
    ]
    return "\n".join(lines) + "\n"


def run_cv(
    config: Union[str, Path],
    dataset_root: str,
    output: Union[str, Path],
    folds: Optional[Sequence[int]] = None,
    opts: Sequence[str] = (),
    num_gpus: int = 1,
    checkpoint: str = "best",
    log: Callable[[str], None] = print,
    retrain: bool = False,
    save_probabilities: bool = False,
    validation: str = "held-out",
) -> dict:
    """Train, predict and score the requested folds (default: all); return cv_summary.json's
    content.

    A cohort of NIfTI volumes is scored on the held-out subjects' whole volumes; a cohort
    converted from slice images (a leave-one-subject-out of the reference slices) on their
    slices, by each fold training's own evaluation. ``validation``: "held-out" (nnU-Net's:
    the held-out fold steers the schedule and picks model_best) or "held-in" (the fold's
    training subjects do, when there is no subject to spare).

    A fold folder trained with other options (config, overrides, cohort) is never
    reported or resumed: `StaleRunError` names the fold and the differing keys, unless
    ``retrain`` (a requested fold is then trained again, its old folder kept aside).

    ``dataset_root`` is a `DatasetRoot` or a ``[NAME=]DIR`` spec as train_net's
    ``--dataset-root``;
    ``opts`` are KEY VALUE overrides for every fold (DATASETS.* and OUTPUT_DIR are
    the driver's). Raises PWMLDataError / ConfigError before any training for
    bad arguments, RuntimeError if a fold's training fails.
    """
    from ..config import check_requested_device, device_override, get_rsrcnn_cfg

    if checkpoint not in ("best", "final"):
        raise ValueError(f"checkpoint must be 'best' or 'final', not {checkpoint!r}")
    if validation not in VALIDATION:
        raise ValueError(f"validation must be one of {sorted(VALIDATION)}, not {validation!r}")
    opts = [str(o) for o in opts]
    for key in opts[::2]:
        if key in _FORBIDDEN_OPTS:
            raise PWMLDataError(config, f"override {key} is set by the CV driver for each fold")
    get_rsrcnn_cfg(str(config), opts)  # a bad config or override fails now, not in fold 0
    check_requested_device(device_override(opts), "MODEL.DEVICE")  # asked for: no fallback
    spec = DatasetRoot.parse(dataset_root)
    prefix, cohort = spec.name, read_cohort(spec.folder)
    if not cohort.volumes and (checkpoint != "best" or save_probabilities):
        raise PWMLDataError(
            cohort.root,
            "was converted from slice images: its folds are scored by the training's own "
            "evaluation of its kept weights (no --checkpoint final, no probability maps)",
        )
    roots = [DatasetRoot(prefix, cohort.root)]
    register_dataset_roots(roots)  # refuses a prefix clash before training
    folds = list(range(len(cohort.folds))) if folds is None else [int(f) for f in folds]
    for fold in folds:
        if not 0 <= fold < len(cohort.folds):
            raise PWMLDataError(
                cohort.root / "splits.json",
                f"has {len(cohort.folds)} folds (0-{len(cohort.folds) - 1}); no fold {fold}",
            )
    output = Path(output).absolute()
    _check_output(output, cohort)
    with output_lock(output, "run_cv"):  # a second run_cv into OUT: exit 2, nothing trained
        asked = {
            fold: asked_options(config, [*opts, *_fold_opts(prefix, fold, validation)], roots)
            for fold in range(len(cohort.folds))
        }
        for fold in range(len(cohort.folds)):  # every stale fold refused before any training
            if fold not in folds:  # an earlier run's fold is pooled only if trained exactly so
                check_run_dir(
                    output / f"fold_{fold}",
                    asked[fold],
                    f"fold {fold}",
                    "add it to --folds --retrain",
                )
            elif not retrain:
                check_run_dir(output / f"fold_{fold}", asked[fold], f"fold {fold}")
        per_fold = {}
        for fold in range(len(cohort.folds)):
            run_dir = output / f"fold_{fold}"
            fold_opts = [*opts, *_fold_opts(prefix, fold, validation)]
            finished = (run_dir / RESULT_FILE).is_file()
            if fold not in folds and not finished:
                continue  # not asked for and not trained by an earlier run
            if finished and not stale_options(run_dir, asked[fold]):
                log(f"fold {fold}: finished earlier with the same options, not retrained")
            else:
                log(f"fold {fold}: training on {prefix}_fold{fold}_train in {run_dir}")
            train_and_record(
                config,
                run_dir,
                fold_opts,
                roots,
                num_gpus=num_gpus,
                retrain=retrain,
                what=f"fold {fold}",
            )
            if not cohort.volumes:
                per_fold[fold] = _slice_summary([_inference_dir(run_dir, prefix, fold)])
                continue
            predictions = predict_fold(
                cohort, fold, run_dir, checkpoint, opts, log, save_probabilities=save_probabilities
            )
            per_fold[fold] = _evaluate(
                predictions, run_dir / "references", run_dir / "evaluation", cohort
            )
        if cohort.volumes:
            pooled = _pool(output, sorted(per_fold), cohort)
        else:
            dirs = [_inference_dir(output / f"fold_{f}", prefix, f) for f in sorted(per_fold)]
            pooled = _slice_summary(dirs)
        record = {
            "config": str(config),
            "dataset_root": str(cohort.root),
            "prefix": prefix,
            "num_folds": len(cohort.folds),
            "folds": sorted(per_fold),
            "complete": sorted(per_fold) == list(range(len(cohort.folds))),
            "scored": SCORED if cohort.volumes else SCORED_SLICES,
            "validation": VALIDATION[validation],
            "checkpoint": (
                "model_best.pth where training kept one, else model_final.pth"
                if checkpoint == "best"
                else "model_final.pth"
            ),
            "opts": opts,
            "cases": pooled["cases"],
            "health": {str(f): read_health(output / f"fold_{f}") for f in sorted(per_fold)},
            **summarize_cv(per_fold, pooled),
            "pooled_counts": pooled["pwml_lesion3d"],
        }
        atomic_write_json(output / "cv_summary.json", record)
        atomic_write(
            output / "cv_summary.md", lambda tmp: Path(tmp).write_text(format_cv_summary(record))
        )
        return record
