"""Each training run's health verdict (train_net's ``health.json``), as the drivers' tables show it.

A seed or fold whose heads never trained, or whose kept weights predict nothing, must
be visible in every summary, not only in its log.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

from ..data.fileio import read_json
from ..engine.health import HEALTH_FILE

__all__ = ["read_health", "health_cell", "health_line", "HEALTH_NOTE"]

HEALTH_NOTE = (
    "health: train_net's verdict (ok; heads_never_trained: no proposal ever matched a lesion, "
    "the box and mask heads never learned; no_predictions: the kept weights leave most "
    "validation lesion slices empty), the iteration of the heads' first foreground ROI, the "
    "share of iterations with one where below half, and the iteration of model_best.pth"
)


def read_health(run_dir: Union[str, Path]) -> Optional[dict]:
    """A run's health.json, or None (a run trained before health reports, or not finished)."""
    path = Path(run_dir) / HEALTH_FILE
    return read_json(path) if path.is_file() else None


def health_cell(health: Optional[dict]) -> str:
    """``ok (heads 106, best 449)``; a verdict other than ok in bold; ``–`` when unknown;
    ``heads in 48% of iterations`` when they had a foreground ROI in less than half;
    ``below the final weights`` when health.json warns that model_best.pth is."""
    if not health:
        return "–"
    verdict = health["verdict"]
    first = health.get("first_foreground_iteration")
    best = (health.get("best_checkpoint") or {}).get("iteration")
    where = ["heads never" if first is None else f"heads {first}"]
    if health.get("heads_idle"):
        where.append(f"heads in {health['foreground_share']:.0%} of iterations")
    where.append("final weights" if best is None else f"best {best}")
    if health.get("warning"):  # the kept weights clearly below the final ones on validation
        where.append("below the final weights")
    shown = verdict if verdict == "ok" else f"**{verdict}**"
    return f"{shown} ({', '.join(where)})"


def health_line(healths: Mapping[str, Optional[dict]]) -> str:
    """One sentence over named runs: how many are ok, every other one by name, the ok ones
    whose heads had a foreground ROI in less than half of the iterations, and those whose
    kept checkpoint validates clearly below their final weights."""
    known = {name: h for name, h in healths.items() if h}
    ok = [name for name, h in known.items() if h["verdict"] == "ok"]
    bad = [f"{name}: {health_cell(h)}" for name, h in known.items() if h["verdict"] != "ok"]
    below = [name for name in ok if known[name].get("warning")]
    idle = [name for name in ok if known[name].get("heads_idle")]
    unknown = len(healths) - len(known)
    parts = [f"{len(ok)} of {len(healths)} runs ok"] + bad
    if idle:
        parts.append(
            f"{len(idle)} trained their heads in less than half of the iterations "
            f"({', '.join(idle)})"
        )
    if below:
        parts.append(
            f"{len(below)} kept a checkpoint (model_best.pth) whose validation Dice is clearly "
            f"below their final weights' ({', '.join(below)})"
        )
    if unknown:
        parts.append(f"{unknown} without a health report")
    return "Training health: " + "; ".join(parts) + "."
