"""DistributedDataParallel for CPU workers (GLOO), which detectron2's helper does not build.

``detectron2.engine.defaults.create_ddp_model`` always passes
``device_ids=[local_rank]``, which torch rejects for a model on the CPU. On a
machine without GPUs ``launch`` still starts GLOO workers, so multi-process
training there needs a DDP without device ids.

Each CPU worker would also start one compute thread per core: two workers on two
cores then run four busy threads that preempt each other inside every operation
(37x slower per iteration than one worker). `prepare_cpu_workers` (before the
workers start) and `set_worker_threads` (in each) give every worker its share.
"""

import contextlib
import os
from collections.abc import MutableMapping
from typing import Optional

import detectron2.engine.defaults as d2_defaults
import torch
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "create_ddp_model",
    "cpu_ddp_support",
    "cpu_threads_per_worker",
    "prepare_cpu_workers",
    "set_worker_threads",
]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

_d2_create_ddp_model = d2_defaults.create_ddp_model


def create_ddp_model(model, *, fp16_compression: bool = False, **kwargs):
    """detectron2's create_ddp_model, but without device ids for a CPU model.

    Args:
        model: the model to wrap; returned as it is when there is one worker.
        fp16_compression: as detectron2's (a GPU model only).
        kwargs: passed to DistributedDataParallel; ``device_ids`` is dropped for a CPU model.

    Returns:
        ``model`` itself, or a DistributedDataParallel around it.
    """
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


def _usable_cores() -> int:
    """The cores this process may run on, at least 1: its CPU affinity (taskset, container), and at
    most torch's own default pool (physical cores), which a process that set its threads changed."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, torch.get_num_threads()))


def cpu_threads_per_worker(
    workers: int, cores: Optional[int] = None, environ: Optional[MutableMapping[str, str]] = None
) -> int:
    """Compute threads for each of ``workers`` training processes sharing this machine's cores.

    Args:
        workers: training processes on this machine.
        cores: cores to share (None: those this process may run on).
        environ: the environment to read (None: ``os.environ``).

    Returns:
        ``OMP_NUM_THREADS``, when the user set it (its first level, for a nested "6,2"):
        a deliberate choice, kept as it is. Otherwise cores // workers, at least 1.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    cores = _usable_cores() if cores is None else cores
    return max(1, cores // max(1, workers))


def prepare_cpu_workers(
    workers: int, cores: Optional[int] = None, environ: Optional[MutableMapping[str, str]] = None
) -> int:
    """Before CPU workers are started: export their share of the cores as OMP_NUM_THREADS and
    MKL_NUM_THREADS, read by each library's thread pool when a worker starts it.

    A user's OMP_NUM_THREADS is left alone (MKL follows it).

    Args:
        workers, cores: as `cpu_threads_per_worker`.
        environ: the environment to change (None: ``os.environ``).

    Returns:
        The threads per worker (`cpu_threads_per_worker`).
    """
    environ = os.environ if environ is None else environ
    threads = cpu_threads_per_worker(workers, cores, environ)
    if not environ.get("OMP_NUM_THREADS", "").strip():
        for name in _THREAD_VARIABLES:
            environ[name] = str(threads)
    return threads


def set_worker_threads(workers: int, cores: Optional[int] = None) -> int:
    """In a CPU worker, one of ``workers`` on this machine: use its share of the cores.

    torch's pool may have started before the environment was set (a single process, or a
    launcher other than train_net), hence ``torch.set_num_threads``. Returns the threads in use.
    """
    torch.set_num_threads(cpu_threads_per_worker(workers, cores))
    return torch.get_num_threads()
