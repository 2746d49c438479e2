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
library user who imports rsrcnn_d2 keeps Python's warning settings untouched:
where the library itself first imports detectron2 (rsrcnn_d2.data, .modeling, .engine),
`known_warnings_hidden` hides them for that import only.
"""

import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "setup_tool_logging",
    "quiet_known_warnings",
    "known_warnings_hidden",
    "echo",
    "plain_log_files",
    "logged_step",
    "KNOWN_WARNINGS",
    "KNOWN_LOG_LINES",
]

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
    # torch.amp on a machine without CUDA: we run on the CPU on purpose (MODEL.DEVICE cpu)
    (UserWarning, r".*CUDA is not available.*"),
)
# (logger name, message regex) of harmless third-party log lines (torch logs them, not warns)
KNOWN_LOG_LINES = (("torch.fx._symbolic_trace", r"is_fx_tracing will return true"),)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _DropMatching(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._pattern.search(record.getMessage())


class _NoColour(logging.Filter):
    """Strips terminal colour codes (detectron2 highlights the config dump) from the lines of
    ``handler``, unless it writes to a terminal (a log file, ``> train.log``: stripped)."""

    def __init__(self, handler: Optional[logging.Handler] = None):
        super().__init__()
        self._handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if self._handler is not None and _is_terminal(getattr(self._handler, "stream", None)):
            return True
        message = record.getMessage()
        if "\x1b[" in message:
            record.msg, record.args = _ANSI.sub("", message), None
        return True


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


@contextlib.contextmanager
def known_warnings_hidden() -> Iterator[None]:
    """Within the block, `KNOWN_WARNINGS` are ignored; the caller's warning settings are
    restored after it.

    For library code that imports detectron2 on first use: its import scripts a few functions,
    which torch >= 2.10 flags as deprecated, and that warning is about detectron2, not about
    the user, whose own settings stay as they were.
    """
    with warnings.catch_warnings():
        for category, message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def quiet_known_warnings() -> None:
    """Ignore `KNOWN_WARNINGS` and `KNOWN_LOG_LINES` in this (a tool's) process."""
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, message in KNOWN_LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) for f in logger.filters):
            logger.addFilter(_DropMatching(message))


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def plain_log_files(logger: logging.Logger) -> None:
    """Colour codes off every handler of ``logger`` that does not write to a terminal, so that
    log.txt and a redirected console read as text."""
    for handler in logger.handlers:
        if not any(isinstance(f, _NoColour) for f in handler.filters):
            handler.addFilter(_NoColour(handler))


def echo(text: str, name: str = "rsrcnn_d2") -> None:
    """Print ``text`` as it is and write it to the log files `setup_tool_logging` opened for
    ``name``: what a tool printed is in its log.txt too."""
    print(text)
    for handler in logging.getLogger(name).handlers:
        if getattr(handler, "_rsrcnn_tool", False) and isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.stream.write(text + "\n")
                handler.flush()
            finally:
                handler.release()


@contextlib.contextmanager
def logged_step(
    log_file: Union[str, Path], names: Iterable[str] = ("detectron2", "rsrcnn_d2")
) -> Iterator[None]:
    """Within the block, the loggers ``names`` also write to ``log_file`` (no colour codes) and,
    where they had no handler, to the console; as before after it.

    For a step a driver runs in its own process (an evaluation, a calibration): its lines go
    to that step's log.txt only, not to every earlier step's, as detectron2's cached
    ``setup_logger`` would send them.
    """
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(FORMAT, datefmt=DATE_FORMAT)
    added = []
    for name in names:
        logger = logging.getLogger(name)
        handlers = [logging.FileHandler(log_file, encoding="utf-8")]
        if not logger.handlers:
            handlers.append(_CurrentStdout())
        for handler in handlers:
            handler.setFormatter(formatter)
            handler.addFilter(_NoColour())
            logger.addHandler(handler)
            added.append((logger, handler, logger.level, logger.propagate))
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, handler, level, propagate in reversed(added):
            logger.removeHandler(handler)
            handler.close()
            logger.setLevel(level)
            logger.propagate = propagate
