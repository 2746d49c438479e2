"""Training-loop additions: validation loss, the plateau LR schedule, best checkpoint, CPU DDP."""
from .ddp import cpu_ddp_support, create_ddp_model
from .validation_loss import BEST_CHECKPOINT, ValidationLossHook, validation_losses

__all__ = ["ValidationLossHook", "validation_losses", "BEST_CHECKPOINT", "cpu_ddp_support",
           "create_ddp_model"]
