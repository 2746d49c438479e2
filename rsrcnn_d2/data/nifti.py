"""Reading a T1w volume and its lesion mask from NIfTI, checked, in canonical orientation.

Every check nnU-Net would make is made here, before anything is written, and
each failure names the file: 3-D only and not empty, image and mask of equal shape
and affine, real-valued finite intensities, an image that is not blank (constant),
a finite and binary mask of integer or float labels (or an explicit request to
binarise, which never turns NaN into background). The dataset check asks for every
problem of a pair at once (``problems=``), a conversion stops at the first.

Orientation: both volumes are reoriented with ``nibabel.as_closest_canonical``
(RAS+), so "axial slice k" means the same thing for every scanner. A 2-D slice
is then shown the way radiologists read it (`volume_slice`): for an axial slice
anterior is up and the patient's right is on the image's left; coronal and
sagittal slices have superior up. `put_slice` is the exact inverse, for writing
predictions back into a volume.

File names: `NIFTI_ENDINGS` and `case_name` (nnU-Net's ``<case>_0000.nii.gz``)
are the one definition that discovery, prediction and evaluation use.
`read_volume` is the one reader of a single volume (what a prediction or a
mask to score is); `read_nifti_pair` reads a training subject with the same checks.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from .errors import PWMLDataError

__all__ = [
    "affine_difference",
    "AXES",
    "axis_name",
    "NIFTI_ENDINGS",
    "NNUNET_T1_CHANNEL",
    "split_nifti_name",
    "case_name",
    "NiftiPair",
    "axis_index",
    "load_nifti_3d",
    "Volume",
    "read_volume",
    "read_nifti_pair",
    "volume_slice",
    "put_slice",
    "slice_spacing",
]

# canonical (RAS+) axis that is constant across a slice; the keys are the programs' --axis
# choices (rsrcnn_d2.cli.common.AXIS_NAMES, which must list them in this order)
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
NIFTI_ENDINGS = (".nii.gz", ".nii")
NNUNET_T1_CHANNEL = "_0000"  # nnU-Net's channel suffix of the T1w image (the only one used)


def axis_name(axis: Union[str, int]) -> str:
    """ "sagittal", "coronal" or "axial" for a canonical axis given by index or name."""
    index = axis_index(axis)
    return next(name for name, i in AXES.items() if i == index)


def split_nifti_name(name: str) -> tuple[Optional[str], Optional[str]]:
    """(stem, ending) of a NIfTI file name (``a.nii.gz`` -> ("a", ".nii.gz")); (None, None) else."""
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)], ending
    return None, None


def case_name(path: Union[str, os.PathLike]) -> str:
    """``case`` from ``case.nii.gz``, ``case.nii`` or nnU-Net's T1w channel ``case_0000.nii.gz``."""
    stem, _ = split_nifti_name(Path(path).name)
    if stem is None:
        raise PWMLDataError(path, "not a NIfTI file (.nii or .nii.gz)")
    if stem.endswith(NNUNET_T1_CHANNEL) and len(stem) > len(NNUNET_T1_CHANNEL):
        stem = stem[: -len(NNUNET_T1_CHANNEL)]
    return stem


def axis_index(axis: Union[str, int]) -> int:
    """0, 1 or 2 from "sagittal" / "coronal" / "axial" or the index itself."""
    if isinstance(axis, str):
        if axis.lower() not in AXES:
            raise ValueError(f"unknown slice axis {axis!r}; use one of {sorted(AXES)} or 0/1/2")
        return AXES[axis.lower()]
    if int(axis) not in (0, 1, 2):
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis}")
    return int(axis)


@dataclass
class NiftiPair:
    """A checked subject: canonical image (float32 or integer) and binary mask (uint8),
    same shape."""

    image: np.ndarray
    mask: np.ndarray
    affine: np.ndarray  # canonical affine (4, 4)
    zooms: tuple[float, float, float]  # voxel size along the canonical axes, mm


