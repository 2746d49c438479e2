"""The slice geometry a model was trained on: recorded in its config, compared with its inputs.

Why: detectron2's ResizeShortestEdge picks each slice's scale from that slice's
own size. A model trained on 128 x 128 whole slices at scale 1 then sees a
200 x 130 slice of the same anatomy at 0.64x, and its small lesions vanish.
tools/train_net.py records the median size and in-plane spacing of the
training slices (`record_training_geometry`) in INPUT.TRAIN_SLICE_SIZE /
TRAIN_SLICE_SPACING of the config it writes; at test time slices that are not
head-cropped are then resized by one fixed scale
(`rsrcnn_d2.data.augmentation.TrainingScaleResize`), and an input whose size or
spacing is more than 20 % off the training data's is reported
(`warn_if_unlike`) on the "rsrcnn_d2" logger. Empty keys mean unknown: no check,
detectron2's resize.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ConfigError
from .errors import PWMLDataError

__all__ = [
    "SliceGeometry",
    "GEOMETRY_TOLERANCE",
    "training_geometry",
    "geometry_from_cfg",
    "record_training_geometry",
    "shortest_edge_scale",
    "warn_if_unlike",
]

# relative difference of a slice's size or spacing from the training data's that is reported
GEOMETRY_TOLERANCE = 0.2
logger = logging.getLogger("rsrcnn_d2")


@dataclass(frozen=True)
class SliceGeometry:
    """A typical slice: ``height`` x ``width`` pixels, ``spacing`` (row, column) mm or None."""

    height: float
    width: float
    spacing: Optional[tuple[float, float]] = None


def _in_plane(spacing) -> Optional[tuple[float, float]]:
    # records store (row, column, through-plane) mm, or null for PNG slices
    if spacing is None or len(spacing) < 2:
        return None
    return float(spacing[0]), float(spacing[1])


def training_geometry(records: Iterable[dict]) -> Optional[SliceGeometry]:
    """Median height, width and in-plane spacing of dataset dicts (None when there are none).

    Records without height and width (not every registered dataset stores them)
    are left out; spacing is the median over the records that have one.
    """
    sizes, spacings = [], []
    for r in records:
        if not r.get("height") or not r.get("width"):
            continue
        sizes.append((r["height"], r["width"]))
        spacing = _in_plane(r.get("spacing"))
        if spacing is not None:
            spacings.append(spacing)
    if not sizes:
        return None
    height, width = (round(float(v), 3) for v in np.median(np.asarray(sizes, float), axis=0))
    spacing = (
        tuple(round(float(v), 6) for v in np.median(np.asarray(spacings), axis=0))
        if spacings
        else None
    )
    return SliceGeometry(height, width, spacing)


def geometry_from_cfg(cfg) -> Optional[SliceGeometry]:
    """The training geometry recorded in ``cfg`` (None while INPUT.TRAIN_SLICE_SIZE is empty)."""
    size, spacing = list(cfg.INPUT.TRAIN_SLICE_SIZE), list(cfg.INPUT.TRAIN_SLICE_SPACING)
    if not size:
        return None
    for key, value in (("INPUT.TRAIN_SLICE_SIZE", size), ("INPUT.TRAIN_SLICE_SPACING", spacing)):
        if value and (len(value) != 2 or not all(np.isfinite(v) and v > 0 for v in value)):
            raise ConfigError(
                key, f"must be two positive numbers (rows, columns) or empty, got {value}"
            )
    return SliceGeometry(
        float(size[0]), float(size[1]), (float(spacing[0]), float(spacing[1])) if spacing else None
    )


def record_training_geometry(cfg, overwrite: bool = True) -> Optional[SliceGeometry]:
    """Measure DATASETS.TRAIN's slices and store them in ``cfg`` (not frozen); return them.

    ``overwrite`` False keeps a geometry already recorded (evaluating a trained
    model's own config.yaml). A training set that cannot be loaded here is
    left unknown with a warning: the training itself reports it.
    """
    from detectron2.data import DatasetCatalog

    if not overwrite and geometry_from_cfg(cfg) is not None:
        return geometry_from_cfg(cfg)
    records = []
    try:
        for name in cfg.DATASETS.TRAIN:
            records += DatasetCatalog.get(name)
    except (PWMLDataError, KeyError, OSError) as e:
        logger.warning(
            "slice geometry of DATASETS.TRAIN unknown (%s): test-time slices will be "
            "resized by detectron2's ResizeShortestEdge",
            e,
        )
        return None
    geometry = training_geometry(records)
    if geometry is not None:
        cfg.INPUT.TRAIN_SLICE_SIZE = [geometry.height, geometry.width]
        cfg.INPUT.TRAIN_SLICE_SPACING = list(geometry.spacing) if geometry.spacing else []
    return geometry


def shortest_edge_scale(height: float, width: float, short_edge: float, max_size: float) -> float:
    """The factor ResizeShortestEdge(short_edge, max_size) scales a height x width slice by.

    `TrainingScaleResize` applies this one factor, computed for the training's typical
    slice, to every test slice.

    Args:
        height, width: the slice's size in pixels.
        short_edge: ResizeShortestEdge's target for the shorter side.
        max_size: its cap on the longer side (<= 0: none).

    Returns:
        ``short_edge / min(height, width)``, lowered so that the longer side stays within
        ``max_size``.
    """
    scale = short_edge / min(height, width)
    return min(scale, max_size / max(height, width)) if max_size > 0 else scale


def _off(value: float, reference: float) -> bool:
    return abs(value / reference - 1.0) > GEOMETRY_TOLERANCE


def warn_if_unlike(
    train: SliceGeometry, shape: Sequence[int], spacing: Optional[Sequence[float]], source
) -> bool:
    """Log one warning naming ``source`` if its slices' size or spacing is > 20 % off ``train``'s.

    Args:
        train: the model's training geometry (`geometry_from_cfg`).
        shape: (height, width) of the input's slices.
        spacing: their (row, column) mm, or None; compared only when both are known.
        source: what the warning names (a file).

    Returns:
        Whether it warned.
    """
    height, width = shape
    problems = []
    if _off(height, train.height) or _off(width, train.width):
        problems.append(f"size {height}x{width} px (training: {train.height:g}x{train.width:g} px)")
    if (
        spacing is not None
        and train.spacing is not None
        and (_off(spacing[0], train.spacing[0]) or _off(spacing[1], train.spacing[1]))
    ):
        problems.append(
            f"spacing {spacing[0]:g}x{spacing[1]:g} mm "
            f"(training: {train.spacing[0]:g}x{train.spacing[1]:g} mm)"
        )
    if problems:
        logger.warning(
            "%s: slice %s %s by more than %d %% from the training data's; it is "
            "resized to the training's scale, but results on unlike data may be poorer",
            source,
            " and ".join(problems),
            "differ" if len(problems) > 1 else "differs",
            round(GEOMETRY_TOLERANCE * 100),
        )
    return bool(problems)
