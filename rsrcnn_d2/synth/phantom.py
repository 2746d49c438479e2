"""Synthetic T1w-like neonatal brain slices with punctate hyperintense lesions.

A seeded phantom, not an anatomical model: an elliptical head with a bright
scalp/skull ring, grey matter rim, white matter, dark CSF ventricles, a smooth
multiplicative bias field and Rician-like noise. Lesions are small bright blobs
(1-30 pixels) mostly in white matter. Bright distractors (scalp, small bright
vessels-like dots outside the white matter) ensure a global threshold fails.
"""

import numpy as np
from scipy import ndimage

from .nifti_writer import save_nifti

__all__ = ["synthetic_slice", "synthetic_volume", "synthetic_affine", "write_synthetic_cohort"]


def _ellipse(shape, cy, cx, ry, rx, angle=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    y, x = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def synthetic_slice(
    size: int = 128,
    num_lesions: tuple[int, int] = (2, 6),
    seed=None,
    rng: np.random.Generator = None,
):
    """One slice: (image float32 (size, size), lesion mask uint8 (size, size)).

    Fast enough for unit tests, and a global threshold fails on it (bright scalp and
    distractor dots), as on real slices.

    Args:
        size: the slice's side in pixels.
        num_lesions: the inclusive range of lesions drawn; each covers 1-30 pixels and
            lies inside the white matter. (0, 0): a lesion-free slice.
        seed: seeds a new generator when ``rng`` is None.
        rng: the generator to draw from (a volume's slices share one).

    Returns:
        ``(image, mask)``: float32 (size, size), white matter about 0.75, and uint8
        (size, size) of 0/1.
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    shape = (size, size)
    c = size / 2.0
    ry, rx = size * rng.uniform(0.40, 0.46), size * rng.uniform(0.33, 0.40)
    angle = rng.uniform(-0.15, 0.15)
    head = _ellipse(shape, c, c, ry, rx, angle)
    brain = _ellipse(shape, c, c, ry * 0.86, rx * 0.84, angle)
    white = _ellipse(shape, c, c, ry * 0.68, rx * 0.64, angle)
    vent_l = _ellipse(shape, c - size * 0.03, c - size * 0.07, size * 0.12, size * 0.035, 0.25)
    vent_r = _ellipse(shape, c - size * 0.03, c + size * 0.07, size * 0.12, size * 0.035, -0.25)
    ventricles = vent_l | vent_r

    image = np.zeros(shape, np.float32)
    image[head] = 1.6  # scalp / skull marrow: bright on T1w
    image[brain] = 0.55  # cortical grey matter
    image[white] = 0.75  # (unmyelinated) white matter
    image[ventricles] = 0.2  # CSF

    # lesions: small bright blobs inside white matter, away from ventricles
    mask = np.zeros(shape, np.uint8)
    allowed = white & ~ndimage.binary_dilation(ventricles, iterations=2)
    candidates = np.argwhere(allowed)
    lo, hi = num_lesions
    for _ in range(int(rng.integers(lo, hi + 1))):
        cy, cx = candidates[rng.integers(len(candidates))]
        area = int(rng.integers(1, 31))
        r = max(0.5, np.sqrt(area / np.pi))
        blob = _ellipse(shape, cy, cx, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2))
        blob[cy, cx] = True
        blob &= allowed
        mask[blob] = 1
        image[blob] = rng.uniform(1.15, 1.5)

    # distractors: bright dots in grey matter / scalp that are not lesions
    rim = brain & ~white
    rim_points = np.argwhere(rim)
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rim_points[rng.integers(len(rim_points))]
        dot = _ellipse(shape, cy, cx, rng.uniform(0.8, 2.0), rng.uniform(0.8, 2.0))
        image[dot & ~(mask > 0)] = rng.uniform(1.1, 1.5)

    image = ndimage.gaussian_filter(image, 0.6)
    yy, xx = np.mgrid[:size, :size] / size
    bias = 1.0 + 0.15 * np.sin(np.pi * (yy * rng.uniform(0.5, 1.5) + xx * rng.uniform(0.5, 1.5)))
    image = image * bias
    noise = rng.normal(0, 0.05, shape) + 1j * rng.normal(0, 0.05, shape)
    image = np.abs(image + noise).astype(np.float32)
    return image, mask


# --- volumes and cohorts ---------------------------------------------------------

SYNTHETIC_INTENSITY_SCALE = 1000.0  # phantom intensity 1.0 is stored as int16 1000


def synthetic_affine(shape, spacing=(0.8, 0.8, 2.0)) -> np.ndarray:
    """(4, 4) RAS+ affine with voxel size ``spacing`` (mm) and the volume centred on the origin."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -(np.asarray(shape[:3], float) - 1) / 2 * np.asarray(spacing, float)
    return affine


def synthetic_volume(
    size: int = 64,
    depth: int = 6,
    lesion_fraction: float = 0.3,
    num_lesions: tuple[int, int] = (1, 5),
    spacing=(0.8, 0.8, 2.0),
    seed=None,
    rng: np.random.Generator = None,
    distinct_slices: int = 0,
):
    """A T1w-like volume (int16 (size, size, depth)), its lesion mask (uint8) and affine.

    Axial slices come from `synthetic_slice`, placed so that array row r and
    column c are canonical voxel (x, y) = (size-1-c, size-1-r): the volume then
    reads back through `nifti.volume_slice` as the same images.
    Intensities are stored as int16 = round(1000 * phantom value), as scanners do.

    Args:
        size: in-plane side in pixels.
        depth: number of axial slices.
        lesion_fraction: about this share of the slices, drawn from the middle 60 % of
            the volume and at least one, carry lesions; the rest are lesion-free.
        num_lesions: as `synthetic_slice`, per lesion slice.
        spacing: voxel size (mm) for the affine.
        seed, rng: as `synthetic_slice`.
        distinct_slices: > 0 generates only that many lesion-free and that many lesion
            slices and repeats them (a fast path for large benchmark cohorts).

    Returns:
        ``(image, mask, affine)``: int16 and uint8 (size, size, depth), and the (4, 4)
        `synthetic_affine`.
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    lo, hi = int(depth * 0.2), max(int(depth * 0.8), int(depth * 0.2) + 1)
    middle = np.arange(lo, min(hi, depth)) if depth > 2 else np.arange(depth)
    n_lesion = int(np.clip(round(lesion_fraction * depth), 1, len(middle)))
    lesion_slices = set(rng.choice(middle, size=n_lesion, replace=False).tolist())

    pool = {}
    if distinct_slices > 0:
        pool[False] = [synthetic_slice(size, (0, 0), rng=rng) for _ in range(distinct_slices)]
        pool[True] = [synthetic_slice(size, num_lesions, rng=rng) for _ in range(distinct_slices)]
    image = np.zeros((size, size, depth), np.int16)
    mask = np.zeros((size, size, depth), np.uint8)
    for z in range(depth):
        has = z in lesion_slices
        if pool:
            img2d, m2d = pool[has][z % distinct_slices]
        else:
            img2d, m2d = synthetic_slice(size, num_lesions if has else (0, 0), rng=rng)
        # inverse of the radiological display orientation of nifti.volume_slice
        image[:, :, z] = np.round(img2d * SYNTHETIC_INTENSITY_SCALE)[::-1, ::-1].T
        mask[:, :, z] = m2d[::-1, ::-1].T
    return image, mask, synthetic_affine(image.shape, spacing)


def _write_case(args) -> str:
    out_dir, case, seed_seq, overwrite, kwargs = args
    image_path = out_dir / "imagesTr" / f"{case}_0000.nii.gz"
    mask_path = out_dir / "labelsTr" / f"{case}.nii.gz"
    if image_path.exists() and mask_path.exists() and not overwrite:
        return case  # cached: both files are only ever written whole
    image, mask, affine = synthetic_volume(rng=np.random.default_rng(seed_seq), **kwargs)
    save_nifti(mask_path, mask, affine)
    save_nifti(image_path, image, affine)
    return case


# the name its dataset.json records (kept from when the phantom was rsrcnn_d2.data.synthetic,
# so that folders written then are still recognised)
PHANTOM = "rsrcnn_d2.data.synthetic (phantom)"
_PHANTOM_NAME = "synthetic PWML phantom (rsrcnn_d2)"
_PHANTOM_PARAMS = ("size", "depth", "lesion_fraction", "num_lesions", "spacing", "distinct_slices")


def _listed(kwargs: dict) -> dict:
    """Tuples as lists: the settings as dataset.json holds them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def _phantom_made_with(previous: dict):
    """The settings a phantom's dataset.json records; an earlier release's flat record too."""
    if "generator_settings" in previous:
        return previous["generator_settings"]
    if previous.get("name") == _PHANTOM_NAME and "seed" in previous:
        params = {k: previous.get(k) for k in _PHANTOM_PARAMS}
        return {"generator": PHANTOM, "seed": previous["seed"], "params": params}
    return None


def write_synthetic_cohort(
    out_dir,
    num_subjects: int = 6,
    size: int = 64,
    depth: int = 6,
    seed: int = 0,
    lesion_fraction: float = 0.3,
    num_lesions: tuple[int, int] = (1, 5),
    spacing=(0.8, 0.8, 2.0),
    distinct_slices: int = 0,
    workers: int = 1,
    overwrite: bool = False,
):
    """Write a seeded synthetic cohort in nnU-Net raw layout; return the case names.

    ``out_dir/imagesTr/PWML_###_0000.nii.gz``, ``out_dir/labelsTr/PWML_###.nii.gz``
    and a ``dataset.json`` (nnU-Net v2 fields). Subject i's volume depends only
    on (seed, i), so cohorts of different sizes share their first subjects.

    Args:
        out_dir: the cohort folder; one holding a cohort made with other settings is
            refused (ValueError) unless ``overwrite``.
        num_subjects: cases to write, at least 1.
        size, depth, lesion_fraction, num_lesions, spacing, distinct_slices: each
            volume's, as `synthetic_volume`.
        seed: the cohort's seed.
        workers: > 1 writes cases in that many processes.
        overwrite: existing cases are reused unless this is set.

    Returns:
        The case names, ``PWML_000``, ``PWML_001``, ...
    """
    import multiprocessing

    from ..data.fileio import atomic_write_json
    from .cohort import check_cohort_output
    from .stamp import claim_cohort_folder

    out_dir = check_cohort_output(out_dir, num_subjects)
    if int(size) < 1 or int(depth) < 1:
        raise ValueError(f"size and depth must be positive, got size={size}, depth={depth}")
    if any(float(s) <= 0 for s in spacing):
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}")
    kwargs = dict(
        size=int(size),
        depth=int(depth),
        lesion_fraction=float(lesion_fraction),
        num_lesions=tuple(num_lesions),
        spacing=tuple(float(v) for v in spacing),
        distinct_slices=int(distinct_slices),
    )
    settings = {"generator": PHANTOM, "seed": int(seed), "params": _listed(kwargs)}
    # before the first case: a run killed halfway and re-run with other settings is refused
    claim_cohort_folder(out_dir, settings, overwrite, made_with=_phantom_made_with)
    seeds = np.random.SeedSequence(seed).spawn(num_subjects)
    jobs = [(out_dir, f"PWML_{i:03d}", s, overwrite, kwargs) for i, s in enumerate(seeds)]
    if workers > 1:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers) as pool:
            cases = pool.map(_write_case, jobs)
    else:
        cases = [_write_case(j) for j in jobs]
    dataset = {
        "name": _PHANTOM_NAME,
        "channel_names": {"0": "T1w"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": num_subjects,
        "file_ending": ".nii.gz",
        "seed": seed,
        **_listed(kwargs),
        "generator_settings": settings,
    }
    atomic_write_json(out_dir / "dataset.json", dataset)
    return cases
