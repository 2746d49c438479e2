"""Whether a training run learned to segment: the heads' first foreground ROI, warnings while
they have none, and ``OUTPUT_DIR/health.json`` with a verdict at the end.

The box and mask heads only learn from ROIs that overlap a lesion (IoU >= 0.5). With
the reference's sampler an image without such a proposal gives the heads no ROI at all,
so until the RPN finds lesions their losses are zero and they learn nothing; from a cold
start that can take most of a short run, or all of it. `HeadHealthHook` watches
detectron2's ``roi_head/num_fg_samples`` scalar, says when the heads start, warns every
``warn_period`` iterations while they have not, and after training writes the report
(`health_report`): the first foreground iteration, the best checkpoint's iteration, the
validation Dice of the best and the final weights and the share of validation lesion
slices they leave empty, and one of the `VERDICTS`.
"""

import logging
import math
import os
from typing import Optional

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..data.fileio import atomic_write_json

__all__ = ["HeadHealthHook", "health_verdict", "health_report", "HEALTH_FILE", "VERDICTS"]

logger = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
FOREGROUND_SCALAR = "roi_head/num_fg_samples"  # detectron2's ROIHeads, mean per image
# ok: the heads trained and the evaluated weights predict on the validation lesion slices;
# unvalidated: the heads trained, no validation set to check the predictions on
VERDICTS = ("ok", "heads_never_trained", "no_predictions", "unvalidated")
CURES = {
    "heads_never_trained": "no proposal ever overlapped a lesion at IoU >= 0.5, so the box and "
    "mask heads never trained: train longer (SOLVER.MAX_ITER), start from pre-trained weights "
    "(MODEL.WEIGHTS), or make the lesions larger at the network's input (INPUT.MIN_SIZE_TRAIN, "
    "INPUT.CROP_TO_HEAD)",
    "no_predictions": "the evaluated weights leave {empty:.0%} of the validation slices with "
    "lesions without any prediction: calibrate the score threshold "
    "(tools/tune_operating_point.py), train longer, or compare the final weights "
    "(model_final.pth, validation Dice {final:.3f})",
}


def health_verdict(
    first_foreground: Optional[int], empty_lesion_share: Optional[float], max_empty_share: float
) -> str:
    """The run's verdict, so that a run that trained nothing useful says so.

    Args:
        first_foreground: the heads' first foreground iteration (None: never).
        empty_lesion_share: the share of validation lesion slices the evaluated weights
            leave empty (None or NaN: not measured).
        max_empty_share: above this share the verdict is ``no_predictions``.

    Returns:
        One of `VERDICTS`.
    """
    if first_foreground is None:
        return "heads_never_trained"
    if empty_lesion_share is None or math.isnan(empty_lesion_share):
        return "unvalidated"
    return "no_predictions" if empty_lesion_share > max_empty_share else "ok"


