"""A process that dies with its parent (Linux ``prctl(PR_SET_PDEATHSIG)``).

Two kinds of children must not outlive a killed parent: the programs a sweep (run_cv, the
ablation) starts, which would go on writing into a run folder that a re-run trains a second
time, and the training workers ``train_net --num-gpus N`` spawns, which would go on writing
``model_final.pth`` after their launcher was killed. Both ask the kernel for a SIGTERM when
their parent dies: the first between fork and exec (`die_with_parent`), the second as the
worker's first act (`arm_parent_death`). Elsewhere than Linux nothing is set (a child then
outlives a killed parent, as before). A module of its own, below every layer that uses it.
"""

import ctypes
import os
import signal
import sys
from typing import Callable, Optional

__all__ = ["arm_parent_death", "die_with_parent", "die_with_launcher"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def arm_parent_death(parent: int) -> bool:
    """In a child of ``parent``: receive SIGTERM when the parent dies (Linux; False elsewhere).

    A parent that died before the call sends no signal: the child then exits at once (143).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(143)
    return True


def die_with_parent(parent: int) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child receive SIGTERM when ``parent`` dies (Linux);
    None where the platform has no such call."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        arm_parent_death(parent)

    return arm


def die_with_launcher(args) -> None:
    """In a worker that ``launch`` spawned (``--num-gpus`` > 1): die when the launcher dies.

    A SIGKILLed launcher cannot stop its workers, which would go on training and writing
    ``model_final.pth`` into a folder a re-run trains again. ``args.launcher_pid`` is set by
    the command line (`rsrcnn_d2.cli.train_net.cli`); in the launcher's own process (one
    worker) nothing is armed.
    """
    launcher = getattr(args, "launcher_pid", None)
    if launcher and launcher != os.getpid():
        arm_parent_death(launcher)
