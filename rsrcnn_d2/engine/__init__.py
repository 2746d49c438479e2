"""Training-loop additions: validation loss, the plateau LR schedule, best checkpoint, the run's
health, CPU DDP.

`rsrcnn_d2.engine.train_net` (the Trainer, a worker's setup, in-process evaluation) is not
imported here, since it builds on the evaluation and inference layers; the training program
that runs it is `rsrcnn_d2.cli.train_net`.
"""

from ..tool_setup import known_warnings_hidden

# the first import of detectron2 on most paths into the package: its import-time notices
# (it and fvcore script functions, which torch flags as deprecated) are not the user's to see
with known_warnings_hidden():
    import detectron2.modeling  # noqa: F401

from .ddp import (
    cpu_ddp_support,
    cpu_threads_per_worker,
    create_ddp_model,
    prepare_cpu_workers,
    set_worker_threads,
)
from .health import HEALTH_FILE, VERDICTS, HeadHealthHook, health_report, health_verdict
from .validation_dice import validation_dice
from .validation_loss import (
    BEST_CHECKPOINT,
    BEST_CRITERIA,
    ValidationLossHook,
    insert_before_evaluation,
    validation_losses,
)

__all__ = [
    "ValidationLossHook",
    "HeadHealthHook",
    "health_report",
    "health_verdict",
    "validation_dice",
    "HEALTH_FILE",
    "VERDICTS",
    "BEST_CRITERIA",
    "validation_losses",
    "insert_before_evaluation",
    "BEST_CHECKPOINT",
    "cpu_ddp_support",
    "create_ddp_model",
    "cpu_threads_per_worker",
    "prepare_cpu_workers",
    "set_worker_threads",
]