def load_nifti_3d(path: Path):
    """nibabel image of a 3-D NIfTI; PWMLDataError naming the file if unreadable or not 3-D."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as e:  # ImageFileError, OSError, EOFError, zlib.error ...
        raise PWMLDataError(path, f"cannot read NIfTI ({type(e).__name__}: {e})") from e
    if len(img.shape) != 3:
        raise PWMLDataError(
            path,
            f"expected a 3-D volume, got shape {img.shape} "
            f"({len(img.shape)}-D); split 4-D series into 3-D files first",
        )
    if 0 in img.shape:
        raise PWMLDataError(path, f"volume of shape {img.shape} has no voxels")
    return img


def _data(img, path: Path) -> np.ndarray:
    try:
        return np.asanyarray(img.dataobj)
    except Exception as e:  # truncated gzip / short file
        raise PWMLDataError(
            path, f"cannot read voxel data, truncated or corrupt file ({type(e).__name__}: {e})"
        ) from e


def _canonical(img, path: Path):
    import nibabel as nib

    try:  # reorienting reads the voxels: truncated files fail here
        return nib.as_closest_canonical(img)
    except Exception as e:
        raise PWMLDataError(
            path, f"cannot read voxel data, truncated or corrupt file ({type(e).__name__}: {e})"
        ) from e


def _voxel_type(dtype: np.dtype) -> str:
    """A voxel type as a user knows it: "RGB colour" rather than numpy's record fields."""
    return f"{''.join(dtype.names)} colour" if dtype.names else str(dtype)


