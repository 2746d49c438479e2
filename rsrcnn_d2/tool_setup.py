"""What every command-line tool sets up first: its log handlers and the known third-party warnings.

Library code only logs (logger names under ``rsrcnn_d2``); a tool decides where
the lines go. `setup_tool_logging` sends them to the console and, given a file,
to a log file, in detectron2's format. Its console handler writes to whatever
``sys.stdout`` is when a line is logged, and a second call replaces the
handlers of the first: a tool's ``main`` called twice in one process (tests,
notebooks) neither doubles its lines nor writes to a stream that was closed.

`quiet_known_warnings` hides warnings that third-party code raises on every
run and that say nothing to our users (detectron2's meshgrid call, the
read-only arrays detectron2 turns into tensors, pycocotools on numpy 2,
setuptools' pkg_resources notice, torch.fx tracing notes). Tools call it; a
library user who imports rsrcnn_d2 keeps Python's warning settings untouched.
"""

import logging
import sys
import warnings
from pathlib import Path
from typing import Iterable, Optional, Union

__all__ = ["setup_tool_logging", "quiet_known_warnings", "KNOWN_WARNINGS"]

FORMAT = "[%(asctime)s %(name)s %(levelname)s]: %(message)s"
DATE_FORMAT = "%m/%d %H:%M:%S"

# (category, message regex) of harmless third-party warnings
KNOWN_WARNINGS = (
    (UserWarning, r"torch\.meshgrid: in an upcoming release"),
    (UserWarning, r"The given NumPy array is not writable"),
    (DeprecationWarning, r"__array__ implementation doesn't accept a copy keyword"),
    (UserWarning, r"pkg_resources is deprecated"),
    (DeprecationWarning, r"pkg_resources is deprecated"),
    (UserWarning, r".*torch\.fx.*"),
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
)


class _CurrentStdout(logging.StreamHandler):
    """A console handler that looks up ``sys.stdout`` at each line instead of keeping one stream."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler assigns it; the property always answers sys.stdout
        pass


def setup_tool_logging(
    log_file: Optional[Union[str, Path]] = None,
    names: Iterable[str] = ("rsrcnn_d2",),
    level: int = logging.INFO,
) -> logging.Logger:
    """Console (and ``log_file``) handlers on the loggers ``names``; returns the first logger."""
    formatter = logging.Formatter(FORMAT, datefmt=DATE_FORMAT)
    handlers = [_CurrentStdout()]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    loggers = []
    for name in names:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_rsrcnn_tool", False)]:
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            handler.setFormatter(formatter)
            handler._rsrcnn_tool = True
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
        loggers.append(logger)
    return loggers[0]


def quiet_known_warnings() -> None:
    """Ignore `KNOWN_WARNINGS` in this (a tool's) process."""
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
