"""Whether a training run learned to segment: the heads' first foreground ROI, warnings while
they have none, and ``OUTPUT_DIR/health.json`` with a verdict at the end.

The box and mask heads only learn from ROIs that overlap a lesion (IoU >= 0.5). With
the reference's sampler an image without such a proposal gives the heads no ROI at all,
so until the RPN finds lesions their losses are zero and they learn nothing; from a cold
start that can take most of a short run, or all of it. `HeadHealthHook` watches
detectron2's ``roi_head/num_fg_samples`` scalar, says when the heads start, warns every
``warn_period`` iterations while they have not, and after training writes the report
(`health_report`): the first foreground iteration, the share of iterations in which the heads
had a foreground ROI, the best checkpoint's iteration, the validation Dice of the best and
the final weights and the share of validation lesion slices they leave empty, and one of the
`VERDICTS`.

A first foreground ROI does not mean the heads train from then on: with a freshly initialised
RPN classifier a lucky proposal can reach them at iteration 6 and the next steady ones only
hundreds of iterations later. Hence the share, a warning for every ``warn_period`` window in
which the heads had a foreground ROI in less than half of the iterations, and one in the
report when that holds for the whole run (`HEADS_IDLE_SHARE`).
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
    foreground_iterations: Optional[float] = None,
) -> dict:
    """The content of health.json.

    Args:
        first_foreground: the heads' first foreground iteration, all workers pooled (None: never).
        iterations: the run's length (``SOLVER.MAX_ITER``).
        validation: `ValidationLossHook.report`, or None without validation.
        max_empty_share: as `health_verdict`.
        foreground_iterations: in how many iterations the heads had a foreground ROI (mean
            over workers; None: not counted).

    Returns:
        A JSON-ready dict: ``verdict``, ``iterations``, ``first_foreground_iteration``,
        ``foreground_share``, ``best_checkpoint``, ``validation`` (NaN written as None), plus
        ``cure`` for a bad verdict, ``warning`` when model_best.pth scores clearly below the
        final weights and ``heads_idle`` when the heads had a foreground ROI in less than half
        of the iterations.
    """
    validation = dict(validation or {})
    evaluated = validation.get("evaluated", {})
    verdict = health_verdict(first_foreground, evaluated.get("empty_lesion_share"), max_empty_share)
    report = {
        "verdict": verdict,
        "iterations": iterations,
        "first_foreground_iteration": first_foreground,
        "foreground_share": foreground_share(foreground_iterations, iterations),
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
    idle = _heads_idle(foreground_iterations, iterations)
    if idle:
        report["heads_idle"] = idle
    return report


# validation Dice by which the final weights must beat model_best.pth to be worth a warning
BEST_BEHIND_FINAL = 0.1
# below this share of iterations with a foreground ROI, the heads trained for less than half a run
HEADS_IDLE_SHARE = 0.5


def foreground_share(foreground_iterations: Optional[float], iterations: int) -> Optional[float]:
    """The share of a run's iterations in which the heads had a foreground ROI (None: unknown)."""
    if foreground_iterations is None or iterations <= 0:
        return None
    return foreground_iterations / iterations


def _heads_idle(foreground_iterations: Optional[float], iterations: int) -> str:
    """A warning when the heads had a foreground ROI in less than `HEADS_IDLE_SHARE` of the
    iterations; "" otherwise (or when unknown)."""
    share = foreground_share(foreground_iterations, iterations)
    if share is None or share >= HEADS_IDLE_SHARE:
        return ""
    return (
        f"the box and mask heads had a foreground ROI in {foreground_iterations:g} of {iterations} "
        f"iterations ({share:.1%}): for most of the run only the RPN learned; train longer "
        "(SOLVER.MAX_ITER) or start from weights whose RPN already finds lesions (MODEL.WEIGHTS)"
    )


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
    """Tracks the heads' foreground ROIs; warns while they have none or few; writes health.json.

    Args:
        warn_period: the window, in iterations, of the warnings while the heads have no
            foreground ROI or have one in less than half of the window (0: never warn).
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
        # iterations with a foreground ROI, the whole run (None: unknown, resumed from a
        # checkpoint that did not count them)
        self.foreground_iterations: Optional[int] = 0
        self.window_foreground: Optional[int] = 0  # since the last warn_period boundary
        self._state_loaded = False
        self._counted = -1  # the last iteration counted (update() may run twice per step)
        self.report: Optional[dict] = None

    def update(self) -> None:
        """Count this iteration if the heads had a foreground ROI in it, and note the first
        such iteration (idempotent)."""
        value, iteration = self.trainer.storage.latest().get(FOREGROUND_SCALAR, (0.0, -1))
        if iteration != self.trainer.iter or iteration == self._counted:
            return
        self._counted = iteration
        if value <= 0:
            return
        if self.foreground_iterations is not None:
            self.foreground_iterations += 1
        if self.window_foreground is not None:
            self.window_foreground += 1
        if self.first_foreground is None:
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

    def before_train(self):
        # resumed from a checkpoint without this hook's state: what came before is unknown
        if self.trainer.start_iter > 0 and not self._state_loaded:
            self.foreground_iterations = self.window_foreground = None

    def pooled_foreground_iterations(self) -> Optional[float]:
        """The workers' mean count of iterations with a foreground ROI, None when a worker's
        is unknown (call on every worker)."""
        counts = comm.all_gather(self.foreground_iterations)
        return None if None in counts else sum(counts) / len(counts)

    def after_step(self):
        self.update()
        done = self.trainer.iter + 1
        if self.warn_period <= 0 or done % self.warn_period:
            return
        if self.first_foreground is None:
            logger.warning(
                "iteration %d: the box and mask heads have had no foreground ROI yet (no "
                "proposal overlaps a lesion at IoU >= 0.5): they are not learning",
                self.trainer.iter,
            )
        elif self.window_foreground is not None and self.window_foreground < self.warn_period / 2:
            logger.warning(
                "iteration %d: the box and mask heads had a foreground ROI in only %d of the "
                "last %d iterations: they are hardly learning",
                self.trainer.iter,
                self.window_foreground,
                self.warn_period,
            )
        self.window_foreground = 0

    def after_train(self):
        if self.trainer.iter < self.trainer.max_iter:  # stopped by an error: nothing to report
            return
        first = self.pooled_first_foreground()
        counted = self.pooled_foreground_iterations()
        validation = getattr(self.validation, "report", None)
        self.report = health_report(
            first, self.trainer.max_iter, validation, self.max_empty_share, counted
        )
        if not comm.is_main_process():
            return
        if self.output_dir:
            atomic_write_json(os.path.join(self.output_dir, HEALTH_FILE), self.report)
        if "cure" in self.report:
            logger.warning("training health: %s — %s", self.report["verdict"], self.report["cure"])
        else:
            logger.info("training health: %s", self.report["verdict"])
        for key in ("heads_idle", "warning"):
            if key in self.report:
                logger.warning("training health: %s", self.report[key])

    def state_dict(self):
        return {
            "first_foreground": self.first_foreground,
            "foreground_iterations": self.foreground_iterations,
            "window_foreground": self.window_foreground,
        }

    def load_state_dict(self, state):
        self.first_foreground = state.get("first_foreground")
        # a checkpoint from before the count: unknown, not taken for idle heads
        self.foreground_iterations = state.get("foreground_iterations")
        self.window_foreground = state.get("window_foreground")
        self._state_loaded = True
