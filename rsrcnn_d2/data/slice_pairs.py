"""Reading one 2-D image/mask pair from the reference implementation's slice folders.

The reference stores 8-bit PNGs with masks of 0 and 255; masks of 0 and 1 are
accepted too. Anything else is rejected unless binarising was asked for, as
for NIfTI masks (nifti.py); NaN or infinite mask values are rejected even then.
A constant image with lesions in its mask is refused (blank slices outside the
head are normal, a blank slice with lesions is a broken export).
"""

from pathlib import Path
from typing import Union

import numpy as np

from .errors import PWMLDataError
from .fileio import read_slice

__all__ = ["read_slice_pair"]


def read_slice_pair(
    image_path: Union[str, Path], mask_path: Union[str, Path], binarize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One slice of a slice folder, read and checked as the conversion needs it.

    Args:
        image_path: the grey slice (any image PIL reads, or .npy).
        mask_path: its lesion mask, 0/1 or 0/255.
        binarize: any value > 0 is lesion; else other values are a PWMLDataError.

    Returns:
        ``(image, mask)``: float32 (H, W) and uint8 (H, W) of 0/1. PWMLDataError naming
        the file for a size mismatch, NaN or inf, or a constant image with lesions.
    """
    image, raw = read_slice(image_path), read_slice(mask_path)
    if image.shape != raw.shape:
        raise PWMLDataError(
            mask_path,
            f"mask size {raw.shape} differs from image size {image.shape} of {image_path}",
        )
    if not np.isfinite(image).all():
        raise PWMLDataError(image_path, "image contains NaN or infinite intensities")
    if not np.isfinite(raw).all():
        raise PWMLDataError(mask_path, "mask contains NaN or infinite values")
    mask = (raw > 0).astype(np.uint8)
    if mask.any() and image.min() == image.max():
        raise PWMLDataError(
            image_path,
            f"image is constant (every pixel {image.flat[0]:g}) but "
            f"its mask {mask_path} has lesions; a blank slice",
        )
    if binarize:
        return image, mask
    values = np.unique(raw)
    if not (set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) <= {0.0, 255.0}):
        raise PWMLDataError(
            mask_path,
            f"mask is not binary (values {values[:6].tolist()}); "
            "expected 0/1 or 0/255, or pass binarize=True / --binarize",
        )
    return image, mask
