"""Where each voxel of a simulated acquisition comes from in the MNI152 template.

A subject is the adult template scaled to a preterm head's size and deformed:
a random rotation and anisotropic scaling (the affine part) and a smooth random
displacement field (the elastic part). The acquisition is an axial grid of
voxels in the subject's scanner space; for every voxel centre x the template
position is ``y = centre + L (x + u(x))`` with ``L`` the inverse scaling and
rotation and ``u`` the displacement. Sampling the template at ``y`` therefore
resamples and deforms in one interpolation.
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .random_fields import smooth_field

__all__ = [
    "AcquisitionGrid",
    "acquisition_affine",
    "random_subject_transform",
    "template_coordinates",
]


@dataclass(frozen=True)
class AcquisitionGrid:
    """Voxel grid of the simulated scan: ``shape`` (X, Y, Z) and ``spacing`` (mm), RAS+."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) RAS+ affine of the grid (`acquisition_affine`)."""
        return acquisition_affine(self.shape, self.spacing)


def acquisition_affine(shape, spacing) -> np.ndarray:
    """(4, 4) RAS+ affine, voxel size ``spacing`` (mm), the grid centred on the scanner origin."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -(np.asarray(shape[:3], float) - 1) / 2 * np.asarray(spacing, float)
    return affine


@dataclass(frozen=True)
class SubjectTransform:
    """Scanner mm -> template mm: ``centre + linear @ (x + displacement(x))``."""

    linear: np.ndarray  # (3, 3): rotation @ diag(1 / scale)
    centre: np.ndarray  # (3,) template mm at the scanner origin
    scale: float  # mean head scale (subject mm per template mm)
    displacement: np.ndarray  # (3, X, Y, Z) float32, mm, on the acquisition grid


def random_subject_transform(
    rng: np.random.Generator,
    grid: AcquisitionGrid,
    template_centre: np.ndarray,
    head_scale: tuple[float, float],
    rotation_deg: float,
    elastic_mm: float,
    elastic_spacing_mm: float,
) -> SubjectTransform:
    """Draw one subject's affine and elastic transform.

    Args:
        rng: the subject's geometry stream.
        grid: the acquisition grid the displacement is sampled on.
        template_centre: (3,) template mm that the scanner origin maps to, before a
            random shift of up to 4 mm per axis.
        head_scale: range of the mean linear size relative to the adult template; each
            axis varies by another +-6 % (left-right 5 % wider).
        rotation_deg: largest head tilt about each axis.
        elastic_mm: standard deviation of the displacement.
        elastic_spacing_mm: the distance over which the displacement is smooth.

    Returns:
        `SubjectTransform` with a (3, X, Y, Z) float32 displacement in mm.
    """
    scale = rng.uniform(*head_scale)
    # left-right 5 % wider: the reference's head crops are ~0.82 as wide as long, the
    # uniformly scaled adult template ~0.77
    axis_scale = scale * rng.uniform(0.94, 1.06, 3) * np.array([1.05, 1.0, 1.0])
    angles = rng.uniform(-rotation_deg, rotation_deg, 3)
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    linear = rotation @ np.diag(1.0 / axis_scale)
    centre = np.asarray(template_centre, float) + rng.uniform(-4.0, 4.0, 3)
    displacement = np.stack(
        [
            smooth_field(rng, grid.shape, grid.spacing, elastic_spacing_mm, elastic_mm)
            for _ in range(3)
        ]
    )
    return SubjectTransform(
        linear=linear, centre=centre, scale=float(scale), displacement=displacement
    )


def template_coordinates(
    transform: SubjectTransform,
    grid: AcquisitionGrid,
    template_affine: np.ndarray,
    z_offset_mm: float = 0.0,
) -> np.ndarray:
    """Template voxel coordinates (3, X, Y, Z) float32 of every acquisition voxel centre.

    What ``ndimage.map_coordinates`` needs to resample and deform the template in one
    interpolation.

    Args:
        transform: the subject's scanner-to-template transform.
        grid: the acquisition grid, (X, Y, Z).
        template_affine: (4, 4) voxel-to-mm affine of the template.
        z_offset_mm: shifts the sample points through the slice (for a slice profile
            built from several samples).
    """
    axes = [
        np.arange(n, dtype=np.float32) * s + o
        for n, s, o in zip(grid.shape, grid.spacing, grid.affine[:3, 3])
    ]
    axes[2] = axes[2] + np.float32(z_offset_mm)
    scanner = np.meshgrid(*axes, indexing="ij", sparse=True)
    to_voxel = np.linalg.inv(template_affine)
    # template voxel = inv(A_t) (centre + L (x + u)) = M (x + u) + b
    m = (to_voxel[:3, :3] @ transform.linear).astype(np.float32)
    b = (to_voxel[:3, :3] @ transform.centre + to_voxel[:3, 3]).astype(np.float32)
    u = transform.displacement
    moved = [scanner[i] + u[i] for i in range(3)]
    return np.stack(
        [m[r, 0] * moved[0] + m[r, 1] * moved[1] + m[r, 2] * moved[2] + b[r] for r in range(3)]
    )
