"""Writing a synthetic volume as NIfTI: one writer for both synthetic cohorts.

Image and mask of a subject get the same affine as sform and qform (code 1,
scanner-anatomical, mm), so `data.nifti.read_nifti_pair` accepts them as a pair;
the file appears only when complete (`data.fileio.atomic_write`).
"""

from pathlib import Path
from typing import Union

import numpy as np

from ..data.fileio import atomic_write

__all__ = ["save_nifti"]


def save_nifti(path: Union[str, Path], array: np.ndarray, affine: np.ndarray) -> None:
    """Save ``array`` with ``affine`` as sform and qform, atomically.

    Args:
        path: the ``.nii.gz`` (or ``.nii``) file to write.
        array: the (X, Y, Z) volume, stored in its own dtype.
        affine: (4, 4) voxel-to-mm (RAS+) affine.
    """
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: image.to_filename(tmp))
