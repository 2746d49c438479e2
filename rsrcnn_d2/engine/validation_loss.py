"""Periodic validation loss: the LR cut on a plateau and the best checkpoint (the
reference's schedule).

The reference halves the LR when the validation RPN classification loss has not
improved by 1e-4 for 10 evaluations and keeps the weights with the lowest
validation loss. `ValidationLossHook` does both; its state (tracker, LR scale,
lowest loss) is saved with every checkpoint, and it runs *before* detectron2's
periodic checkpointer, so a checkpoint written at an evaluation's iteration
already holds that evaluation and ``--resume`` continues the same schedule.
"""

import logging
import math
import os
from typing import Callable, Dict, Iterable, List, Optional

import torch

from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook, PeriodicCheckpointer
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from ..data.fileio import atomic_write
from ..solver import PlateauScale, PlateauTracker

__all__ = [
    "ValidationLossHook",
    "validation_losses",
    "insert_before_evaluation",
    "BEST_CHECKPOINT",
    "TOTAL_LOSS",
]

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "model_best.pth"
TOTAL_LOSS = "total_loss"


def validation_losses(model: torch.nn.Module, batches: Iterable) -> Dict[str, float]:
    """Mean of each loss and of their sum (``total_loss``) over ``batches``, all workers pooled.

    ``model`` is the bare module (not a DDP wrapper: workers may hold different
    numbers of batches). It runs in training mode (losses need it) without gradients, and its
    event-storage writes go to a throw-away storage, so the training metrics are
    untouched. Norm layers are FrozenBN or GroupNorm in our configs, which keep
    no running statistics, so training mode changes nothing else.
    """
    was_training = model.training
    model.train()
    sums: Dict[str, float] = {}
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
    ``monitor``, and write ``model_best.pth`` whenever ``monitor`` reaches a new low.

    ``scale`` is the scheduler's PlateauScale (None to only log). With
    ``evaluate_best`` the model is loaded from ``model_best.pth`` after training, so
    the final evaluation (detectron2's EvalHook, placed after this hook) scores it.
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
    ):
        if period < 1:
            raise ValueError(f"validation period must be >= 1, got {period}")
        self._period, self._batches_fn = period, batches_fn
        self.scale, self.tracker, self.factor = scale, tracker or PlateauTracker(), factor
        self.monitor = monitor
        self.output_dir, self.evaluate_best = output_dir, evaluate_best
        self.lowest = math.inf

    @property
    def best_path(self) -> Optional[str]:
        return os.path.join(self.output_dir, BEST_CHECKPOINT) if self.output_dir else None

    def before_train(self):
        # a resumed run keeps a best checkpoint written after its last periodic checkpoint
        path = self.best_path
        if self.trainer.start_iter > 0 and path and os.path.isfile(path):
            saved = torch.load(path, map_location="cpu", weights_only=True)
            self.lowest = min(self.lowest, float(saved.get("validation_loss", math.inf)))

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            self.evaluate()

    def evaluate(self) -> float:
        # the bare module: a DDP wrapper would broadcast buffers at every forward, and
        # workers holding different numbers of validation batches would wait forever
        model = self.trainer.model
        losses = validation_losses(getattr(model, "module", model), self._batches_fn())
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
        if value < self.lowest:
            self.lowest = value
            self._save_best(value)
        return value

    def _save_best(self, value: float) -> None:
        if self.best_path is None or not comm.is_main_process():
            return
        model = self.trainer.model
        model = getattr(model, "module", model)  # DDP
        state = {
            "model": model.state_dict(),
            "iteration": self.trainer.iter,
            "validation_loss": value,
            "monitor": self.monitor,
        }
        atomic_write(self.best_path, lambda tmp: torch.save(state, tmp))
        logger.info(
            "validation %s %.4f is the lowest so far: saved %s (iteration %d)",
            self.monitor,
            value,
            self.best_path,
            self.trainer.iter,
        )

    def after_train(self):
        if not (self.evaluate_best and self.best_path):
            return
        comm.synchronize()  # every worker, before any looks for the file the main one writes
        if not os.path.isfile(self.best_path):
            return
        from ..checkpoint import load_model_weights

        model = self.trainer.model
        load_model_weights(
            getattr(model, "module", model), self.best_path
        )  # our own file: must fit
        logger.info("final evaluation uses %s (lowest validation %s)", self.best_path, self.monitor)

    def state_dict(self):
        state = {"tracker": self.tracker.state_dict(), "lowest": self.lowest}
        if self.scale is not None:
            state["scale"] = self.scale.state_dict()
        return state

    def load_state_dict(self, state):
        self.tracker.load_state_dict(state["tracker"])
        self.lowest = float(state.get("lowest", math.inf))
        if self.scale is not None and "scale" in state:
            self.scale.load_state_dict(state["scale"])


def insert_before_evaluation(hooks: List[HookBase], hook: HookBase) -> List[HookBase]:
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
