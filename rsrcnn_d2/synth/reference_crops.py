"""Slices in the reference's form: cropped to the head, resized, min-max stretched to 8 bit.

The reference implementation's slices are ~100x90-pixel crops of the head,
stretched to 0-255. The synthetic cohort's PNG export and the realism
measurements both go through `reference_crop`, so a generated slice is measured
exactly in the form a model would be trained on.
"""

import numpy as np

from ..data.head_crop import head_box

__all__ = ["resize_area", "reference_crop", "CROP_LONG_SIDE", "MASK_AREA_THRESHOLD"]

CROP_LONG_SIDE = 100  # pixels on the crop's long side, as the reference's slices
MASK_AREA_THRESHOLD = 0.5  # a crop pixel is lesion when at least half its area was lesion


def resize_area(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float array by area averaging (each output pixel averages its footprint).

    ``array`` (H, W) -> float32 of ``shape`` (h, w).

    Shrinking this way is what an acquisition at the coarser pixel size would
    record, and it keeps a lesion's partial volume instead of aliasing it.
    """
    from PIL import Image

    out = Image.fromarray(np.asarray(array, np.float32), mode="F").resize(
        (int(shape[1]), int(shape[0])), Image.Resampling.BOX
    )
    return np.asarray(out, np.float32)


def reference_crop(image: np.ndarray, mask: np.ndarray, long_side: int = CROP_LONG_SIDE):
    """(uint8 crop, bool mask crop) of one slice in the reference's slice form.

    The head's box is resized so its long side is ``long_side`` pixels (area
    averaging), then min-max stretched to 0-255; the mask is area-averaged the
    same way and thresholded at `MASK_AREA_THRESHOLD`.

    Args:
        image: (H, W) slice, any intensity scale.
        mask: (H, W) lesion mask, non-zero is lesion.
        long_side: pixels on the crop's long side.

    Returns:
        ``(crop, mask_crop)``: uint8 (h, w) and bool (h, w), max(h, w) = ``long_side``.
    """
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
    if long_side < 1:
        raise ValueError(f"long_side must be positive, got {long_side}")
    x0, y0, x1, y1 = head_box(np.asarray(image, np.float32), margin=0)  # the reference crops tight
    crop = np.asarray(image[y0:y1, x0:x1], np.float32)
    crop_mask = np.asarray(mask[y0:y1, x0:x1], np.float32)
    scale = long_side / max(crop.shape)
    shape = (max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale)))
    small = resize_area(crop, shape)
    small_mask = resize_area(crop_mask, shape) >= MASK_AREA_THRESHOLD
    low, high = float(small.min()), float(small.max())
    stretched = (small - low) / max(high - low, 1e-6) * 255.0
    return np.clip(np.round(stretched), 0, 255).astype(np.uint8), small_mask
