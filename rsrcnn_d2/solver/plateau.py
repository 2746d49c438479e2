"""The paper's schedule: halve the LR when the validation loss stops improving.

detectron2's schedulers are functions of the iteration only. Here the LR
multiplier after warm-up is a mutable scale (``PlateauScale``) that a hook
(``ValidationLossHook``, in rsrcnn_d2/engine) lowers when ``PlateauTracker``
says the validation loss has not improved for ``patience`` evaluations. Both
keep their state in checkpoints, so ``--resume`` continues the schedule.
"""

import math

from detectron2.solver import build_lr_scheduler as d2_build_lr_scheduler
from detectron2.solver.lr_scheduler import LRMultiplier, WarmupParamScheduler
from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["PlateauScale", "PlateauTracker", "build_lr_scheduler", "PLATEAU_SCHEDULER"]

PLATEAU_SCHEDULER = "WarmupPlateauLR"


class PlateauScale(ParamScheduler):
    """The plateau part of ``WarmupPlateauLR``: a constant LR multiplier that
    `ValidationLossHook` lowers (``scale *= factor``) during training."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def __call__(self, where: float) -> float:
        return self.scale

    def state_dict(self):
        """``{"scale": ...}``: fvcore schedulers keep no state, so the hook saves this one."""
        return {"scale": self.scale}

    def load_state_dict(self, state):
        """Restore the scale saved by `state_dict` (on ``--resume``)."""
        self.scale = float(state["scale"])


class PlateauTracker:
    """Counts evaluations without improvement; says when to reduce the LR.

    An evaluation improves when ``loss < best - min_delta``. After ``patience``
    evaluations in a row without improvement, ``update`` returns True and the
    count restarts (so the LR is halved at most once per ``patience`` evaluations).
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best = math.inf
        self.bad_evals = 0

    def update(self, loss: float) -> bool:
        """Count one evaluation's ``loss``; True when the LR should be reduced now.

        Raises FloatingPointError on a NaN or infinite loss, which no schedule can use.
        """
        if not math.isfinite(loss):
            raise FloatingPointError(f"validation loss is {loss}")
        if loss < self.best - self.min_delta:
            self.best, self.bad_evals = loss, 0
            return False
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            self.bad_evals = 0
            return True
        return False

    def state_dict(self):
        """``{"best", "bad_evals"}``, what a resumed run needs to continue the count."""
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state):
        """Restore the best loss and the count saved by `state_dict`."""
        self.best, self.bad_evals = float(state["best"]), int(state["bad_evals"])


def build_lr_scheduler(cfg, optimizer):
    """detectron2's schedulers, plus ``SOLVER.LR_SCHEDULER_NAME: WarmupPlateauLR``."""
    if cfg.SOLVER.LR_SCHEDULER_NAME != PLATEAU_SCHEDULER:
        return d2_build_lr_scheduler(cfg, optimizer)
    scale = PlateauScale(1.0)
    sched = WarmupParamScheduler(
        scale,
        cfg.SOLVER.WARMUP_FACTOR,
        min(cfg.SOLVER.WARMUP_ITERS / cfg.SOLVER.MAX_ITER, 1.0),
        cfg.SOLVER.WARMUP_METHOD,
        cfg.SOLVER.RESCALE_INTERVAL,
    )
    scheduler = LRMultiplier(optimizer, multiplier=sched, max_iter=cfg.SOLVER.MAX_ITER)
    scheduler.plateau_scale = scale  # the hook lowers it
    return scheduler
