"""Which inference a run uses (flip TTA, checkpoints, votes) and whether its operating point
was calibrated with the same.

Why: the score threshold (and CRF) a config carries is calibrated on the scores of one
inference. Flip TTA keeps only lesions both views detect, and a fold ensemble averages
several models, so a threshold calibrated without them is the wrong one with them: row E,
calibrated without TTA, scored strict Dice 0.188 on unseen slices as calibrated and 0.085
with rsrcnn-predict's flip TTA switched on. tools/tune_operating_point.py records what it
calibrated with (``TEST.CALIBRATED_WITH``); every tool that predicts logs what it runs
(`describe_inference`) and warns when the two differ (`calibration_mismatch`).
"""

import logging
from dataclasses import dataclass
from typing import Optional

from .ensemble import LesionEnsemble

__all__ = [
    "InferenceSettings",
    "calibrated_with",
    "calibration_record",
    "calibration_mismatch",
    "describe_inference",
    "log_inference",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceSettings:
    """``flip_tta``: horizontal-flip TTA; ``models``: checkpoints ensembled; ``votes``: members
    (checkpoints x views) that must detect a lesion to keep it (1 for one plain model)."""

    flip_tta: bool
    models: int
    votes: int

    @property
    def members(self) -> int:
        return self.models * (2 if self.flip_tta else 1)

    @classmethod
    def of_model(cls, model) -> "InferenceSettings":
        """What ``model`` runs: a `LesionEnsemble`'s flip, models, votes; else one plain model."""
        if isinstance(model, LesionEnsemble):
            return cls(model.flip, len(model.models), int(model.min_votes))
        return cls(False, 1, 1)

    def __str__(self) -> str:
        tta = "on" if self.flip_tta else "off"
        models = "1 model" if self.models == 1 else f"{self.models} models"
        if self.members == 1:
            return f"flip TTA {tta}, {models}, no ensemble vote"
        return f"flip TTA {tta}, {models}, ensemble votes {self.votes} of {self.members} members"


def calibrated_with(cfg) -> Optional[InferenceSettings]:
    """The inference ``cfg``'s operating point was calibrated with; None if it was not."""
    record = cfg.TEST.CALIBRATED_WITH
    if int(record.MODELS) <= 0:
        return None
    return InferenceSettings(bool(record.FLIP_TTA), int(record.MODELS), int(record.VOTES))


def calibration_record(cfg, settings: InferenceSettings) -> dict[str, dict]:
    """The TEST keys a tuned config writes: the inference to run (TEST.FLIP_TTA, and
    ``cfg``'s TEST.ENSEMBLE_MIN_VOTES when members vote) and the record of it."""
    test = {"FLIP_TTA": bool(settings.flip_tta)}
    if settings.members > 1:
        test["ENSEMBLE_MIN_VOTES"] = int(cfg.TEST.ENSEMBLE_MIN_VOTES)
    record = {
        "MODELS": int(settings.models),
        "FLIP_TTA": bool(settings.flip_tta),
        "VOTES": int(settings.votes),
    }
    return {"TEST": {**test, "CALIBRATED_WITH": record}}


def calibration_mismatch(cfg, running: InferenceSettings) -> Optional[str]:
    """A warning when ``running`` is not the inference ``cfg`` was calibrated with, else None."""
    calibrated = calibrated_with(cfg)
    if calibrated is None or calibrated == running:
        return None
    return (
        f"the operating point (MODEL.ROI_HEADS.SCORE_THRESH_TEST "
        f"{cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST:g}) was calibrated with {calibrated}, "
        f"this run uses {running}: the threshold was chosen for other scores (calibrate again "
        "with tools/tune_operating_point.py and the same settings, or run as calibrated)"
    )


def describe_inference(cfg, running: InferenceSettings, source: str) -> str:
    """One line: what runs, where the TTA choice came from, and the calibration it matches."""
    calibrated = calibrated_with(cfg)
    if calibrated is None:
        tail = "operating point not calibrated (no TEST.CALIBRATED_WITH)"
    elif calibrated == running:
        tail = "as the operating point was calibrated"
    else:
        tail = f"NOT as the operating point was calibrated ({calibrated})"
    tta, _, rest = str(running).partition(", ")
    return f"inference: {tta} ({source}), {rest}; {tail}"


def log_inference(cfg, running: InferenceSettings, source: str = "from the config") -> None:
    """Log `describe_inference`'s line, and `calibration_mismatch`'s warning if any."""
    logger.info(describe_inference(cfg, running, source))
    mismatch = calibration_mismatch(cfg, running)
    if mismatch:
        logger.warning(mismatch)
