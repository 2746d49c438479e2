"""Training-loop additions: validation loss, the plateau LR schedule, CPU DDP."""
from .ddp import cpu_ddp_support, create_ddp_model
from .validation_loss import ValidationLossHook, validation_loss

__all__ = ["ValidationLossHook", "validation_loss", "cpu_ddp_support", "create_ddp_model"]
