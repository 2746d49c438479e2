"""Periodic validation: the LR cut on a plateau and the best checkpoint (the reference's
schedule), and the validation figures of the best and the final weights.

The reference halves the LR when the validation RPN classification loss has not
improved by 1e-4 for 10 evaluations, and keeps the weights with the lowest *total*
validation loss (Keras' ModelCheckpoint on ``val_loss``): the two are separate
(``SOLVER.PLATEAU.MONITOR``, ``SOLVER.BEST_CHECKPOINT``; ``val_dice`` keeps the weights
with the highest validation Dice instead). No evaluation before the box and mask heads
have trained (`HeadHealthHook`), and no weights that leave the validation lesion slices
empty, can give ``model_best.pth``: the heads' losses are zero until they start and
small while they still predict nothing, so a loss alone would call such a model the best.
`ValidationLossHook` does all of it; its state (tracker, LR scale, best score) is saved
with every checkpoint, and it runs *before* detectron2's periodic checkpointer, so a
checkpoint written at an evaluation's iteration already holds that evaluation and
``--resume`` continues the same schedule.
"""

import logging
import math
import os
from collections.abc import Iterable
from typing import Callable, Optional

import torch
from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook, PeriodicCheckpointer
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from ..data.fileio import atomic_write
from ..solver import PlateauScale, PlateauTracker

__all__ = [
    "ValidationLossHook",
    "BEST_CRITERIA",
    "validation_losses",
    "insert_before_evaluation",
    "BEST_CHECKPOINT",
    "TOTAL_LOSS",
]

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "model_best.pth"
TOTAL_LOSS = "total_loss"
# SOLVER.BEST_CHECKPOINT: what makes model_best.pth ("": no best checkpoint)
BEST_CRITERIA = ("val_loss", "val_dice", "")


def validation_losses(model: torch.nn.Module, batches: Iterable) -> dict[str, float]:
    """Mean of each loss and of their sum (``total_loss``) over ``batches``, all workers pooled.

    ``model`` is the bare module (not a DDP wrapper: workers may hold different
    numbers of batches). It runs in training mode (losses need it) without gradients, and its
    event-storage writes go to a throw-away storage, so the training metrics are
    untouched. Norm layers are FrozenBN or GroupNorm in our configs, which keep
    no running statistics, so training mode changes nothing else.
    """
    was_training = model.training
    model.train()
    sums: dict[str, float] = {}
    count = 0
    try:
        with torch.no_grad(), EventStorage():
            for inputs in batches:
                losses = model(inputs)
                losses[TOTAL_LOSS] = sum(losses.values())
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * len(inputs)
                count += len(inputs)
    finally:
        model.train(was_training)
    pooled = comm.all_gather((sums, count))
    count = sum(c for _, c in pooled)
    if count == 0:
        raise ValueError("validation_losses: the validation loader yielded no images")
    names = pooled[0][0].keys()
    return {name: sum(s[name] for s, _ in pooled) / count for name in names}


