"""What a command-line tool reports when it cannot do its job, and with which exit code.

Every tool of the project maps the same kind of failure to the same exit status,
so that a pipeline calling them can tell a bad config from a bad checkpoint
without reading the message:

    0  done
    1  partly done: some inputs failed, the others' outputs are written
    2  bad input data, arguments or output location (argparse's own code too)
    3  bad config file (unknown key, unsafe YAML, unreadable)
    4  bad weights file (truncated, unsafe pickle, does not fit the model)

The message is one line that starts with the offending file.
"""

import functools
import sys
from os import PathLike
from typing import Callable, Union

__all__ = [
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_DATA",
    "EXIT_CONFIG",
    "EXIT_WEIGHTS",
    "PWMLDataError",
    "ConfigError",
    "WeightsError",
    "exit_code_of",
    "report_errors",
]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_DATA = 2
EXIT_CONFIG = 3
EXIT_WEIGHTS = 4


class _FileProblem(ValueError):
    """A problem with one file: ``path`` names it, ``problem`` says why."""

    def __init__(self, path: Union[str, PathLike], problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # survives worker processes
        return (type(self), (self.path, self.problem))


class PWMLDataError(_FileProblem):
    """Bad PWML input or output location: shapes, affines, mask values, unreadable or
    truncated files, empty subjects, unsafe output paths. The message starts with the
    file, so a failed conversion of 70 subjects says which one to look at; a ValueError,
    so callers that already catch bad values keep working."""


class ConfigError(_FileProblem):
    """A config file that cannot be used: unknown key, unsafe YAML tag, unreadable."""


class WeightsError(_FileProblem):
    """A weights file that cannot be used: unreadable, unsafe, or not this model's."""


def exit_code_of(error: BaseException) -> int:
    """The exit status of the table above for an error a tool caught."""
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    if isinstance(error, WeightsError):
        return EXIT_WEIGHTS
    return EXIT_DATA


def report_errors(prog: str) -> Callable:
    """Decorate a tool's ``main``: the project's errors become one line and their exit code.

    So does an operating-system error about a named file that no earlier check caught (a
    folder made read-only during the run, a full disk): exit 2, the file and the reason.
    Anything else is a bug of ours and keeps its traceback.
    """

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except (PWMLDataError, ConfigError, WeightsError) as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return exit_code_of(e)
            except OSError as e:
                if e.filename is None:
                    raise
                print(f"{prog}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
                return EXIT_DATA

        return run

    return wrap
