"""One training run through the package's training program, resumable and recorded once
finished; the other steps of an experiment called in this process.

A run folder holds detectron2's usual output plus ``result.json``, written
(atomically) only after training and the final evaluation are done. A folder
with ``result.json`` is skipped; one without it is resumed from its last
checkpoint, so an interrupted sweep loses at most one checkpoint period.
Training is the only step that runs in a child process (`train`: ``python -m
rsrcnn_d2.cli.train_net``, the installed program), which isolates detectron2's
global state and its DDP workers from the sweep; its cohorts reach it as
``--dataset-root NAME=DIR`` (`DatasetRoot`), never through the environment.
Cohort generation, conversion, calibration and evaluation are function calls.
"""

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from ..checkpoint import trained_weights
from ..data.fileio import atomic_write_json, nan_for_null, read_json
from ..data.register import DatasetRoot
from .child_process import run_child
from .results import lesion3d_results, pooled_results, read_eval_results, size_results
from .run_health import read_health
from .run_options import asked_options, claim_run_dir

__all__ = [
    "finished_result",
    "train",
    "train_and_record",
    "train_net_command",
    "trained_weights",
    "calibrate",
    "evaluate_checkpoint",
    "step",
    "DatasetRoot",
    "TRAIN_NET_MODULE",
]

TRAIN_NET_MODULE = "rsrcnn_d2.cli.train_net"  # run as ``python -m``: a program, not an import
RESULT_FILE = "result.json"


class step:
    """``with step("3/7 training row B"):`` a header, and a closing line with the time it took."""

    def __init__(self, name: Optional[str]):
        self.name = name

    def __enter__(self):
        self.start = time.time()
        if self.name:
            print(f"\n=== {self.name}", flush=True)
        return self

    def __exit__(self, kind, value, traceback):
        if self.name and kind is None:
            print(f"=== {self.name}: done in {time.time() - self.start:.0f} s", flush=True)
        return False


def _flags(roots: Sequence[DatasetRoot], num_gpus: int) -> list[str]:
    """train_net's options for ``roots`` and ``num_gpus``."""
    flags = [a for r in roots for a in ("--dataset-root", DatasetRoot.parse(r).spec)]
    return flags + (["--num-gpus", str(num_gpus)] if num_gpus != 1 else [])


def train_net_command(
    config: Union[str, Path],
    run_dir: Union[str, Path],
    opts: Sequence = (),
    roots: Sequence[DatasetRoot] = (),
    num_gpus: int = 1,
    resume: bool = True,
) -> list[str]:
    """The command line that trains (or, with ``resume``, resumes) ``config`` into ``run_dir``."""
    return [
        sys.executable,
        "-m",
        TRAIN_NET_MODULE,
        "--config-file",
        str(config),
        *(["--resume"] if resume else []),
        *_flags(roots, num_gpus),
        *map(str, opts),
        "OUTPUT_DIR",
        str(run_dir),
    ]


