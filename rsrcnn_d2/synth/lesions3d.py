"""Punctate white-matter lesions as small 3-D ellipsoids with partial-volume edges.

PWML are T1-hyperintense foci of a few millimetres in the deep and
periventricular white matter, often in clusters. Each lesion here is an
ellipsoid in scanner space; its partial-volume map (the fraction of each voxel
inside it, from sub-voxel samples) brightens the image, and the mask is the
voxels at least `MASK_PV_THRESHOLD` inside, so mask and hyperintensity agree
exactly. Lesions keep `LESION_GAP_MM` apart, so every lesion stays one
labelled component, in the volume and on ~1.2 mm head-crop pixels.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

from .subject_geometry import AcquisitionGrid

__all__ = ["Lesion", "MASK_PV_THRESHOLD", "LESION_GAP_MM", "draw_lesions", "partial_volume"]

MASK_PV_THRESHOLD = 0.5  # a voxel is lesion when at least half of it lies inside an ellipsoid
_SUBSAMPLES = 4  # sub-voxel samples per axis for the partial volume
LESION_GAP_MM = 2.5  # least distance between two lesions' partial-volume edges


@dataclass
class Lesion:
    """One ellipsoid: centre (scanner mm), semi-axes (mm), orientation, and its box on the grid."""

    centre_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray
    box: tuple[slice, slice, slice] = None
    pv: np.ndarray = None  # float32 partial volume inside ``box``
    gain: float = 0.0  # added intensity of a fully filled voxel


def partial_volume(centre_mm, semi_axes_mm, rotation, grid: AcquisitionGrid):
    """(box, fraction of each voxel of ``box`` inside the ellipsoid), or (None, None) off the
    grid.

    Args:
        centre_mm: (3,) scanner mm.
        semi_axes_mm: (3,) semi-axes before rotation, mm.
        rotation: (3, 3) rotation of the ellipsoid's axes.
        grid: the acquisition grid.

    Returns:
        ``box``: three slices of the grid around the ellipsoid; ``pv``: float32 of the
        box's shape, from 4 x 4 x 4 sub-voxel samples.
    """
    spacing = np.asarray(grid.spacing, float)
    origin = grid.affine[:3, 3]
    reach = float(np.max(semi_axes_mm))
    lo = np.floor((centre_mm - reach - origin) / spacing).astype(int) - 1
    hi = np.ceil((centre_mm + reach - origin) / spacing).astype(int) + 2
    lo, hi = np.maximum(lo, 0), np.minimum(hi, grid.shape)
    if np.any(hi <= lo):
        return None, None
    offsets = (np.arange(_SUBSAMPLES) + 0.5) / _SUBSAMPLES - 0.5
    axes = [
        ((np.arange(a, b)[:, None] + offsets[None]) * s + o).ravel()
        for a, b, s, o in zip(lo, hi, spacing, origin)
    ]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    # ellipsoid frame: p = R^T (x - c); inside when sum((p / a)^2) <= 1
    inv = (rotation / np.asarray(semi_axes_mm)[None, :]).T  # rows: R[:, k] / a_k
    d = [x - centre_mm[0], y - centre_mm[1], z - centre_mm[2]]
    q = sum((inv[k, 0] * d[0] + inv[k, 1] * d[1] + inv[k, 2] * d[2]) ** 2 for k in range(3))
    inside = (q <= 1.0).astype(np.float32)
    n = hi - lo
    pv = inside.reshape(n[0], _SUBSAMPLES, n[1], _SUBSAMPLES, n[2], _SUBSAMPLES).mean(
        axis=(1, 3, 5)
    )
    return tuple(slice(a, b) for a, b in zip(lo, hi)), pv


def _claim(taken: np.ndarray, box, pv: np.ndarray, spacing) -> None:
    """Mark the lesion's voxels and a `LESION_GAP_MM` halo around them in ``taken``."""
    from scipy import ndimage

    reach = [int(np.ceil(LESION_GAP_MM / s)) for s in spacing]
    lo = [max(b.start - r, 0) for b, r in zip(box, reach)]
    hi = [min(b.stop + r, n) for b, r, n in zip(box, reach, taken.shape)]
    grown = np.zeros([h - low for low, h in zip(lo, hi)], bool)
    grown[tuple(slice(b.start - low, b.stop - low) for b, low in zip(box, lo))] = pv > 0
    axes = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    ball = sum((a * s / LESION_GAP_MM) ** 2 for a, s in zip(axes, spacing)) <= 1.0
    taken[tuple(slice(low, h) for low, h in zip(lo, hi))] |= ndimage.binary_dilation(grown, ball)


