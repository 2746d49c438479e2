"""What a run folder was trained with, so that a driver never reuses a result made otherwise.

A sweep re-run with other options (80 iterations where the folder holds 40, row E
where it holds row B, another cohort) must not report the old run as "finished
earlier" under the new options, nor resume its checkpoint into a mix. Each run
folder records ``run_options.json`` before training starts: the fully merged
config (every key, as ``train_net`` will see it, without OUTPUT_DIR) and the
dataset roots it was registered from. A folder trained before these records
existed is judged by detectron2's own ``config.yaml`` dump (config keys only).

Only keys present on both sides are compared: a key added by a later release
(with a default that keeps the old behaviour) does not make every earlier run
stale, while any value that differs does.
"""

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import yaml

from ..data.errors import PWMLDataError
from ..data.fileio import atomic_write_json, json_safe, read_json

__all__ = [
    "RUN_OPTIONS_FILE",
    "StaleRunError",
    "asked_options",
    "recorded_options",
    "option_differences",
    "stale_options",
    "check_run_dir",
    "claim_run_dir",
    "set_aside",
]

RUN_OPTIONS_FILE = "run_options.json"
_SHOWN = 5  # differing keys named in the error
# where the run is computed, not what: a CPU run resumed on a GPU is the same experiment
_MACHINE_KEYS = ("MODEL.DEVICE",)
# filled in by train_net from the training slices when left empty (data/slice_geometry.py)
_FILLED_BY_TRAINING = ("INPUT.TRAIN_SLICE_SIZE", "INPUT.TRAIN_SLICE_SPACING")


class StaleRunError(PWMLDataError):
    """A run folder holds a run trained with other options (exit 2, bad arguments/output)."""


def _config_tree(text: str) -> dict:
    tree = yaml.safe_load(text) or {}
    tree.pop("OUTPUT_DIR", None)
    return tree


def _cohort_content(root: Path) -> Optional[str]:
    """sha256 of a prepared root's ``splits.json`` and ``conversion.json``: which subjects
    each split and fold holds, and how they were converted. None if it is not prepared."""
    if not (root / "splits.json").is_file():
        return None
    digest = hashlib.sha256()
    for name in ("splits.json", "conversion.json"):
        if (root / name).is_file():
            digest.update((root / name).read_bytes())
    return digest.hexdigest()


def _dataset_roots(roots: Sequence) -> list[dict]:
    """``[{"root", "content"}]`` of the cohorts the training child registers (`DatasetRoot`s or
    ``[NAME=]DIR`` specs)."""
    from ..data.register import DatasetRoot

    folders = [str(DatasetRoot.parse(r).folder) for r in roots]
    return [{"root": d, "content": _cohort_content(Path(d))} for d in folders]


def _weights_file(path: str) -> Optional[dict]:
    """Size and modification time of a local MODEL.WEIGHTS file: the same path trained again
    (a re-run pre-training) is other weights."""
    if not path or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def asked_options(config: Union[str, Path], opts: Sequence = (), roots: Sequence = ()) -> dict:
    """The options a run is about to be trained with: ``{"config": merged config tree,
    "dataset_roots": [{"root", "content"}], "weights_file": size and time of MODEL.WEIGHTS}``
    (the roots: the cohorts handed to train_net as ``--dataset-root``, each with its splits'
    content key). JSON-safe (no NaN or inf)."""
    from ..config import get_rsrcnn_cfg

    cfg = get_rsrcnn_cfg(str(config), [str(o) for o in opts])
    asked = {
        "config": _config_tree(cfg.dump()),
        "dataset_roots": _dataset_roots(roots),
        "weights_file": _weights_file(cfg.MODEL.WEIGHTS),
    }
    return json_safe(asked)


def recorded_options(run_dir: Union[str, Path]) -> Optional[dict]:
    """What ``run_dir`` was trained with (`asked_options`' form), or None for a fresh folder.

    Folders of earlier releases: their ``config.yaml`` (detectron2's dump), roots unknown;
    none for a folder that only evaluated another run's weights (``weights_of``).
    """
    run_dir = Path(run_dir)
    if (run_dir / RUN_OPTIONS_FILE).is_file():
        return read_json(run_dir / RUN_OPTIONS_FILE)
    result = run_dir / "result.json"
    if result.is_file() and "weights_of" in read_json(result):
        return None  # another run's weights evaluated here: that run is the one judged
    dump = run_dir / "config.yaml"
    if not dump.is_file():
        return None
    try:
        return {"config": _config_tree(dump.read_text()), "dataset_roots": None}
    except (OSError, yaml.YAMLError) as e:
        raise PWMLDataError(dump, f"cannot read the run's config ({e})") from e


