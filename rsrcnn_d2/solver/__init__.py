"""LR schedule of the paper (halving on a validation-loss plateau)."""

from .plateau import PLATEAU_SCHEDULER, PlateauScale, PlateauTracker, build_lr_scheduler

__all__ = ["PLATEAU_SCHEDULER", "PlateauScale", "PlateauTracker", "build_lr_scheduler"]
