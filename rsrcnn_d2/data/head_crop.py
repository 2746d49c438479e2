"""The head's bounding box in a slice: the reference's input was cropped to it.

The reference implementation's slices are crops of the head (about 100 x 90
pixels), which it then resized to 512: lesions of 1-15 pixels reach the network
at 5-75 pixels. ``INPUT.CROP_TO_HEAD`` reproduces that: the mapper and the
predictor crop each slice to `head_box` before the resize, pass the box on as
``crop_box``, and the model puts its outputs back at the full slice's size.
"""

import numpy as np
from scipy import ndimage

__all__ = ["head_box", "crop_to_head"]

# foreground: above this fraction of the way from the background level to the
# bright end; isolated noise above it is left out by keeping the largest region
_FOREGROUND_FRACTION = 0.1


def head_box(image: np.ndarray, margin: int = 2) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), half-open, of the largest bright connected region plus ``margin``.

    ``image``: (H, W), any intensity scale; ``margin`` in pixels, clipped to the slice.

    The background level is the image's 1st percentile and the bright end its
    99.5th, so a few hot pixels do not set the threshold; regions are
    8-connected. A slice with no
    foreground (constant, or all noise below the threshold) gives the whole slice.
    """
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"head_box expects a non-empty 2-D slice, got shape {image.shape}")
    if margin < 0:
        raise ValueError(f"head crop margin must be >= 0, got {margin}")
    height, width = image.shape
    image = np.asarray(image, np.float32)
    low, high = np.percentile(image, [1.0, 99.5])
    if not high > low:
        return 0, 0, width, height
    labels, count = ndimage.label(
        image > low + _FOREGROUND_FRACTION * (high - low), structure=np.ones((3, 3))
    )
    if count == 0:
        return 0, 0, width, height
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    ys, xs = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    return (
        max(0, xs.start - margin),
        max(0, ys.start - margin),
        min(width, xs.stop + margin),
        min(height, ys.stop + margin),
    )


def crop_to_head(
    image: np.ndarray, margin: int = 2
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The slice cropped to `head_box`, and that box (x0, y0, x1, y1).

    ``image``: (H, W); the crop is a (y1 - y0, x1 - x0) view of it, not a copy.
    """
    x0, y0, x1, y1 = head_box(image, margin)
    return image[y0:y1, x0:x1], (x0, y0, x1, y1)
