"""Whether a config file is there to read, checked before torch and detectron2 load (a light
module: a mistyped ``--config-file`` is answered at once, not after the imports)."""

import os
from os import PathLike
from typing import Union

from .errors import ConfigError

__all__ = ["check_config_file"]


def check_config_file(config_file: Union[str, PathLike]) -> None:
    """Raise `ConfigError` (exit 3) unless ``config_file`` is a file."""
    if not os.path.isfile(config_file):
        what = "is not a file" if os.path.exists(config_file) else "does not exist"
        raise ConfigError(os.fspath(config_file), f"config file {what}")
