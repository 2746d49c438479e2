"""Scoring the classical detector with the PWML evaluator, and row A's tune-then-test run.

Row A is run as the paper runs its tuned stages: parameters tuned on the
validation subjects (tuning.py), then evaluated once on the test subjects with
the same `PWMLEvaluator` as rows B–E (strict and reference protocols, subject
3-D, lesion-wise), writing the same per-slice CSVs.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from ..data.fileio import atomic_write_json
from .dataset import DatasetSlice, load_dataset_slices, model_input
from .model import ClassicalLesionModel
from .params import ClassicalParams, save_params
from .tuning import ClassicalTuningResult, tune_classical

__all__ = ["evaluate_classical", "flat_results", "save_tuning", "tune_and_evaluate"]


def evaluate_classical(
    slices: Sequence[DatasetSlice],
    params: ClassicalParams,
    dataset_name: Optional[str] = None,
    output_dir: Union[str, Path, None] = None,
    progress: bool = True,
):
    """The evaluator's results (``pwml_strict``, ``pwml_reference``, ...) on ``slices``.

    The same `PWMLEvaluator` as the networks', so row A's figures compare with rows B–E.

    Args:
        slices: `load_dataset_slices` of the dataset to score.
        params: the detector's parameters.
        dataset_name: names the evaluator's log (None: unnamed).
        output_dir: where ``pwml_slices.csv`` and ``pwml_subjects.csv`` go (None: no files).
        progress: show a progress bar.

    Returns:
        `PWMLEvaluator.evaluate`'s results.
    """
    from tqdm import tqdm

    from ..evaluation import PWMLEvaluator

    model = ClassicalLesionModel(params)
    evaluator = PWMLEvaluator(
        dataset_name, None if output_dir is None else str(output_dir), distributed=False
    )
    evaluator.reset()
    for s in tqdm(slices, desc="detecting", unit="slice", disable=not progress):
        inp = model_input(s)
        evaluator.process([inp], model([inp]))
    return evaluator.evaluate()


def flat_results(results) -> dict[str, float]:
    """``{"pwml_strict/Dice": ...}``: the evaluator's tasks flattened as detectron2 logs them."""
    return {
        f"{task}/{key}": float(value)
        for task, values in results.items()
        for key, value in values.items()
    }


def save_tuning(
    result: ClassicalTuningResult, path: Union[str, Path], dataset_name: str, seed: int
) -> Path:
    """Write the best parameters to ``path`` and every trial to ``<stem>_trials.json`` beside it.

    Args:
        result: `tune_classical`'s result.
        path: the parameters file (YAML, or JSON for ``.json``), with a comment header
            saying how it was tuned.
        dataset_name: the tuning dataset, recorded in both files.
        seed: the tuning seed, recorded in both files.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    lines = [
        f"classical detector (row A) tuned on {dataset_name}, {result.num_slices} slices, "
        f"by Bayesian optimisation of {result.objective} (seed {seed}), "
        f"{len(result.trials)} settings tried",
        f"{result.objective} at the start: {result.start_value:.4f}; "
        f"at these parameters: {result.best_value:.4f}",
    ]
    save_params(path, result.best_params, lines)
    atomic_write_json(
        path.with_name(f"{path.stem}_trials.json"),
        {
            "dataset": dataset_name,
            "objective": result.objective,
            "seed": seed,
            "start": {**result.start_params.to_dict(), "value": result.start_value},
            "best": {**result.best_params.to_dict(), "value": result.best_value},
            "trials": [{**p.to_dict(), "value": v} for p, v in result.trials],
        },
    )
    return path


def tune_and_evaluate(
    tune_dataset: str,
    test_dataset: str,
    output_dir: Union[str, Path],
    start: Optional[ClassicalParams] = None,
    *,
    objective: str = "dice",
    seed: int = 0,
    init_points: int = 10,
    n_iter: int = 30,
    progress: bool = True,
) -> dict:
    """Tune on ``tune_dataset``, evaluate on ``test_dataset``; everything under ``output_dir``.

    Row A as the paper runs its tuned stages: tuned on validation, tested once.

    Args:
        tune_dataset: registered dataset the parameters are tuned on (validation).
        test_dataset: registered dataset they are then scored on, once.
        output_dir: gets ``params.yaml`` (+ ``params_trials.json``) and
            ``inference/<test_dataset>/pwml_{slices,subjects}.csv``.
        start: the starting parameters (default: ClassicalParams()); its ``mode`` is
            kept, and "3d" cuts neighbours from the source volumes.
        objective, seed, init_points, n_iter: as `tune_classical`.
        progress: show progress bars.

    Returns:
        ``{"params": <path>, "tuning": {...}, "results": <flat results>}``.
    """
    output_dir = Path(output_dir)
    start = start or ClassicalParams()
    three_d = start.mode == "3d"  # neighbours cut from the source volumes
    tuning = tune_classical(
        load_dataset_slices(tune_dataset, progress, three_d),
        start,
        objective=objective,
        seed=seed,
        init_points=init_points,
        n_iter=n_iter,
        progress=progress,
    )
    params_path = save_tuning(tuning, output_dir / "params.yaml", tune_dataset, seed)
    results = evaluate_classical(
        load_dataset_slices(test_dataset, progress, three_d),
        tuning.best_params,
        test_dataset,
        output_dir / "inference" / test_dataset,
        progress,
    )
    return {
        "params": str(params_path),
        "tuning": {
            "dataset": tune_dataset,
            "objective": objective,
            "seed": seed,
            "start": tuning.start_value,
            "best": tuning.best_value,
        },
        "results": flat_results(results),
    }
