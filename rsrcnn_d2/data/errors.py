"""The data pipeline's exception for bad input: `rsrcnn_d2.errors.PWMLDataError`.

Kept under this name because the data modules (and users' code) import it from here;
it is defined once, with the other errors every tool maps to an exit code.
"""

from ..errors import PWMLDataError

__all__ = ["PWMLDataError"]