def train(
    config: Union[str, Path],
    run_dir: Union[str, Path],
    opts: Sequence = (),
    roots: Sequence[DatasetRoot] = (),
    num_gpus: int = 1,
    log_file: Optional[Path] = None,
    resume: bool = True,
) -> None:
    """Train (or resume) ``config`` + ``opts`` into ``run_dir`` on the cohorts ``roots``: the one
    step that runs as a child process (it dies with this one); RuntimeError if it fails.

    Without ``log_file`` the child's output is this process's; with it, appended there.
    ``resume`` False starts from the config's weights even where a checkpoint exists.
    """
    cmd = train_net_command(config, run_dir, opts, roots, num_gpus, resume)
    print("$ " + " ".join(cmd[2:]), flush=True)
    if log_file is None:
        proc = run_child(cmd)
    else:
        with open(log_file, "a") as log:
            proc = run_child(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        where = f"; see {log_file}" if log_file else ""
        raise RuntimeError(f"training in {run_dir} failed (exit {proc.returncode}){where}")


def finished_result(run_dir: Union[str, Path]) -> Optional[dict]:
    """The recorded result of a finished run, or None if the run has not finished."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    record = read_json(path)
    record["results"] = nan_for_null(record.get("results", {}))  # JSON null: undefined
    return record


def train_and_record(
    config: Union[str, Path],
    run_dir: Union[str, Path],
    opts: Sequence = (),
    roots: Sequence[DatasetRoot] = (),
    log_file: Optional[Path] = None,
    keep_checkpoints: bool = False,
    num_gpus: int = 1,
    retrain: bool = False,
    what: str = "",
) -> dict:
    """Train (or resume) ``config`` into ``run_dir`` (`train`); return {"config", "opts",
    "results", "health"} (health.json's content, see `rsrcnn_d2.engine.health`).

    ``opts`` are train_net's trailing KEY VALUE overrides; OUTPUT_DIR is set here; ``roots``
    the cohorts the run's datasets come from. The final evaluation (DATASETS.TEST) must be
    PWML's. Intermediate checkpoints are deleted once the run is recorded unless
    ``keep_checkpoints``; ``model_final.pth`` and ``model_best.pth`` stay.

    A folder trained (finished or not) with other options is never reused or resumed:
    `StaleRunError` names ``what`` (e.g. "fold 0") and the differing keys, unless
    ``retrain`` (the old folder is then moved aside; see `run_options.claim_run_dir`).
    """
    run_dir = Path(run_dir).absolute()
    opts = [str(o) for o in opts]
    claim_run_dir(run_dir, asked_options(config, opts, roots), retrain, what)
    done = finished_result(run_dir)
    if done is not None:
        return done
    train(config, run_dir, opts, roots, num_gpus, log_file)
    record = {
        "config": str(config),
        "opts": opts,
        "results": read_eval_results(run_dir / "metrics.json"),
        "health": read_health(run_dir),  # train_net's verdict: did the heads learn?
    }
    atomic_write_json(run_dir / RESULT_FILE, record)
    if not keep_checkpoints:
        for ckpt in run_dir.glob("model_0*.pth"):
            ckpt.unlink()
    return record


def calibrate(
    config: Union[str, Path],
    weights: Union[str, Path],
    output: Union[str, Path],
    dataset: str,
    opts: Sequence = (),
    seed: int = 0,
    trials: Sequence[int] = (5, 15),
    objective: str = "dice",
    cache: Optional[Union[str, Path]] = None,
    step_name: Optional[str] = None,
) -> Optional[Path]:
    """Calibrate ``weights``' operating point on ``dataset`` in this process
    (`rsrcnn_d2.tuning.calibrate_operating_point`, what tools/tune_operating_point.py runs):
    ``output`` gets the calibrated config. None when no point scored above predicting no
    lesion (its trials file says ``"best": null``): the caller evaluates the config's own
    point and says it is not calibrated. ``output`` and its trials file are the driver's: an
    earlier run's are removed first, so that neither can stand in for this calibration."""
    from ..tuning import calibrate_operating_point

    output, trials_file = Path(output), Path(output).with_suffix(".json")
    for stale in (output, trials_file):
        stale.unlink(missing_ok=True)
    with step(step_name):
        found = calibrate_operating_point(
            config,
            weights,
            dataset,
            output,
            opts=[str(o) for o in opts],
            seed=seed,
            init_points=trials[0],
            n_iter=trials[1],
            objective=objective,
            cache=cache,
            progress=False,
        )
    written = found.written
    if written is None:
        print(f"=== {step_name or 'calibration'}: nothing to calibrate, the config's own point")
    return written


def evaluate_checkpoint(
    config: Union[str, Path],
    weights: Union[str, Path],
    out_dir: Union[str, Path],
    opts: Sequence = (),
    dataset: str = "pwml_test",
    step_name: Optional[str] = None,
) -> dict[str, float]:
    """Evaluate ``weights`` with ``config`` on ``dataset`` in this process (train_net's
    ``--eval-only``, `rsrcnn_d2.engine.train_net.evaluate_weights`, into ``out_dir``); the
    evaluator's figures, read back from its CSVs, with the 3-D lesion counts."""
    from ..engine.train_net import evaluate_weights

    with step(step_name):
        evaluate_weights(config, weights, out_dir, opts, dataset)
    inference = Path(out_dir) / "inference" / dataset
    results = pooled_results([inference / "pwml_slices.csv"])
    results.update(lesion3d_results(inference / "pwml_subjects.csv"))
    results.update(size_results(inference / "pwml_subjects.csv"))
    return results
