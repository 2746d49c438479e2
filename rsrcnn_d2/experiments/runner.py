"""One training run through the package's training program, resumable and recorded once finished.

A run folder holds detectron2's usual output plus ``result.json``, written
(atomically) only after training and the final evaluation are done. A folder
with ``result.json`` is skipped; one without it is resumed from its last
checkpoint, so an interrupted sweep loses at most one checkpoint period.
Training runs in a child process (``python -m rsrcnn_d2.engine.train_net``: the
installed module, never a script of the repository), which isolates its workers
and global state from the sweep that drives it.
"""

import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from ..checkpoint import trained_weights
from ..data.fileio import atomic_write_json, nan_for_null, read_json
from ..errors import EXIT_PARTIAL
from .child_process import run_child
from .results import lesion3d_results, pooled_results, read_eval_results
from .run_health import read_health
from .run_options import asked_options, claim_run_dir

__all__ = [
    "finished_result",
    "train_and_record",
    "train_net_command",
    "run_tool",
    "trained_weights",
    "calibrate",
    "evaluate_checkpoint",
    "TRAIN_NET_MODULE",
    "COHORT_MODULE",
    "PREPARE_MODULE",
    "TUNE_MODULE",
    "PREDICT_MODULE",
    "PLOT_MODULE",
]

TRAIN_NET_MODULE = "rsrcnn_d2.engine.train_net"
# the other programs a driver runs as a user would, as installed modules (python -m), never
# as scripts
COHORT_MODULE = "rsrcnn_d2.data.cohort_cli"  # tools/make_synthetic_cohort.py
PREPARE_MODULE = "rsrcnn_d2.data.prepare_cli"  # tools/prepare_pwml.py
TUNE_MODULE = "rsrcnn_d2.tuning.cli"  # tools/tune_operating_point.py (tune_dcrf.py: its old name)
PREDICT_MODULE = "rsrcnn_d2.inference.cli"  # tools/predict.py, rsrcnn-predict
PLOT_MODULE = "rsrcnn_d2.visualization.plot_cli"  # tools/plot_results.py
RESULT_FILE = "result.json"


def run_tool(
    args: Sequence, env: Optional[Mapping[str, str]] = None, step: Optional[str] = None
) -> None:
    """Run a program (``[script, *arguments]`` or ``["-m", module, ...]``) with this
    interpreter, echoing the command; raise ``CalledProcessError`` if it fails.

    ``step`` names it in a header and a closing line with the time it took.
    """
    if step:
        print(f"\n=== {step}", flush=True)
    print("$ " + " ".join(str(a) for a in args), flush=True)
    start = time.time()
    run_child([sys.executable, *map(str, args)], check=True, env=None if env is None else dict(env))
    if step:
        print(f"=== {step}: done in {time.time() - start:.0f} s", flush=True)


def train_net_command(
    config: Union[str, Path], run_dir: Union[str, Path], opts: Sequence = (), flags: Sequence = ()
) -> List[str]:
    """The command line that trains (or resumes) ``config`` into ``run_dir``."""
    return [
        sys.executable,
        "-m",
        TRAIN_NET_MODULE,
        "--config-file",
        str(config),
        "--resume",
        *map(str, flags),
        *map(str, opts),
        "OUTPUT_DIR",
        str(run_dir),
    ]


