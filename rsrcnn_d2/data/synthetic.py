"""Synthetic T1w-like neonatal brain slices with punctate hyperintense lesions.

A seeded phantom, not an anatomical model: an elliptical head with a bright
scalp/skull ring, grey matter rim, white matter, dark CSF ventricles, a smooth
multiplicative bias field and Rician-like noise. Lesions are small bright blobs
(1-30 pixels) mostly in white matter. Bright distractors (scalp, small bright
vessels-like dots outside the white matter) ensure a global threshold fails.
"""
from typing import Tuple

import numpy as np
from scipy import ndimage

__all__ = ["synthetic_slice"]


def _ellipse(shape, cy, cx, ry, rx, angle=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    y, x = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def synthetic_slice(size: int = 128, num_lesions: Tuple[int, int] = (2, 6), seed=None,
                    rng: np.random.Generator = None):
    """One slice: (image float32 (size, size), lesion mask uint8 (size, size)).

    ``num_lesions`` is the inclusive range of lesions drawn; each covers 1-30
    pixels and lies inside the white matter.
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
    image[head] = 1.6          # scalp / skull marrow: bright on T1w
    image[brain] = 0.55        # cortical grey matter
    image[white] = 0.75        # (unmyelinated) white matter
    image[ventricles] = 0.2    # CSF

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
    yy, xx = np.mgrid[: size, : size] / size
    bias = 1.0 + 0.15 * np.sin(np.pi * (yy * rng.uniform(0.5, 1.5) + xx * rng.uniform(0.5, 1.5)))
    image = image * bias
    noise = rng.normal(0, 0.05, shape) + 1j * rng.normal(0, 0.05, shape)
    image = np.abs(image + noise).astype(np.float32)
    return image, mask
