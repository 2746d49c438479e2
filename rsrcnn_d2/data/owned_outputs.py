"""Outputs we wrote may be replaced; a user's file of the same name never is.

A tool that writes fixed names into a folder the user picks (``rsrcnn-evaluate -o``:
``summary.json``, ``slices.csv``, ...) records the files it wrote in ``.rsrcnn-outputs.json``
there; a later run replaces those and refuses (exit 2, naming the file) to overwrite a file of
the same name that it did not write. The same rule `prepare_pwml` follows with its
``conversion.json``.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Union

from .errors import PWMLDataError
from .fileio import atomic_write_json, read_json

__all__ = ["OWNED_RECORD", "check_owned", "record_owned"]

OWNED_RECORD = ".rsrcnn-outputs.json"


def _owned(folder: Path) -> set:
    record = folder / OWNED_RECORD
    return set(read_json(record).get("files", [])) if record.is_file() else set()


def check_owned(folder: Union[str, Path], names: Iterable[str], program: str) -> None:
    """Before writing: `PWMLDataError` for the first of ``names`` that exists in ``folder``
    without having been written there by one of our programs.

    Args:
        folder: the output folder the user picked.
        names: the file names about to be written, relative to ``folder``.
        program: the program's name, for the message.
    """
    folder = Path(folder)
    ours = _owned(folder)
    for name in names:
        if (folder / name).exists() and name not in ours:
            raise PWMLDataError(
                folder / name,
                f"exists and was not written by {program}: it is not replaced; choose another "
                "output folder or move the file",
            )


def record_owned(folder: Union[str, Path], names: Iterable[str], program: str) -> None:
    """After writing: add ``names`` to the files ``folder`` holds from our programs.

    Args:
        folder: the output folder (created if absent).
        names: the file names written, relative to ``folder``.
        program: the program's name, kept in the record.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(_owned(folder) | set(names))
    atomic_write_json(folder / OWNED_RECORD, {"program": program, "files": files})
