"""The one exception the data pipeline raises for bad input.

Every problem with a user's files (shapes, affines, mask values, unreadable or
truncated files, empty subjects) is reported as a `PWMLDataError` whose message
starts with the offending path, so a failed conversion of 70 subjects says which
file to look at. It subclasses ValueError: callers that already catch bad values
keep working.
"""

from os import PathLike
from typing import Union

__all__ = ["PWMLDataError"]


class PWMLDataError(ValueError):
    """Bad PWML input or output location; ``path`` names the file, ``problem`` says why."""

    def __init__(self, path: Union[str, PathLike], problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # raised inside conversion worker processes: must survive pickling
        return (PWMLDataError, (self.path, self.problem))
