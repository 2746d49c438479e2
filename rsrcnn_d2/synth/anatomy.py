"""Anatomy-based synthetic preterm T1w volumes with 3-D punctate white-matter lesions.

One subject, from a seed:

1. geometry (`subject_geometry`): the MNI152 2009a template scaled to a
   preterm head and deformed (random affine + smooth elastic field), sampled
   once onto an axial acquisition grid (in-plane 0.6-0.8 mm, slices 1.2-2 mm);
   each voxel averages samples through the slice's thickness;
2. contrast (`neonatal_contrast`): white matter darker than the cortex, bright
   deep grey matter and scalp, dark CSF and skull; per-subject levels, a fine
   tissue texture and a smooth multiplicative bias field;
3. lesions (`lesions3d`): several ellipsoids in deep / periventricular white
   matter (none in some subjects), each brightened relative to the spread of
   its own surroundings so the cohort's lesion contrast matches real slices;
4. Rician noise at a drawn SNR; stored as int16 (1000 = white matter level).

Random draws of the four stages come from independent streams of the seed, so
changing the lesions (e.g. ``lesion_contrast_scale=0``) leaves anatomy and
noise identical: that is how the tests check the mask is exactly where the
image was brightened.
"""

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from .lesions3d import MASK_PV_THRESHOLD, Lesion, draw_lesions
from .mni_template import load_mni152_tissues
from .neonatal_contrast import neonatal_t1w, random_tissue_contrast
from .random_fields import smooth_field
from .subject_geometry import AcquisitionGrid, random_subject_transform, template_coordinates

__all__ = [
    "AnatomyParams",
    "SimulatedSubject",
    "simulate_subject",
    "INTENSITY_SCALE",
    "COARSE_GRID",
]

INTENSITY_SCALE = 1000.0  # white matter (before bias and gain) is stored as about 1000
# `AnatomyParams` fields of a quick cohort: about 8x fewer voxels and half the slices of the
# default grid, for smoke runs of a driver (and the tests), never for results
COARSE_GRID = {"in_plane_mm": (1.4, 1.5), "slice_mm": (2.6, 3.0)}


