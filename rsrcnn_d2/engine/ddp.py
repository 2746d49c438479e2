"""DistributedDataParallel for CPU workers (GLOO), which detectron2's helper does not build.

``detectron2.engine.defaults.create_ddp_model`` always passes
``device_ids=[local_rank]``, which torch rejects for a model on the CPU. On a
machine without GPUs ``launch`` still starts GLOO workers, so multi-process
training there needs a DDP without device ids.
"""
import contextlib

import detectron2.engine.defaults as d2_defaults
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = ["create_ddp_model", "cpu_ddp_support"]

_d2_create_ddp_model = d2_defaults.create_ddp_model


def create_ddp_model(model, *, fp16_compression: bool = False, **kwargs):
    """detectron2's create_ddp_model, but without device ids for a CPU model."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type != "cpu":
        return _d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)
    kwargs.pop("device_ids", None)
    return DistributedDataParallel(model, **kwargs)


@contextlib.contextmanager
def cpu_ddp_support():
    """Within the block, DefaultTrainer wraps CPU models with `create_ddp_model` above."""
    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = _d2_create_ddp_model
