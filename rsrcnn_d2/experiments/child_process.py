"""Child processes that die with the driver that started them.

A sweep (run_cv, the ablation) killed by its user, or by the scheduler, must not leave its
training child running on (parent id 1) and writing into the run folder that a re-run then
trains a second time. On Linux the kernel delivers a signal to a child when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, `rsrcnn_d2.parent_death`), set in the child between fork and
exec.
"""

import os
import subprocess

from ..parent_death import die_with_parent

__all__ = ["run_child", "die_with_parent"]


def run_child(cmd, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, **kwargs)`` whose child dies with this process."""
    return subprocess.run(cmd, preexec_fn=die_with_parent(os.getpid()), **kwargs)
