"""Helpers shared by the data tests (no tests here): tiny NIfTI subjects and cohorts."""

from pathlib import Path

import numpy as np
import pytest

from rsrcnn_d2.synth.phantom import synthetic_affine, synthetic_volume, write_synthetic_cohort

from conftest import SHARED_SLICES


def save_nifti(path, array, affine=None):
    """Write ``array`` as NIfTI (default affine 0.8 x 0.8 x 2 mm, RAS+)."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = synthetic_affine(array.shape[:3]) if affine is None else affine
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def nnunet_case(root, case, image, mask, image_affine=None, mask_affine=None):
    """Write one nnU-Net case; returns (image path, mask path)."""
    root = Path(root)
    return (
        save_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", image, image_affine),
        save_nifti(
            root / "labelsTr" / f"{case}.nii.gz",
            mask,
            image_affine if mask_affine is None else mask_affine,
        ),
    )


def small_cohort(root, n=6, seed=0, size=64, depth=6):
    write_synthetic_cohort(root, n, size=size, depth=depth, seed=seed)
    return Path(root)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Six 64x64x6 synthetic subjects in nnU-Net layout (module-scoped: built once)."""
    return small_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def converted(cohort, tmp_path_factory):
    """The cohort converted with lesion slices only, seed 0."""
    from rsrcnn_d2.data.convert import convert_pwml

    out = tmp_path_factory.mktemp("converted") / "pwml"
    convert_pwml(cohort, out, workers=1)
    return out


def converted_cohort(base, **cohort_args):
    """``base/raw`` (a synthetic cohort, ``write_synthetic_cohort`` arguments) converted into
    ``base/pwml`` (lesion slices); returns ``base``, a DETECTRON2_DATASETS root."""
    from rsrcnn_d2.data.convert import convert_pwml

    base = Path(base)
    write_synthetic_cohort(base / "raw", **cohort_args)
    convert_pwml(base / "raw", base / "pwml", workers=1)
    return base


def lesion_volume(seed=0, size=64, depth=6):
    return synthetic_volume(size, depth, seed=seed)


__all__ = [
    "SHARED_SLICES",
    "save_nifti",
    "nnunet_case",
    "small_cohort",
    "cohort",
    "converted",
    "converted_cohort",
    "lesion_volume",
    "np",
]
