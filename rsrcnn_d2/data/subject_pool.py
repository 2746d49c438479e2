"""One task per subject, in worker processes that die with their parent: the dataset check and
the conversion read whole volumes, and subjects are independent.

Workers are forked where the platform allows it (they share what the parent has
loaded), ignore Ctrl-C (the parent stops the pool) and are killed with the parent
(Linux: PR_SET_PDEATHSIG; elsewhere a thread watching the parent), so a killed
run leaves no worker behind. Leaving `map_subjects` by an error or a signal
terminates the pool.
"""

import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Callable

__all__ = ["map_subjects"]


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _worker_init(parent: int) -> None:
    """Make a pool worker die with its parent, so a killed run leaves no blocked workers."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (fork copies it)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the pool
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            armed = ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _numbered(task: Callable, item):
    return item[0], task(item[1])


def map_subjects(
    task: Callable, items: Sequence, workers: int, progress: bool = False, desc: str = "subjects"
) -> list:
    """``[task(item) for item in items]``, in ``workers`` processes when more than one.

    Args:
        task: a module-level function (or a partial of one), so that it can be sent to a
            worker.
        items: one per subject.
        workers: processes; 1 (or a single item) runs in this process.
        progress: show a tqdm bar.
        desc: the bar's name.

    Returns:
        The results, in the order of ``items``. A task's exception stops the pool and
        is raised here.
    """
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="subject")
    try:
        if workers <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(task(item))
                if bar:
                    bar.update()
            return results
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        results = [None] * len(items)
        # leaving the block terminates the workers, also on an error or a signal
        with ctx.Pool(
            min(workers, len(items)), initializer=_worker_init, initargs=(os.getpid(),)
        ) as pool:
            numbered = functools.partial(_numbered, task)
            for i, result in pool.imap_unordered(numbered, list(enumerate(items))):
                results[i] = result
                if bar:
                    bar.update()
        return results
    finally:
        if bar:
            bar.close()
