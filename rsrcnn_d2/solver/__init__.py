"""The reference's optimiser and LR schedule: global-norm gradient clipping, halving on a
validation-loss plateau."""

from .clipping import GLOBAL_NORM, build_optimizer, clip_global_norm_
from .plateau import PLATEAU_SCHEDULER, PlateauScale, PlateauTracker, build_lr_scheduler

__all__ = [
    "GLOBAL_NORM",
    "build_optimizer",
    "clip_global_norm_",
    "PLATEAU_SCHEDULER",
    "PlateauScale",
    "PlateauTracker",
    "build_lr_scheduler",
]
