"""One training run through tools/train_net.py, resumable and recorded once finished.

A run folder holds detectron2's usual output plus ``result.json``, written
(atomically) only after training and the final evaluation are done. A folder
with ``result.json`` is skipped; one without it is resumed from its last
checkpoint, so an interrupted sweep loses at most one checkpoint period.
"""
import subprocess
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

from ..data.fileio import atomic_write_json, read_json
from .results import read_eval_results

__all__ = ["finished_result", "train_and_record", "run_tool", "trained_weights", "TOOLS",
           "TRAIN_NET", "TINY_ROW_CONFIGS"]

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
TRAIN_NET = TOOLS / "train_net.py"
RESULT_FILE = "result.json"
_TINY = REPO / "configs" / "PWML-Tiny"
# the CPU-sized configs of Table 1's rows, used by the experiment scripts
TINY_ROW_CONFIGS = {
    "B": _TINY / "B_mask_rcnn_R_18_FPN.yaml",
    "C": _TINY / "C_hrpn_expand_R_18_FPN.yaml",
    "D": _TINY / "D_hrpn_lrsnet_R_18_FPN.yaml",
    "E": _TINY / "E_rsrcnn_R_18_FPN.yaml",
}


def run_tool(args: Sequence, env: Optional[Mapping[str, str]] = None) -> None:
    """Run a project tool (``[script, *arguments]``) with this interpreter; raise if it fails."""
    print("$ " + " ".join(str(a) for a in args), flush=True)
    subprocess.run([sys.executable, *map(str, args)], check=True,
                   env=None if env is None else dict(env))


def trained_weights(run_dir: Union[str, Path]) -> Path:
    """The weights a run's final evaluation used: ``model_best.pth`` (lowest validation
    loss) where training kept one, else ``model_final.pth``."""
    best = Path(run_dir) / "model_best.pth"
    return best if best.is_file() else Path(run_dir) / "model_final.pth"


def finished_result(run_dir: Union[str, Path]) -> Optional[Dict]:
    """The recorded result of a finished run, or None if the run has not finished."""
    path = Path(run_dir) / RESULT_FILE
    return read_json(path) if path.exists() else None


def train_and_record(config: Union[str, Path], run_dir: Union[str, Path], opts: Sequence = (),
                     env: Optional[Mapping[str, str]] = None, log_file: Optional[Path] = None,
                     keep_checkpoints: bool = False, flags: Sequence = ()) -> Dict:
    """Train (or resume) ``config`` into ``run_dir``; return {"config", "opts", "results"}.

    ``opts`` are train_net's trailing KEY VALUE overrides; OUTPUT_DIR is set here.
    ``flags`` are train_net options that go before them (``--dataset-root``, ``--num-gpus``).
    The final evaluation (DATASETS.TEST) must be PWML's. Intermediate checkpoints
    are deleted once the run is recorded unless ``keep_checkpoints``;
    ``model_final.pth`` and ``model_best.pth`` stay.
    """
    run_dir = Path(run_dir).absolute()
    done = finished_result(run_dir)
    if done is not None:
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    opts = [str(o) for o in opts]
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(config), "--resume",
           *map(str, flags), *opts, "OUTPUT_DIR", str(run_dir)]
    if log_file is None:
        proc = subprocess.run(cmd, env=None if env is None else dict(env))
    else:
        with open(log_file, "a") as log:
            proc = subprocess.run(cmd, env=None if env is None else dict(env), stdout=log,
                                  stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        where = f"; see {log_file}" if log_file else ""
        raise RuntimeError(f"training in {run_dir} failed (exit {proc.returncode}){where}")
    record = {"config": str(config), "opts": opts,
              "results": read_eval_results(run_dir / "metrics.json")}
    atomic_write_json(run_dir / RESULT_FILE, record)
    if not keep_checkpoints:
        for ckpt in run_dir.glob("model_0*.pth"):
            ckpt.unlink()
    return record
