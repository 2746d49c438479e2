"""Whether this process can write into a folder, tried before any work (a light module: the
programs call it right after parsing their arguments, before torch and detectron2 load).

Tried, not read from the mode bits: root writes into folders of mode 555, and a read-only
mount refuses everyone whatever the bits say.
"""

import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import Union

from .errors import PWMLDataError

__all__ = ["check_writable"]


def _nearest_existing(path: Path) -> Path:
    """``path`` or the closest of its parents that exists (a folder to be created lives there)."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_writable(folder: Union[str, PathLike], what: str = "the output folder") -> None:
    """Refuse, before any work, a ``folder`` (or, when it does not exist yet, the folder that
    would hold it) this process cannot write into: `PWMLDataError` naming it.

    A file is created and removed there.
    """
    folder = Path(folder)
    where = _nearest_existing(folder)
    if not where.is_dir():
        return  # a file in the way: each program's own check names it
    try:
        fd, probe = tempfile.mkstemp(prefix=".rsrcnn-write-test-", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        creates = "" if where == folder.absolute() else f"; cannot create {folder} in it"
        raise PWMLDataError(where, f"{what}: not writable ({e.strerror or e}){creates}") from None
