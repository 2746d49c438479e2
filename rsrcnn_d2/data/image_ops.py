"""Small operations on grey images that several layers share.

Here, below modeling and visualization, so that drawing a figure does not
import the model code only to scale an image.
"""

import numpy as np

__all__ = ["to_uint8"]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Map an image linearly onto 0..255 (its min to 0, its max to 255).

    The dense CRF's intensity scale ``c1`` is in 8-bit units, as in the
    reference, which worked on 8-bit slices; overlays show slices the same way.
    A constant image maps to zeros; NaN or inf is refused (no scale exists).
    Any shape in, uint8 of the same shape out.
    """
    image = np.asarray(image, dtype=np.float32)
    lo, hi = float(image.min()), float(image.max())
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("image contains NaN or inf; cannot scale it to 0..255")
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.round((image - lo) * (255.0 / (hi - lo))).astype(np.uint8)
