"""Child processes that die with the driver that started them.

A sweep (run_cv, the ablation) killed by its user, or by the scheduler, must not leave its
training child running on (parent id 1) and writing into the run folder that a re-run then
trains a second time. On Linux the kernel delivers a signal to a child when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), set in the child between fork and exec; elsewhere nothing is
set (the child then outlives a killed parent, as before).
"""

import ctypes
import os
import signal
import subprocess
import sys
from typing import Callable, Optional

__all__ = ["run_child", "die_with_parent"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child receive SIGTERM when ``parent`` dies (Linux);
    None where the platform has no such call."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the call: no signal will come
            os._exit(143)

    return arm


def run_child(cmd, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, **kwargs)`` whose child dies with this process."""
    return subprocess.run(cmd, preexec_fn=die_with_parent(os.getpid()), **kwargs)