def _flat(tree, prefix: str = "") -> dict[str, object]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def option_differences(recorded: dict, asked: dict) -> list[str]:
    """``["SOLVER.MAX_ITER: 40 here, 80 asked", ...]`` over the keys both sides have (the
    device, and training geometry asked as empty = to be recorded by train_net, aside)."""
    old, new = _flat(recorded.get("config", {})), _flat(asked.get("config", {}))

    def differs(k):
        if k not in new or k in _MACHINE_KEYS or (k in _FILLED_BY_TRAINING and not new[k]):
            return False
        return old[k] != new[k]

    keys = [k for k in sorted(old) if differs(k)]
    diffs = [f"{k}: {old[k]!r} here, {new[k]!r} asked" for k in keys]
    # cohorts by content, not path: a moved output folder is the same cohort, a re-prepared
    # one with other splits is not (folders of earlier releases recorded no content: skipped)
    before, now = recorded.get("dataset_roots"), asked.get("dataset_roots") or []
    if isinstance(before, list) and all(isinstance(r, dict) for r in before):
        if [r.get("content") for r in before] != [r.get("content") for r in now]:
            diffs.append(
                f"dataset content: {', '.join(r['root'] for r in before) or 'none'} here, "
                f"{', '.join(r['root'] for r in now) or 'none'} asked (splits or conversion differ)"
            )
    weights = recorded.get("weights_file")
    if weights is not None and weights != asked.get("weights_file"):
        diffs.append("MODEL.WEIGHTS: the file was written again since this run started")
    return diffs


def _label(run_dir: Path, what: str) -> str:
    return f"{what} ({run_dir})" if what else str(run_dir)


def stale_options(run_dir: Union[str, Path], asked: dict) -> list[str]:
    """How what ``run_dir`` holds differs from ``asked`` (`option_differences`); [] for a
    fresh folder or the same options."""
    recorded = recorded_options(run_dir)
    return option_differences(recorded, asked) if recorded is not None else []


def check_run_dir(
    run_dir: Union[str, Path],
    asked: dict,
    what: str = "",
    cure: str = "--retrain trains it again (the old run is kept beside it)",
) -> list[str]:
    """The differences between what ``run_dir`` holds and ``asked`` (none for a fresh
    folder); `StaleRunError` naming ``what`` (e.g. "fold 0"), the differing keys and
    ``cure`` when there are any. Nothing is written."""
    run_dir = Path(run_dir)
    diffs = stale_options(run_dir, asked)
    if diffs:
        more = f" and {len(diffs) - _SHOWN} more" if len(diffs) > _SHOWN else ""
        raise StaleRunError(
            _label(run_dir, what),
            f"was trained with other options ({'; '.join(diffs[:_SHOWN])}{more}); its results "
            f"are not reused: {cure}, or choose a new output folder",
        )


def set_aside(run_dir: Path) -> Path:
    """Move a run folder trained otherwise to ``<run_dir>.replaced-<UTC time>`` (nothing is
    deleted); the new name."""
    aside = run_dir.with_name(
        f"{run_dir.name}.replaced-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    if aside.exists():  # set aside twice within a second
        aside = aside.with_name(f"{aside.name}-{time.time_ns()}")
    run_dir.rename(aside)
    return aside


def claim_run_dir(
    run_dir: Union[str, Path],
    asked: dict,
    retrain: bool = False,
    what: str = "",
    log=print,
) -> None:
    """Make ``run_dir`` a folder for a run with the ``asked`` options, and record them.

    A folder trained with other options is refused (`check_run_dir`) unless
    ``retrain``: then the old folder is moved aside to ``<run_dir>.replaced-<UTC
    time>`` (nothing deleted) and the run starts afresh.
    """
    run_dir = Path(run_dir)
    try:
        check_run_dir(run_dir, asked, what)
    except StaleRunError:
        if not retrain:
            raise
        aside = set_aside(run_dir)
        log(
            f"{_label(run_dir, what)}: trained with other options, moved to {aside}; training again"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_dir / RUN_OPTIONS_FILE
    if (run_dir / "result.json").is_file():
        return  # a finished run's files are left as they are (earlier releases: no record)
    if not record.is_file() or read_json(record) != asked:
        atomic_write_json(record, asked)
