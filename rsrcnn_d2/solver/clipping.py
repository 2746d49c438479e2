"""Gradient clipping by one global norm, as Keras 2's ``clipnorm`` (the reference's optimiser).

detectron2's ``CLIP_TYPE: norm`` clips each parameter's gradient alone: two tensors of
norm 4 under a limit of 5 pass unchanged. Keras 2 computes the norm of all gradients
together and scales every one of them by ``limit / norm`` once it reaches the limit
(both tensors above end at norm 3.54). ``CLIP_TYPE: global_norm`` selects that.
"""

from collections.abc import Iterable

import torch
from detectron2.solver import build_optimizer as build_detectron2_optimizer

__all__ = ["GLOBAL_NORM", "clip_global_norm_", "build_optimizer"]

GLOBAL_NORM = "global_norm"


@torch.no_grad()
def clip_global_norm_(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Scale all ``.grad`` tensors in place by ``max_norm / norm`` when their joint L2 norm
    ``norm`` is at least ``max_norm`` (Keras 2's ``clip_norm``); returns ``norm``.

    Parameters without a gradient are skipped; ``max_norm <= 0`` changes nothing.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    # one synchronisation: the norm of the per-tensor norms, in double precision
    norm = float(torch.linalg.vector_norm(torch.stack([_norm(g) for g in grads])))
    if max_norm > 0 and norm >= max_norm:
        for g in grads:
            g.mul_(max_norm / norm)
    return norm


def _norm(grad: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(grad.detach().to(torch.float64))


def _with_global_norm_clipping(optimizer: torch.optim.Optimizer, max_norm: float):
    """Make ``optimizer.step`` clip the gradients of all its parameters together first."""
    base = type(optimizer)

    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        clip_global_norm_(params, max_norm)
        return base.step(self, closure)

    optimizer.__class__ = type(base.__name__ + "WithGlobalNormClip", (base,), {"step": step})
    return optimizer


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """detectron2's optimizer, with ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE: global_norm`` added."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not (clip.ENABLED and clip.CLIP_TYPE == GLOBAL_NORM):
        return build_detectron2_optimizer(cfg, model)
    plain = cfg.clone()
    plain.defrost()
    plain.SOLVER.CLIP_GRADIENTS.ENABLED = False  # detectron2 does not know the type
    return _with_global_norm_clipping(build_detectron2_optimizer(plain, model), clip.CLIP_VALUE)
