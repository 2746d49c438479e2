"""Argument pieces several programs share, importable without numpy, torch or detectron2.

The tables these options name belong to the library (`rsrcnn_d2.data.nifti.AXES`, ...), which
a program cannot import before its arguments are parsed without losing its fast ``--help``;
the copies here are checked against the library's by tests/test_tools_layout.py.
"""

import argparse
import re

__all__ = [
    "AXIS_NAMES",
    "CONFIG_KEY",
    "add_axis_option",
    "add_dataset_root_option",
    "probability_threshold",
]

# rsrcnn_d2.data.nifti.AXES's names, in its order (canonical RAS+ axes 0, 1, 2)
AXIS_NAMES = ("sagittal", "coronal", "axial")
# a config key (MODEL.DEVICE), as opposed to a file name: where the KEY VALUE overrides start
CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")


def add_axis_option(
    parser: argparse.ArgumentParser,
    help: str = "slice axis in canonical (RAS+) orientation, as in prepare_pwml",
) -> None:
    """``--axis`` (default axial) with the axis names as choices, for every program that slices."""
    parser.add_argument("--axis", default="axial", choices=list(AXIS_NAMES), help=help)


def add_dataset_root_option(parser: argparse.ArgumentParser) -> None:
    """``--dataset-root [NAME=]DIR``, repeatable: prepared cohorts registered as NAME_<split>."""
    parser.add_argument(
        "--dataset-root",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="register a prepared cohort (tools/prepare_pwml.py) as NAME_<split>; repeatable",
    )


def probability_threshold(text: str) -> float:
    """argparse type of a lesion threshold on probabilities: a number in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], not {text}")
    return value