class ValidationLossHook(HookBase):
    """Every ``period`` iterations: log the validation losses, cut the LR on a plateau of
    ``monitor``, and write ``model_best.pth`` whenever ``criterion`` reaches a new best.

    Heads that have not learned yet predict nothing, and their small losses make them
    look best: hence ``health``, ``head_iters`` and ``max_empty_share``. After training,
    ``report`` holds the validation figures that `HeadHealthHook` writes to health.json.

    Args:
        period: iterations between evaluations (and one at the last iteration).
        batches_fn: ``batches_fn() -> iterable of batches``, a fresh pass over the mapped,
            un-augmented validation inputs with their instances (the losses need them).
        scale: the scheduler's `PlateauScale`, lowered on a plateau (None to only log).
        tracker: the `PlateauTracker` that says when (default: patience 10, no delta).
        factor: what ``scale`` is multiplied by on a plateau.
        monitor: the loss (or ``total_loss``) whose plateau cuts the LR.
        output_dir: where ``model_best.pth`` goes (None: no best checkpoint).
        evaluate_best: load ``model_best.pth`` after training, so the final evaluation
            (detectron2's EvalHook, placed after this hook) scores it.
        criterion: one of `BEST_CRITERIA`; what makes ``model_best.pth``.
        dice_fn: ``dice_fn(model) -> dict`` (`validation_dice` over the validation set):
            scores the weights for ``val_dice`` at every evaluation, and the final and best
            weights after training (``report``); None skips them.
        health: the run's `HeadHealthHook`; no evaluation less than ``head_iters``
            iterations after the heads' first foreground ROI gives ``model_best.pth``.
        head_iters: see ``health``.
        max_empty_share: weights that would be the best are kept only if they leave at
            most this share of the validation slices with lesions without any prediction
            (``dice_fn`` tells).
    """

    def __init__(
        self,
        period: int,
        batches_fn: Callable[[], Iterable],
        scale: Optional[PlateauScale] = None,
        tracker: Optional[PlateauTracker] = None,
        factor: float = 0.5,
        monitor: str = "loss_rpn_cls",
        output_dir: Optional[str] = None,
        evaluate_best: bool = True,
        criterion: str = "val_loss",
        dice_fn: Optional[Callable[[torch.nn.Module], dict]] = None,
        health=None,
        head_iters: int = 0,
        max_empty_share: float = 1.0,
    ):
        if period < 1:
            raise ValueError(f"validation period must be >= 1, got {period}")
        if criterion not in BEST_CRITERIA:
            raise ValueError(
                f"SOLVER.BEST_CHECKPOINT must be one of {BEST_CRITERIA}, got {criterion!r}"
            )
        if criterion == "val_dice" and dice_fn is None:
            raise ValueError("SOLVER.BEST_CHECKPOINT val_dice needs the validation Dice (dice_fn)")
        self._period, self._batches_fn = period, batches_fn
        self.scale, self.tracker, self.factor = scale, tracker or PlateauTracker(), factor
        self.monitor, self.criterion = monitor, criterion
        self.output_dir, self.evaluate_best = output_dir, evaluate_best
        self.dice_fn, self.health, self.head_iters = dice_fn, health, head_iters
        self.max_empty_share = max_empty_share
        self.lowest = math.inf  # the best score so far; lower is better (val_dice: -Dice)
        self.best_iteration: Optional[int] = None
        self.best_dice: Optional[dict] = None  # dice_fn's figures of model_best, when known
        self.final_dice: Optional[dict] = None
        self.report: Optional[dict] = None

    @property
    def best_path(self) -> Optional[str]:
        """``output_dir/model_best.pth``, or None without an output folder."""
        return os.path.join(self.output_dir, BEST_CHECKPOINT) if self.output_dir else None

    def before_train(self):
        """Delete an earlier run's ``model_best.pth`` on a fresh start; keep its score on resume."""
        path = self.best_path
        if (
            self.trainer.start_iter == 0
            and path
            and os.path.isfile(path)
            and comm.is_main_process()
        ):
            # this program's own file from an earlier run in this folder: never this run's best
            os.remove(path)
            logger.info("removed %s of an earlier run in this folder", path)
        # a resumed run keeps a best checkpoint written after its last periodic checkpoint
        if self.trainer.start_iter > 0 and path and os.path.isfile(path):
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("criterion", self.criterion) == self.criterion:
                score = saved.get("score", saved.get("validation_loss", math.inf))
                if float(score) < self.lowest:
                    self.lowest, self.best_iteration = float(score), saved.get("iteration")

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            self.evaluate()

    def _heads_trained(self) -> bool:
        if self.health is None:
            return True
        first = self.health.pooled_first_foreground()  # every worker: a collective call
        return first is not None and self.trainer.iter - first >= self.head_iters

    def evaluate(self) -> float:
        """One validation: losses, the LR cut, model_best.pth; returns the monitored loss."""
        # the bare module: a DDP wrapper would broadcast buffers at every forward, and
        # workers holding different numbers of validation batches would wait forever
        model = self.trainer.model
        model = getattr(model, "module", model)
        losses = validation_losses(model, self._batches_fn())
        if self.monitor not in losses:
            raise KeyError(
                f"SOLVER.PLATEAU.MONITOR {self.monitor!r} is not a loss of this model; "
                f"choose one of {sorted(losses)}"
            )
        storage = self.trainer.storage
        storage.put_scalar("validation_loss", losses[TOTAL_LOSS], smoothing_hint=False)
        if self.monitor != TOTAL_LOSS:
            storage.put_scalar(
                f"validation_{self.monitor}", losses[self.monitor], smoothing_hint=False
            )
        last = self.trainer.iter + 1 == self.trainer.max_iter
        dice = None
        if self.dice_fn is not None and (self.criterion == "val_dice" or last):
            dice = self._dice(model)
            if last:
                self.final_dice = dict(dice, iteration=self.trainer.iter)
        value = losses[self.monitor]
        if self.scale is not None and self.tracker.update(value):
            self.scale.scale *= self.factor
            logger.info(
                "validation %s has not improved for %d evaluations (best %.4f): "
                "LR multiplier now %.4g",
                self.monitor,
                self.tracker.patience,
                self.tracker.best,
                self.scale.scale,
            )
        if self.criterion:
            score = -dice["dice"] if self.criterion == "val_dice" else losses[TOTAL_LOSS]
            if score < self.lowest and self._heads_trained():
                if dice is None and self.dice_fn is not None:
                    dice = self._dice(model)
                if self._predicts(dice, score):
                    self.lowest, self.best_iteration = score, self.trainer.iter
                    self.best_dice = dice
                    self._save_best(score)
        return value

    def _dice(self, model: torch.nn.Module) -> dict:
        """``dice_fn``'s figures of the current weights, logged as ``validation_dice``."""
        dice = self.dice_fn(model)
        self.trainer.storage.put_scalar("validation_dice", dice["dice"], smoothing_hint=False)
        return dice

    def _predicts(self, dice: Optional[dict], score: float) -> bool:
        """Whether weights that would be the best predict on the validation lesion slices
        (unknown without ``dice_fn``: then they count as predicting)."""
        empty = math.nan if dice is None else dice["empty_lesion_share"]
        if math.isnan(empty) or empty <= self.max_empty_share:
            return True
        logger.info(
            "validation %s would be the best so far, but these weights leave %.0f%% of the "
            "validation slices with lesions without any prediction: not kept as %s",
            _shown(self.criterion, score),
            100 * empty,
            BEST_CHECKPOINT,
        )
        return False

    def _save_best(self, score: float) -> None:
        if self.best_path is None or not comm.is_main_process():
            return
        model = self.trainer.model
        model = getattr(model, "module", model)  # DDP
        state = {
            "model": model.state_dict(),
            "iteration": self.trainer.iter,
            "criterion": self.criterion,
            "score": score,  # lower is better: the total loss, or -Dice
        }
        form = getattr(getattr(self.trainer, "checkpointer", None), "input_form", None)
        if form:  # rsrcnn_d2.checkpoint: what a checked load compares
            state["input_form"] = form
        atomic_write(self.best_path, lambda tmp: torch.save(state, tmp))
        logger.info(
            "validation %s is the best so far: saved %s (iteration %d)",
            _shown(self.criterion, score),
            self.best_path,
            self.trainer.iter,
        )

    def after_train(self):
        finished = self.trainer.iter >= self.trainer.max_iter
        has_best = False
        if self.best_path:
            comm.synchronize()  # every worker, before any looks for the file the main one writes
            has_best = os.path.isfile(self.best_path) and self.best_iteration is not None
        if has_best and self.evaluate_best:
            from ..checkpoint import load_model_weights

            model = self.trainer.model
            model = getattr(model, "module", model)
            load_model_weights(model, self.best_path)  # our own file: must fit
            logger.info(
                "final evaluation uses %s (iteration %d, %s)",
                self.best_path,
                self.best_iteration,
                self.criterion,
            )
            if finished and self.dice_fn is not None and self.best_dice is None:
                final = self.final_dice or {}
                same = final.get("iteration") == self.best_iteration
                self.best_dice = final if same else self.dice_fn(model)
        elif self.best_path and self.criterion and finished:
            logger.warning(
                "no validation after the heads had trained gave %s (they started too late): "
                "the final evaluation uses the final weights",
                BEST_CHECKPOINT,
            )
        if finished:
            self.report = self._report(has_best, has_best and self.evaluate_best)

    def _report(self, has_best: bool, evaluates_best: bool) -> dict:
        """What health.json says of validation: the best, final and evaluated weights' figures."""
        report = {
            "best_checkpoint": {
                "criterion": self.criterion or None,
                "iteration": self.best_iteration if has_best else None,
                "file": BEST_CHECKPOINT if has_best else None,
            }
        }
        if self.final_dice is None:  # no validation Dice (no dice_fn)
            return report
        figures = ("dice", "empty_lesion_share")
        report["final"] = {k: self.final_dice[k] for k in figures}
        if has_best and self.best_dice is not None:
            report["best"] = {k: self.best_dice[k] for k in figures}
        report["evaluated"] = report["best"] if evaluates_best else report["final"]
        return report

    def state_dict(self):
        state = {
            "tracker": self.tracker.state_dict(),
            "lowest": self.lowest,
            "best_iteration": self.best_iteration,
        }
        if self.scale is not None:
            state["scale"] = self.scale.state_dict()
        return state

    def load_state_dict(self, state):
        self.tracker.load_state_dict(state["tracker"])
        self.lowest = float(state.get("lowest", math.inf))
        self.best_iteration = state.get("best_iteration")
        if self.scale is not None and "scale" in state:
            self.scale.load_state_dict(state["scale"])


def _shown(criterion: str, score: float) -> str:
    return f"Dice {-score:.4f}" if criterion == "val_dice" else f"total loss {score:.4f}"


def insert_before_evaluation(hooks: list[HookBase], hook: HookBase) -> list[HookBase]:
    """Put ``hook`` immediately before detectron2's EvalHook (last without one), with the periodic
    checkpointer between them; returns ``hooks``, changed in place.

    Hooks that talk to all workers (this one, EvalHook, PreciseBN) must run in the same order on
    every rank or the workers wait on each other forever. The main process holds two more hooks
    (checkpointer, writer), so a position counted from either end differs between ranks, while
    EvalHook is on every rank. Before the checkpointer, ``hook``'s state is in a checkpoint written
    at an evaluation's iteration; before EvalHook, the final evaluation scores model_best.
    """
    checkpointers = [h for h in hooks if isinstance(h, PeriodicCheckpointer)]  # main process only
    others = [h for h in hooks if not isinstance(h, PeriodicCheckpointer)]
    at = next((i for i, h in enumerate(others) if isinstance(h, EvalHook)), len(others))
    hooks[:] = others[:at] + [hook] + checkpointers + others[at:]
    return hooks
