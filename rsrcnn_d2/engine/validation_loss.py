"""Periodic validation loss, and the LR cut when it plateaus (the paper's schedule)."""
import logging
from typing import Callable, Iterable, Optional

import torch

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from ..solver import PlateauScale, PlateauTracker

__all__ = ["ValidationLossHook", "validation_loss"]

logger = logging.getLogger(__name__)


def validation_loss(model: torch.nn.Module, batches: Iterable) -> float:
    """Mean total loss over ``batches`` (lists of annotated input dicts), all workers pooled.

    The model runs in training mode (losses need it) without gradients, and its
    event-storage writes go to a throw-away storage, so the training metrics are
    untouched. Norm layers are FrozenBN or GroupNorm in our configs, which keep
    no running statistics, so training mode changes nothing else.
    """
    was_training = model.training
    model.train()
    total, count = 0.0, 0
    try:
        with torch.no_grad(), EventStorage():
            for inputs in batches:
                losses = model(inputs)
                total += float(sum(losses.values())) * len(inputs)
                count += len(inputs)
    finally:
        model.train(was_training)
    pooled = comm.all_gather((total, count))
    total, count = sum(t for t, _ in pooled), sum(c for _, c in pooled)
    if count == 0:
        raise ValueError("validation_loss: the validation loader yielded no images")
    return total / count


class ValidationLossHook(HookBase):
    """Every ``period`` iterations: log ``validation_loss``; on a plateau, scale the LR.

    ``scale`` is the scheduler's PlateauScale (None to only log the loss). Its
    state and the tracker's are exposed through state_dict() so that a
    checkpointer can save and restore them.
    """

    def __init__(self, period: int, batches_fn: Callable[[], Iterable],
                 scale: Optional[PlateauScale] = None, tracker: Optional[PlateauTracker] = None,
                 factor: float = 0.5):
        if period < 1:
            raise ValueError(f"validation period must be >= 1, got {period}")
        self._period, self._batches_fn = period, batches_fn
        self.scale, self.tracker, self.factor = scale, tracker or PlateauTracker(), factor

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            self.evaluate()

    def evaluate(self) -> float:
        loss = validation_loss(self.trainer.model, self._batches_fn())
        self.trainer.storage.put_scalar("validation_loss", loss, smoothing_hint=False)
        if self.scale is not None and self.tracker.update(loss):
            self.scale.scale *= self.factor
            logger.info("validation loss has not improved for %d evaluations (best %.4f): "
                        "LR multiplier now %.4g", self.tracker.patience, self.tracker.best, self.scale.scale)
        return loss

    def state_dict(self):
        state = {"tracker": self.tracker.state_dict()}
        if self.scale is not None:
            state["scale"] = self.scale.state_dict()
        return state

    def load_state_dict(self, state):
        self.tracker.load_state_dict(state["tracker"])
        if self.scale is not None and "scale" in state:
            self.scale.load_state_dict(state["scale"])