def _check_intensities(image: np.ndarray, path: Path) -> None:
    if image.dtype.kind not in "fiub":
        raise PWMLDataError(path, f"unsupported voxel type {_voxel_type(image.dtype)}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise PWMLDataError(path, "image contains NaN or infinite intensities")


@dataclass
class Volume:
    """A volume as stored (``source``: affine, header) and its voxels in canonical RAS+ order."""

    source: "nibabel.spatialimages.SpatialImage"  # noqa: F821
    canonical: np.ndarray


def read_volume(path: Union[str, os.PathLike]) -> Volume:
    """Load a 3-D NIfTI and its canonical voxels: a real-valued, finite volume, or PWMLDataError."""
    path = Path(path)
    img = load_nifti_3d(path)
    canonical = _data(_canonical(img, path), path)
    _check_intensities(canonical, path)
    return Volume(source=img, canonical=canonical)


def _checked_image(img, path: Path) -> np.ndarray:
    image = _data(img, path)
    _check_intensities(image, path)
    if image.min() == image.max():  # all zero: a failed export, not a scan
        raise PWMLDataError(
            path, f"image is constant (every voxel {image.flat[0]}); an empty or blank T1w volume"
        )
    return image


def _checked_mask(msk, path: Path, binarize: bool) -> np.ndarray:
    raw = _data(msk, path)
    if raw.dtype.kind not in "fiub":  # RGB (structured) or complex voxels are no labels
        what = _voxel_type(raw.dtype)
        raise PWMLDataError(
            path, f"unsupported mask voxel type {what}; expected integer or float labels"
        )
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise PWMLDataError(path, "mask contains NaN or infinite values")
    if binarize:
        return (raw > 0).astype(np.uint8)
    if not ((raw == 0) | (raw == 1)).all():
        bad = np.unique(raw[(raw != 0) & (raw != 1)])[:5]
        raise PWMLDataError(
            path,
            f"mask is not binary (values such as {bad.tolist()} "
            "besides 0 and 1); pass binarize=True / --binarize "
            "to treat every non-zero voxel as lesion",
        )
    return raw.astype(np.uint8)


def _collect(found: list[PWMLDataError], step: Callable, *args):
    """``step(*args)``, or None with its PWMLDataError added to ``found``."""
    try:
        return step(*args)
    except PWMLDataError as e:
        found.append(e)
        return None


def affine_difference(a: np.ndarray, b: np.ndarray) -> str:
    """How two voxel-to-world affines differ, in one line: the largest entry difference, the
    voxel sizes and the origins (mm)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    sizes = [tuple(np.round(np.linalg.norm(m[:3, :3], axis=0), 4).tolist()) for m in (a, b)]
    origins = [tuple(np.round(m[:3, 3], 4).tolist()) for m in (a, b)]
    return (
        f"by up to {np.abs(a - b).max():.4g}; voxel sizes {sizes[0]} vs {sizes[1]} mm, "
        f"origins {origins[0]} vs {origins[1]} mm"
    )


def read_nifti_pair(
    image_path: Union[str, Path],
    mask_path: Union[str, Path],
    binarize: bool = False,
    affine_atol: float = 1e-3,
    problems: Optional[list[PWMLDataError]] = None,
) -> Optional[NiftiPair]:
    """Load, check and canonicalise one subject's T1w volume and lesion mask.

    ``binarize``: treat every non-zero mask voxel as lesion instead of rejecting
    masks whose values are not exactly 0 and 1. ``affine_atol`` (mm) absorbs the
    float32 rounding of headers written by different tools. ``problems``: a list
    that receives every problem of the pair (the dataset check lists them all) and
    None is returned; without it the first problem is raised.
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    found: list[PWMLDataError] = []
    img = _collect(found, load_nifti_3d, image_path)
    msk = _collect(found, load_nifti_3d, mask_path)
    if img is not None and msk is not None:
        if img.shape != msk.shape:
            found.append(
                PWMLDataError(
                    mask_path,
                    f"mask shape {msk.shape} differs from image shape {img.shape} of {image_path}",
                )
            )
        elif not np.allclose(img.affine, msk.affine, atol=affine_atol):
            found.append(
                PWMLDataError(
                    mask_path,
                    f"mask affine differs from the affine of {image_path} "
                    f"({affine_difference(msk.affine, img.affine)})",
                )
            )
    # each volume's own checks run even when the pair does not match, so all are listed
    if img is not None:
        img = _collect(found, _canonical, img, image_path)
    if msk is not None:
        msk = _collect(found, _canonical, msk, mask_path)
    image = None if img is None else _collect(found, _checked_image, img, image_path)
    mask = None if msk is None else _collect(found, _checked_mask, msk, mask_path, binarize)
    if found:
        if problems is None:
            raise found[0]
        problems.extend(found)
        return None
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return NiftiPair(image=image, mask=mask, affine=img.affine, zooms=zooms)


def _plane(axis: int) -> tuple[int, int]:
    # the two in-plane canonical axes, in increasing order
    return tuple(a for a in (0, 1, 2) if a != axis)


def volume_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along canonical ``axis`` as a 2-D image in radiological display.

    Rows run along the second in-plane axis, reversed (anterior / superior up);
    columns along the first, reversed (patient's right on the left for axial and
    coronal slices, anterior on the left for sagittal ones). A view, no copy.
    """
    where = [slice(None)] * 3
    where[axis] = index
    slab = volume[tuple(where)]  # (first in-plane, second in-plane); np.take would copy
    return slab.T[::-1, ::-1]


def put_slice(volume: np.ndarray, axis: int, index: int, image: np.ndarray) -> None:
    """Write a 2-D image from `volume_slice`'s orientation back into ``volume`` in place."""
    where = [slice(None)] * 3
    where[axis] = index
    volume[tuple(where)] = image[::-1, ::-1].T


def canonical_shape_and_zooms(img) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and voxel size (mm) of a 3-D image along the canonical (RAS+) axes, from its
    header and affine only: the stored axes may come in any order (e.g. S, A, R)."""
    from nibabel.orientations import io_orientation

    shape, zooms = [0, 0, 0], [0.0, 0.0, 0.0]
    for stored, (canonical, _) in enumerate(io_orientation(img.affine)):
        shape[int(canonical)] = int(img.shape[stored])
        zooms[int(canonical)] = float(img.header.get_zooms()[stored])
    return tuple(shape), tuple(zooms)


def slice_spacing(zooms: tuple[float, float, float], axis: int) -> tuple[float, float, float]:
    """(row, column, through-plane) spacing in mm of a `volume_slice` image."""
    first, second = _plane(axis)
    return tuple(round(float(zooms[a]), 6) for a in (second, first, axis))
