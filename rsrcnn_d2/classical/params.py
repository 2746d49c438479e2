"""The classical detector's parameters: one small dataclass, read and written as YAML or JSON.

A parameters file holds only these keys (any subset; the rest keep their
defaults), e.g. as written by ``tools/tune_classical.py``::

    # tuned on pwml_val ...
    smoothing_sigma: 0.8
    background_size: 7
    threshold: 4.2
    ...

Files are read with ``yaml.safe_load`` (JSON is YAML, so ``.json`` files read
the same way): a parameters file can hold numbers and strings, never code.
Every problem (unreadable, not a mapping, unknown key, wrong type, value out of
range) is a `PWMLDataError` naming the file and the key.
"""

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..data.errors import PWMLDataError
from ..data.fileio import atomic_write_bytes

__all__ = ["ClassicalParams", "params_from_dict", "load_params", "save_params", "MODES"]

MODES = ("2d", "3d")


@dataclass(frozen=True)
class ClassicalParams:
    """What the local-contrast detector does (detector.py), in pixels of the slice as given.

    smoothing_sigma: Gaussian smoothing before anything else (px; 0 = none): a
        matched filter for blobs of a few pixels, and it tames pixel noise.
    background_size: side of the square flat structuring element of the grey
        opening that estimates the background (px, odd). Bright structures
        narrower than it are "foreground": lesions must fit, cortex ribbons
        are wider along their length.
    threshold: the robust z-score of the background-subtracted intensity a
        blob must reach somewhere (units of the slice's own spread, see
        detector.py).
    hysteresis: a found blob grows over its connected pixels whose z-score
        reaches ``hysteresis * threshold`` (1 = no growing).
    min_area, max_area: kept blobs' size in pixels (8-connected), inclusive.
        Long bright rims and folds form large blobs and are dropped.
    tissue_mask: restrict detection to the head estimated from the image
        (Otsu threshold, holes filled, largest component), eroded by
        ``tissue_erosion`` px to leave out scalp and the outer cortex.
    mode: "2d" (each slice alone) or "3d": brightness that persists into a
        neighbouring slice counts as background, weighted by
        ``through_plane_weight`` (0 = as "2d", 1 = fully).
    """

    smoothing_sigma: float = 0.7
    background_size: int = 7
    threshold: float = 4.0
    hysteresis: float = 0.6
    min_area: int = 1
    max_area: int = 40
    tissue_mask: bool = True
    tissue_erosion: int = 2
    mode: str = "2d"
    through_plane_weight: float = 1.0

    def __post_init__(self):
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Every parameter by name, as a parameters file holds them."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "ClassicalParams":
        """A copy with ``changes``, checked like a new instance (ValueError)."""
        return dataclasses.replace(self, **changes)


_TYPES = {f.name: f.type for f in dataclasses.fields(ClassicalParams)}


def _problems(p: ClassicalParams) -> Sequence[str]:
    out = []

    def need(ok: bool, key: str, what: str):
        if not ok:
            out.append(f"{key} must be {what}, got {getattr(p, key)!r}")

    for key, kind in _TYPES.items():  # types first: the range checks compare numbers
        value = getattr(p, key)
        if kind in ("float", float):
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
            need(ok, key, "a finite number")
        elif kind in ("int", int):
            need(isinstance(value, int) and not isinstance(value, bool), key, "an integer")
        elif kind in ("bool", bool):
            need(isinstance(value, bool), key, "true or false")
        elif kind in ("str", str):
            need(isinstance(value, str), key, "a string")
    if out:
        return out
    need(0 <= p.smoothing_sigma <= 10, "smoothing_sigma", "in [0, 10]")
    need(
        3 <= p.background_size <= 101 and p.background_size % 2 == 1,
        "background_size",
        "an odd integer in [3, 101]",
    )
    need(0 < p.threshold <= 100, "threshold", "in (0, 100]")
    need(0 < p.hysteresis <= 1, "hysteresis", "in (0, 1]")
    need(p.min_area >= 1, "min_area", ">= 1")
    need(p.max_area >= p.min_area, "max_area", f">= min_area ({p.min_area})")
    need(0 <= p.tissue_erosion <= 50, "tissue_erosion", "in [0, 50]")
    need(p.mode in MODES, "mode", f"one of {', '.join(MODES)}")
    need(0 <= p.through_plane_weight <= 1, "through_plane_weight", "in [0, 1]")
    return out


def params_from_dict(values: Mapping[str, Any], where: str = "parameters") -> ClassicalParams:
    """ClassicalParams from a mapping of some of its keys; PWMLDataError naming ``where``."""
    if not isinstance(values, Mapping):
        raise PWMLDataError(
            where, f"expected a mapping of detector parameters, got {type(values).__name__}"
        )
    unknown = sorted(str(k) for k in values if k not in _TYPES)
    if unknown:
        raise PWMLDataError(
            where, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(_TYPES)}"
        )
    values = dict(values)
    for key in ("smoothing_sigma", "threshold", "hysteresis", "through_plane_weight"):
        if isinstance(values.get(key), int) and not isinstance(values[key], bool):
            values[key] = float(values[key])  # "threshold: 4" is a float to a reader
    try:
        return ClassicalParams(**values)
    except ValueError as e:
        raise PWMLDataError(where, str(e)) from None


def load_params(path: Union[str, Path]) -> ClassicalParams:
    """Read a YAML or JSON parameters file safely (module docstring)."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise PWMLDataError(path, f"cannot read the parameters file ({e.strerror or e})") from e
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PWMLDataError(path, f"not valid YAML/JSON ({e})") from None
    if values is None:
        values = {}  # an empty file: the defaults
    return params_from_dict(values, str(path))


def save_params(
    path: Union[str, Path], params: ClassicalParams, comments: Sequence[str] = ()
) -> Path:
    """Atomically write ``params``: JSON for ``.json`` files, else YAML with ``#`` comments.

    Args:
        path: the file to write; its suffix chooses the format.
        params: the parameters, every key written.
        comments: lines written as ``#`` comments above the YAML (JSON has none).

    Returns:
        ``path`` as a Path.
    """
    import yaml

    path = Path(path)
    if path.suffix.lower() == ".json":
        return atomic_write_bytes(path, (json.dumps(params.to_dict(), indent=2) + "\n").encode())
    header = "".join(f"# {line}\n" for c in comments for line in str(c).splitlines())
    body = yaml.safe_dump(params.to_dict(), sort_keys=False, default_flow_style=False)
    return atomic_write_bytes(path, (header + body).encode())
