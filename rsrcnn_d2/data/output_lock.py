"""One writer per output folder: an advisory lock file naming its holder.

Two ``rsrcnn-predict`` runs into one ``-o``, or a re-run of ``run_cv.py`` while the first
still trains, would each report success over a folder holding a mix of both. The first
program to write a folder creates ``.rsrcnn.lock`` in it (atomically, ``O_EXCL``) with its
pid, host and name; a second one is refused while that process lives. A lock left by a
process that died (same host, pid gone) is stale and taken over. On another host the pid
cannot be checked: the lock holds, and the message says which file to remove if that run is
gone. Advisory: it binds the project's programs, not other software.
"""

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

from .errors import PWMLDataError
from .fileio import check_writable

__all__ = ["LOCK_FILE", "output_lock", "lock_holder"]

LOCK_FILE = ".rsrcnn.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def lock_holder(folder: Union[str, Path]) -> Optional[dict]:
    """The live holder of ``folder``'s lock (its record), or None (no lock, or a stale one)."""
    path = Path(folder) / LOCK_FILE
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        holder = None
    pid = holder.get("pid") if isinstance(holder, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        # unreadable, or no usable pid (0 would signal our own process group): held
        return {"pid": None, "host": "?", "program": "?", "started": "?"}
    if holder.get("host") == socket.gethostname() and not _alive(pid):
        return None
    return holder


@contextlib.contextmanager
def output_lock(folder: Union[str, Path], program: str) -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) while the block runs; `PWMLDataError`
    (exit 2) naming the holder if another live process holds it, or the folder when it
    cannot be written."""
    folder = Path(folder)
    check_writable(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "program": program,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(2):  # a stale lock is removed once, then taken
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = lock_holder(folder)
            if holder is not None:
                raise PWMLDataError(
                    folder,
                    f"in use by {holder.get('program')} (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('started')}); wait for it to "
                    f"finish, or remove {path} if that run is gone",
                ) from None
            path.unlink(missing_ok=True)  # its process died: stale
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        break
    else:
        raise PWMLDataError(folder, f"cannot take the lock {path}")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