def draw_lesions(
    rng: np.random.Generator,
    candidates: np.ndarray,
    white_matter: np.ndarray,
    grid: AcquisitionGrid,
    count: int,
    in_plane_mm: tuple[float, float],
    through_plane_mm: tuple[float, float],
    cluster_share: float = 0.5,
    max_tries: int = 50,
) -> list[Lesion]:
    """Place ``count`` ellipsoids, `LESION_GAP_MM` apart, centred on ``candidates`` voxels.

    A lesion whose core is less than 70 % white matter is redrawn.

    Args:
        rng: the subject's lesion stream.
        candidates: (X, Y, Z) bool, voxels a lesion may be centred on.
        white_matter: (X, Y, Z) white-matter fraction.
        grid: the acquisition grid.
        count: lesions wanted (0: none).
        in_plane_mm: range of the x and y semi-axes (log-uniform), before a random
            rotation (up to 30 degrees off the axes).
        through_plane_mm: range of the z semi-axis (log-uniform).
        cluster_share: share of lesions placed within 6 mm of an earlier one, as PWML
            cluster.
        max_tries: the placement gives up after ``count * max_tries`` draws in all.

    Returns:
        Up to ``count`` `Lesion` objects with ``box`` and ``pv`` set (fewer when the
        candidates leave no room); ``gain`` is set by the caller.
    """
    points = np.argwhere(candidates)
    if count <= 0 or len(points) == 0:
        return []
    spacing = np.asarray(grid.spacing, float)
    origin = grid.affine[:3, 3]
    taken = np.zeros(grid.shape, bool)
    lesions: list[Lesion] = []
    for _ in range(count * max_tries):
        if len(lesions) == count:
            break
        centre = _draw_centre(rng, points, lesions, cluster_share, spacing, origin)
        if centre is None:
            continue
        axes = np.exp(rng.uniform(*np.log(in_plane_mm), 2))
        axes = np.array([axes[0], axes[1], np.exp(rng.uniform(*np.log(through_plane_mm)))])
        rotation = Rotation.from_euler("xyz", rng.uniform(-30, 30, 3), degrees=True).as_matrix()
        box, pv = partial_volume(centre, axes, rotation, grid)
        if box is None or not (pv >= MASK_PV_THRESHOLD).any():
            continue
        core = pv >= MASK_PV_THRESHOLD
        if white_matter[box][core].mean() < 0.7 or (taken[box] & (pv > 0)).any():
            continue
        _claim(taken, box, pv, spacing)
        lesions.append(
            Lesion(centre_mm=centre, semi_axes_mm=axes, rotation=rotation, box=box, pv=pv)
        )
    return lesions


def _draw_centre(rng, points, lesions, cluster_share, spacing, origin) -> Optional[np.ndarray]:
    if lesions and rng.random() < cluster_share:
        anchor = lesions[int(rng.integers(len(lesions)))].centre_mm
        centre = anchor + rng.normal(0.0, 3.5, 3)
        index = np.round((centre - origin) / spacing).astype(int)
        inside = np.all((index >= 0) & (index < points.max(0) + 1))
        return centre if inside else None
    voxel = points[int(rng.integers(len(points)))]
    return voxel * spacing + origin + rng.uniform(-0.5, 0.5, 3) * spacing
