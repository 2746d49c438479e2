"""Smooth random fields: the building block of deformations, bias fields and head-shape variation.

A field is white noise on a coarse control grid, interpolated (cubic) to the
target grid, so its smoothness is set by the control spacing and no large
Gaussian filter is ever run on a full volume.
"""

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["smooth_field", "control_grid_shape"]


def control_grid_shape(shape: Sequence[int], spacing_mm: Sequence[float], control_mm: float):
    """Control points per axis so neighbours lie about ``control_mm`` apart (at least 4 per
    axis, what a cubic spline needs).

    Args:
        shape: the target grid's size per axis.
        spacing_mm: its voxel size per axis.
        control_mm: the wanted distance between control points.
    """
    return tuple(max(4, int(round(n * s / control_mm)) + 1) for n, s in zip(shape, spacing_mm))


def smooth_field(
    rng: np.random.Generator,
    shape: Sequence[int],
    spacing_mm: Sequence[float],
    control_mm: float,
    amplitude: float,
) -> np.ndarray:
    """A float32 field of ``shape``, standard deviation about ``amplitude``, smooth over
    ``control_mm``.

    Args:
        rng: the stream the control values are drawn from.
        shape, spacing_mm, control_mm: as `control_grid_shape`.
        amplitude: the control values' standard deviation.
    """
    grid = control_grid_shape(shape, spacing_mm, control_mm)
    coarse = rng.normal(0.0, amplitude, grid).astype(np.float32)
    # cubic interpolation, grid corners on the volume's corners
    coords = np.meshgrid(
        *[np.linspace(0, g - 1, n, dtype=np.float32) for g, n in zip(grid, shape)],
        indexing="ij",
        sparse=True,
    )
    return _separable_cubic(coarse, coords)


def _separable_cubic(coarse: np.ndarray, coords) -> np.ndarray:
    # one axis at a time, as a small matrix product: (g0,g1,g2) -> (n0,g1,g2) -> ... -> (n0,n1,n2);
    # far cheaper than a 3-D spline evaluation at every voxel
    field = coarse
    for axis, c in enumerate(coords):
        weights = _cubic_weights(coarse.shape[axis], np.asarray(c).ravel())
        field = np.moveaxis(np.tensordot(weights, field, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(field, dtype=np.float32)


def _cubic_weights(grid: int, positions: np.ndarray) -> np.ndarray:
    """(len(positions), grid) matrix evaluating a cubic spline through ``grid`` control values."""
    weights = np.empty((len(positions), grid), np.float32)
    for k in range(grid):
        unit = np.zeros(grid, np.float64)
        unit[k] = 1.0
        weights[:, k] = ndimage.map_coordinates(unit, positions[None], order=3, mode="nearest")
    return weights