@dataclass(frozen=True)
class AnatomyParams:
    """Ranges every subject's draws come from; the defaults are the cohort's.

    Sizes are in mm. ``head_scale``: linear size relative to the adult template
    (a term-equivalent preterm brain is about 0.6-0.7 of an adult's).
    ``lesion_contrast``: mean and spread of a lesion's brightness in units of
    the standard deviation of its surroundings (measured on the subject before
    noise, plus the noise as it shows on a ~1.2 mm head-crop pixel), calibrated
    with benchmarks/cohort_realism.py.
    """

    in_plane_mm: tuple[float, float] = (0.6, 0.8)
    slice_mm: tuple[float, float] = (1.2, 2.0)
    fov_mm: tuple[float, float, float] = (150.0, 150.0, 96.0)
    slice_profile_samples: int = 2
    head_scale: tuple[float, float] = (0.60, 0.70)
    rotation_deg: float = 8.0
    elastic_mm: float = 1.5
    elastic_spacing_mm: float = 18.0
    texture: float = 0.05
    bias: float = 0.10
    snr: tuple[float, float] = (9.0, 18.0)
    gain: tuple[float, float] = (0.8, 1.25)
    lesion_free_fraction: float = 0.15
    lesions_per_subject: tuple[int, int] = (3, 12)
    lesion_in_plane_mm: tuple[float, float] = (1.1, 2.5)
    lesion_through_plane_mm: tuple[float, float] = (0.9, 2.4)
    lesion_contrast: tuple[float, float] = (8.5, 3.2)
    lesion_contrast_scale: float = 1.0
    crop_pixel_mm: float = 1.2

    def __post_init__(self):
        for name in (
            "in_plane_mm",
            "slice_mm",
            "fov_mm",
            "head_scale",
            "snr",
            "gain",
            "lesion_in_plane_mm",
            "lesion_through_plane_mm",
        ):
            values = getattr(self, name)
            if any(not np.isfinite(v) or v <= 0 for v in values):
                raise ValueError(f"{name} must be positive sizes, got {values}")
            if len(values) == 2 and values[0] > values[1]:
                raise ValueError(f"{name} is a (low, high) range, got {values}")
        lo, hi = self.lesions_per_subject
        if lo < 0 or hi < lo:
            raise ValueError(
                f"lesions_per_subject must be a range 0 <= low <= high, got {(lo, hi)}"
            )
        if not 0.0 <= self.lesion_free_fraction <= 1.0:
            raise ValueError(
                f"lesion_free_fraction must lie in [0, 1], got {self.lesion_free_fraction}"
            )
        if self.slice_profile_samples < 1:
            raise ValueError(
                f"slice_profile_samples must be >= 1, got {self.slice_profile_samples}"
            )
        for name in ("rotation_deg", "elastic_mm", "texture", "bias", "lesion_contrast_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def as_dict(self) -> dict:
        """The parameters as JSON-ready values (tuples as lists), for the cohort's settings."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class SimulatedSubject:
    """A simulated scan: int16 image, uint8 mask and the RAS+ affine they share.

    Volumes are (X, Y, Z) on the acquisition grid, Z the slice axis; the affine is (4, 4).
    ``lesion_pv``: float32 partial-volume map (mask = lesion_pv >= 0.5);
    ``lesions``: the ellipsoids with their gains; ``info``: the subject's draws.
    """

    image: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    lesion_pv: np.ndarray
    lesions: list[Lesion] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _streams(seed) -> dict[str, np.random.Generator]:
    # children built from the seed's identity, not SeedSequence.spawn (which advances the
    # sequence's state): the same seed object then always gives the same subject
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    names = ("geometry", "contrast", "lesions", "noise")
    return {
        name: np.random.default_rng(
            np.random.SeedSequence(
                root.entropy, spawn_key=(*root.spawn_key, k), pool_size=root.pool_size
            )
        )
        for k, name in enumerate(names)
    }


def _acquisition(rng, params: AnatomyParams) -> AcquisitionGrid:
    in_plane = float(rng.uniform(*params.in_plane_mm))
    thickness = float(rng.uniform(*params.slice_mm))
    spacing = (in_plane, in_plane, thickness)
    shape = tuple(int(round(f / s)) for f, s in zip(params.fov_mm, spacing))
    return AcquisitionGrid(shape=shape, spacing=spacing)


def _sample(volume: np.ndarray, coords_list, fill: float, where=None) -> np.ndarray:
    # linear interpolation averaged over the slice-profile samples, optionally only at ``where``
    total = None
    for coords in coords_list:
        points = coords if where is None else coords[:, where]
        sample = ndimage.map_coordinates(
            volume, points, order=1, mode="constant", cval=fill, prefilter=False
        )
        total = sample if total is None else total + sample
    return total / np.float32(len(coords_list))


def _sample_tissues(tissues, coords_list) -> dict[str, np.ndarray]:
    """gm, wm, csf and surface_mm on the acquisition grid.

    Grey and white matter are sampled only near and inside the brain (they are
    zero elsewhere); the brain's partial volume, and so the CSF, comes from the
    signed distance, which crosses from -1 to +1 mm over the mask's edge.
    """
    surface = _sample(tissues.surface_mm, coords_list, 99.0)
    near = surface <= 3.0
    out = {"surface_mm": surface}
    for name in ("gm", "wm"):
        full = np.zeros(surface.shape, np.float32)
        full[near] = _sample(getattr(tissues, name), coords_list, 0.0, near)
        out[name] = full
    brain = np.clip((1.0 - surface) / 2.0, 0.0, 1.0)
    out["csf"] = np.clip(brain - out["gm"] - out["wm"], 0.0, 1.0)
    return out


def simulate_subject(
    seed, params: AnatomyParams = AnatomyParams(), has_lesions: bool = None
) -> SimulatedSubject:
    """Simulate one subject from ``seed`` (int or SeedSequence).

    The same seed and params always give the same subject.

    Args:
        seed: int or SeedSequence; each of the four stages draws from its own stream.
        params: the ranges the subject's draws come from.
        has_lesions: None draws it (lesion-free with ``params.lesion_free_fraction``).

    Returns:
        `SimulatedSubject`: image int16 (X, Y, Z) (white matter about 1000), mask uint8
        (X, Y, Z), affine (4, 4), the lesions and the draws in ``info``.
    """
    rng = _streams(seed)
    tissues = load_mni152_tissues()
    grid = _acquisition(rng["geometry"], params)
    centre = np.array([0.0, -22.0, 9.5])  # centroid of the template's brain mask (MNI mm)
    transform = random_subject_transform(
        rng["geometry"],
        grid,
        centre,
        params.head_scale,
        params.rotation_deg,
        params.elastic_mm,
        params.elastic_spacing_mm,
    )
    n = params.slice_profile_samples
    offsets = ((np.arange(n) + 0.5) / n - 0.5) * grid.spacing[2]
    coords = [template_coordinates(transform, grid, tissues.affine, float(o)) for o in offsets]
    maps = _sample_tissues(tissues, coords)
    template_x, template_z = (
        np.mean([c[a] for c in coords], axis=0) * tissues.affine[a, a] + tissues.affine[a, 3]
        for a in (0, 2)
    )
    scale = transform.scale  # subject mm per template mm
    del coords, transform

    crng = rng["contrast"]
    contrast = random_tissue_contrast(crng)
    jitter = smooth_field(crng, grid.shape, grid.spacing, 25.0, 0.4)
    clean = neonatal_t1w(maps, contrast, scale=scale, thickness_jitter=jitter)
    clean *= 1.0 + smooth_field(crng, grid.shape, grid.spacing, 2.0, params.texture)
    gain = float(crng.uniform(*params.gain))
    snr = float(crng.uniform(*params.snr))
    biased = (
        clean
        * np.exp(smooth_field(crng, grid.shape, grid.spacing, 60.0, params.bias))
        * np.float32(gain)
    )
    sigma = gain / snr

    lrng = rng["lesions"]
    if has_lesions is None:
        has_lesions = bool(lrng.random() >= params.lesion_free_fraction)
    count = int(lrng.integers(params.lesions_per_subject[0], params.lesions_per_subject[1] + 1))
    # deep and periventricular white matter: >= 8 mm under the brain's surface, at the levels
    # of the lateral ventricles and centrum semiovale (MNI z -5 to 45 mm)
    deep = maps["surface_mm"] * np.float32(scale) <= -8.0
    candidates = (maps["wm"] >= 0.85) & deep & (template_z >= -5.0) & (template_z <= 45.0)
    candidates &= np.abs(template_x) >= 8.0  # not the corpus callosum / midline
    lesions = draw_lesions(
        lrng,
        candidates,
        maps["wm"],
        grid,
        count if has_lesions else 0,
        params.lesion_in_plane_mm,
        params.lesion_through_plane_mm,
    )
    pv = np.zeros(grid.shape, np.float32)
    brightening = np.zeros(grid.shape, np.float32)
    for lesion in lesions:
        spread = _surrounding_spread(biased, lesion, grid, sigma, params.crop_pixel_mm)
        z = max(0.5, lrng.normal(*params.lesion_contrast))
        # at most 25 % brighter than deep grey matter: real PWML stay far below the scalp's fat
        ceiling = (1.25 * contrast.deep_grey - 1.0) * float(
            biased[lesion.box][lesion.pv > 0].mean()
        )
        lesion.gain = float(min(z * spread, ceiling) * params.lesion_contrast_scale)
        pv[lesion.box] += lesion.pv
        brightening[lesion.box] += lesion.pv * np.float32(lesion.gain)

    nrng = rng["noise"]
    signal = biased + brightening
    real = signal + nrng.normal(0.0, sigma, grid.shape).astype(np.float32)
    imag = nrng.normal(0.0, sigma, grid.shape).astype(np.float32)
    image = np.sqrt(real * real + imag * imag) * np.float32(INTENSITY_SCALE)
    image = np.clip(np.round(image), 0, np.iinfo(np.int16).max).astype(np.int16)
    mask = (pv >= MASK_PV_THRESHOLD).astype(np.uint8)
    info = {
        "spacing": list(grid.spacing),
        "shape": list(grid.shape),
        "snr": snr,
        "gain": gain,
        "has_lesions": has_lesions,
        "lesions": len(lesions),
        "contrast": asdict(contrast),
    }
    return SimulatedSubject(
        image=image, mask=mask, affine=grid.affine, lesion_pv=pv, lesions=lesions, info=info
    )


def _surrounding_spread(
    image: np.ndarray, lesion: Lesion, grid: AcquisitionGrid, sigma: float, crop_pixel_mm: float
) -> float:
    """Standard deviation a reader would see around the lesion on a head crop.

    The noise-free image's spread in a ~3-crop-pixel ring around the lesion's
    core on its central slice, combined with the noise as area-averaging to a
    ``crop_pixel_mm`` pixel leaves it.
    """
    core = lesion.pv >= MASK_PV_THRESHOLD
    z = int(np.argmax(core.sum(axis=(0, 1))))
    reach = int(np.ceil(3 * crop_pixel_mm / grid.spacing[0]))
    z0 = lesion.box[2].start
    footprint = np.zeros(grid.shape[:2], bool)
    footprint[lesion.box[0], lesion.box[1]] = core[:, :, z]
    ring = ndimage.binary_dilation(footprint, iterations=reach) & ~footprint
    tissue = float(image[:, :, z0 + z][ring].std()) if ring.any() else 0.0
    noise = sigma * grid.spacing[0] / crop_pixel_mm
    return float(np.hypot(tissue, noise))