def _defined(value):
    """JSON has no NaN: an undefined figure is null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def health_report(
    first_foreground: Optional[int],
    iterations: int,
    validation: Optional[dict],
    max_empty_share: float,
) -> dict:
    """The content of health.json.

    Args:
        first_foreground: the heads' first foreground iteration, all workers pooled (None: never).
        iterations: the run's length (``SOLVER.MAX_ITER``).
        validation: `ValidationLossHook.report`, or None without validation.
        max_empty_share: as `health_verdict`.

    Returns:
        A JSON-ready dict: ``verdict``, ``iterations``, ``first_foreground_iteration``,
        ``best_checkpoint``, ``validation`` (NaN written as None), plus ``cure`` for a bad
        verdict and ``warning`` when model_best.pth scores clearly below the final weights.
    """
    validation = dict(validation or {})
    evaluated = validation.get("evaluated", {})
    verdict = health_verdict(first_foreground, evaluated.get("empty_lesion_share"), max_empty_share)
    report = {
        "verdict": verdict,
        "iterations": iterations,
        "first_foreground_iteration": first_foreground,
        "best_checkpoint": validation.get("best_checkpoint"),
        "validation": {
            key: {k: _defined(v) for k, v in validation[key].items()}
            for key in ("best", "final", "evaluated")
            if key in validation
        }
        or None,
    }
    if verdict in CURES:
        final = validation.get("final", {}).get("dice", math.nan)
        report["cure"] = CURES[verdict].format(
            empty=evaluated.get("empty_lesion_share", math.nan), final=final
        )
    behind = _best_behind_final(validation)
    if behind:
        report["warning"] = behind
    return report


# validation Dice by which the final weights must beat model_best.pth to be worth a warning
BEST_BEHIND_FINAL = 0.1


def _best_behind_final(validation: dict) -> str:
    """A warning when the kept weights score clearly below the final ones on validation (the
    criterion chose heads that had barely started); "" otherwise."""
    best = (validation.get("best") or {}).get("dice", math.nan)
    final = (validation.get("final") or {}).get("dice", math.nan)
    if not final - best > BEST_BEHIND_FINAL:  # False for NaN too
        return ""
    criterion = (validation.get("best_checkpoint") or {}).get("criterion")
    return (
        f"model_best.pth ({criterion}) scores validation Dice {best:.3f}, the final weights "
        f"{final:.3f}: evaluate model_final.pth (MODEL.WEIGHTS) or select by "
        "SOLVER.BEST_CHECKPOINT val_dice"
    )


class HeadHealthHook(HookBase):
    """Tracks the heads' first foreground ROI; warns while there is none; writes health.json.

    Args:
        warn_period: iterations between warnings while the heads have no foreground ROI
            (0: never warn).
        output_dir: where health.json goes (None: the report is only logged and kept in
            ``report``).
        max_empty_share: as `health_verdict`.
        validation: the run's `ValidationLossHook` (or None): its ``report`` (set in its
            ``after_train``, which must run before this hook's) gives the validation figures.
    """

    def __init__(
        self,
        warn_period: int = 200,
        output_dir: Optional[str] = None,
        max_empty_share: float = 0.9,
        validation=None,
    ):
        self.warn_period, self.output_dir = warn_period, output_dir
        self.max_empty_share, self.validation = max_empty_share, validation
        self.first_foreground: Optional[int] = None
        self.report: Optional[dict] = None

    def update(self) -> None:
        """Record this iteration if it is the heads' first with a foreground ROI (idempotent)."""
        if self.first_foreground is not None:
            return
        value, iteration = self.trainer.storage.latest().get(FOREGROUND_SCALAR, (0.0, -1))
        if iteration == self.trainer.iter and value > 0:
            self.first_foreground = self.trainer.iter
            logger.info(
                "iteration %d: the box and mask heads had their first foreground ROI",
                self.trainer.iter,
            )

    def pooled_first_foreground(self) -> Optional[int]:
        """The earliest first-foreground iteration of all workers (call on every worker)."""
        self.update()
        seen = [i for i in comm.all_gather(self.first_foreground) if i is not None]
        return min(seen) if seen else None

    def after_step(self):
        self.update()
        done = self.trainer.iter + 1
        if self.first_foreground is None and self.warn_period > 0 and done % self.warn_period == 0:
            logger.warning(
                "iteration %d: the box and mask heads have had no foreground ROI yet (no "
                "proposal overlaps a lesion at IoU >= 0.5): they are not learning",
                self.trainer.iter,
            )

    def after_train(self):
        if self.trainer.iter < self.trainer.max_iter:  # stopped by an error: nothing to report
            return
        first = self.pooled_first_foreground()
        validation = getattr(self.validation, "report", None)
        self.report = health_report(first, self.trainer.max_iter, validation, self.max_empty_share)
        if not comm.is_main_process():
            return
        if self.output_dir:
            atomic_write_json(os.path.join(self.output_dir, HEALTH_FILE), self.report)
        if "cure" in self.report:
            logger.warning("training health: %s — %s", self.report["verdict"], self.report["cure"])
        else:
            logger.info("training health: %s", self.report["verdict"])
        if "warning" in self.report:
            logger.warning("training health: %s", self.report["warning"])

    def state_dict(self):
        return {"first_foreground": self.first_foreground}

    def load_state_dict(self, state):
        self.first_foreground = state.get("first_foreground")