def finished_result(run_dir: Union[str, Path]) -> Optional[Dict]:
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
    env: Optional[Mapping[str, str]] = None,
    log_file: Optional[Path] = None,
    keep_checkpoints: bool = False,
    flags: Sequence = (),
    retrain: bool = False,
    what: str = "",
) -> Dict:
    """Train (or resume) ``config`` into ``run_dir``; return {"config", "opts", "results",
    "health"} (health.json's content, see `rsrcnn_d2.engine.health`).

    ``opts`` are train_net's trailing KEY VALUE overrides; OUTPUT_DIR is set here.
    ``flags`` are train_net options that go before them (``--dataset-root``, ``--num-gpus``).
    The final evaluation (DATASETS.TEST) must be PWML's. Intermediate checkpoints
    are deleted once the run is recorded unless ``keep_checkpoints``;
    ``model_final.pth`` and ``model_best.pth`` stay.

    A folder trained (finished or not) with other options is never reused or resumed:
    `StaleRunError` names ``what`` (e.g. "fold 0") and the differing keys, unless
    ``retrain`` (the old folder is then moved aside; see `run_options.claim_run_dir`).
    """
    run_dir = Path(run_dir).absolute()
    opts = [str(o) for o in opts]
    claim_run_dir(run_dir, asked_options(config, opts, flags, env), retrain, what)
    done = finished_result(run_dir)
    if done is not None:
        return done
    cmd = train_net_command(config, run_dir, opts, flags)
    if log_file is None:
        proc = run_child(cmd, env=None if env is None else dict(env))
    else:
        with open(log_file, "a") as log:
            proc = run_child(
                cmd, env=None if env is None else dict(env), stdout=log, stderr=subprocess.STDOUT
            )
    if proc.returncode != 0:
        where = f"; see {log_file}" if log_file else ""
        raise RuntimeError(f"training in {run_dir} failed (exit {proc.returncode}){where}")
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
    env: Optional[Mapping[str, str]] = None,
    opts: Sequence = (),
    flags: Sequence = (),
    seed: int = 0,
    trials: Sequence[int] = (5, 15),
    objective: str = "dice",
    cache: Optional[Union[str, Path]] = None,
    step: Optional[str] = None,
) -> Optional[Path]:
    """Run tools/tune_operating_point.py: ``output`` gets the config of ``weights``'
    calibrated operating point on ``dataset`` (``flags``: e.g. --dataset-root; ``opts``: the
    run's config overrides). None when no point scored above predicting no lesion (the
    tuner's exit 1 with its trials file saying ``"best": null``): the caller evaluates the
    config's own point and says it is not calibrated. Any other failure of the tuner (a crash
    exits 1 too) raises. ``output`` and its trials file are the driver's: an earlier run's are
    removed first, so that neither can stand in for this calibration."""
    output, trials_file = Path(output), Path(output).with_suffix(".json")
    for stale in (output, trials_file):
        stale.unlink(missing_ok=True)
    try:
        run_tool(
            [
                "-m",
                TUNE_MODULE,
                "--config-file",
                config,
                "--weights",
                weights,
                *flags,
                "--dataset",
                dataset,
                "--output",
                output,
                *(["--cache", cache] if cache else []),
                "--objective",
                objective,
                "--init-points",
                trials[0],
                "--n-iter",
                trials[1],
                "--seed",
                seed,
                *opts,
            ],
            env,
            step=step,
        )
    except subprocess.CalledProcessError as e:
        found_nothing = trials_file.is_file() and read_json(trials_file).get("best", 0) is None
        if e.returncode != EXIT_PARTIAL or not found_nothing:
            raise
        print(f"=== {step or 'calibration'}: nothing to calibrate, the config's own point is used")
        return None
    return Path(output)


def evaluate_checkpoint(
    config: Union[str, Path],
    weights: Union[str, Path],
    out_dir: Union[str, Path],
    env: Optional[Mapping[str, str]] = None,
    opts: Sequence = (),
    dataset: str = "pwml_test",
    step: Optional[str] = None,
) -> Dict[str, float]:
    """Evaluate ``weights`` with ``config`` on ``dataset`` (train_net --eval-only into
    ``out_dir``); the evaluator's figures, read back from its CSVs (eval-only keeps no
    metrics.json), with the 3-D lesion counts."""
    run_tool(
        [
            "-m",
            TRAIN_NET_MODULE,
            "--eval-only",
            "--config-file",
            config,
            *opts,
            "MODEL.WEIGHTS",
            weights,
            "DATASETS.TEST",
            f"('{dataset}',)",
            "OUTPUT_DIR",
            out_dir,
        ],
        env,
        step=step,
    )
    inference = Path(out_dir) / "inference" / dataset
    results = pooled_results([inference / "pwml_slices.csv"])
    results.update(lesion3d_results(inference / "pwml_subjects.csv"))
    return results
