"""Row A (the classical baseline) as an experiment run, beside rows B-E's.

Here rather than in `rsrcnn_d2.classical`: the run record (``result.json``) is the
experiments' format, and the classical package sits below them.
"""

from pathlib import Path
from typing import Optional, Union

from ..classical import ClassicalParams, tune_and_evaluate
from ..data.fileio import atomic_write_json
from .runner import RESULT_FILE, finished_result

__all__ = ["run_row_a"]


def run_row_a(
    tune_dataset: str,
    test_dataset: str,
    run_dir: Union[str, Path],
    *,
    seed: int = 0,
    start: Optional[ClassicalParams] = None,
    **kwargs,
) -> dict:
    """`tune_and_evaluate` as an experiment run: skipped when ``run_dir`` holds a result.

    Records ``result.json`` as `rsrcnn_d2.experiments.train_and_record` does for the
    networks ({"config": the tuned parameters file, "opts": [], "results": ...}), so
    the experiment tables read row A like rows B–E.
    """
    done = finished_result(run_dir)
    if done is not None:
        return done
    record = tune_and_evaluate(tune_dataset, test_dataset, run_dir, start, seed=seed, **kwargs)
    record = {
        "config": record["params"],
        "opts": [],
        "tuning": record["tuning"],
        "results": record["results"],
    }
    atomic_write_json(Path(run_dir) / RESULT_FILE, record)
    return record
