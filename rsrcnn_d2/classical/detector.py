"""A local-contrast detector of punctate bright lesions: our classical baseline (row A).

Row A of the paper's Table 1 is Mukherjee et al.'s classical method, which was
never released. This is *not* that method: it is our own non-learned detector
in its spirit, so that the project's tables have a classical floor scored by
the same evaluator. PWML are hyperintense dots of a few pixels in darker white
matter; bright scalp and cortex are larger, elongated structures. Per slice:

1. smooth with a small Gaussian (``smoothing_sigma``; a matched filter for dots);
2. background = grey opening with a flat square of side ``background_size``;
   the residue (white top-hat) keeps bright things narrower than the square.
   In "3d" mode the brightness that persists into a neighbouring slice
   (``min(I_z, max(I_z-1, I_z+1))``, a grey opening along the slice axis) is
   background too, weighted by ``through_plane_weight``: a lesion is bright in
   its own slice, a vessel or fold cut across slices is bright in several;
3. per-image robust normalisation: z = (residue − median) / (1.4826 · MAD),
   over the tissue (the slice's own spread at lesion scale, so one threshold
   serves scanners and slices of different intensity ranges);
4. blobs = 8-connected components of z ≥ ``hysteresis · threshold`` that
   reach z ≥ ``threshold`` somewhere, inside the tissue mask, with an area in
   [``min_area``, ``max_area``] px.

All in numpy/scipy.ndimage on the slice as given (its own pixels: parameters
are in pixels of the data it is tuned on). Speed: benchmarks/bench_classical.py.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ..data.instances import EIGHT_CONNECTED
from .params import ClassicalParams

__all__ = [
    "Detection",
    "detect_slice",
    "detect_stack",
    "tissue_mask",
    "otsu_threshold",
    "local_contrast",
]

MAD_TO_SD = 1.4826  # MAD of a normal distribution times this is its standard deviation
_STATS_MAX_PIXELS = 1 << 16  # robust statistics from at most this many (strided) pixels


@dataclass
class Detection:
    """``mask``: bool (H, W), the kept blobs; ``prob``: float32 (H, W) in [0, 1].

    ``prob`` is a logistic score of the local contrast (0.5 at the low threshold),
    scaled by 0.49 off the mask, so it is at least 0.5 exactly on the mask and
    thresholding it at 0.5 gives the mask.
    ``contrast``: the robust z-score map (step 3), 0 outside the tissue.
    """

    mask: np.ndarray
    prob: np.ndarray
    contrast: np.ndarray


def otsu_threshold(image: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of the image's histogram (the level best splitting two classes)."""
    values = np.asarray(image, np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(edges[1:][int(np.argmax(between))])  # split after the best bin


def tissue_mask(image: np.ndarray, erosion: int = 0) -> np.ndarray:
    """The head estimated from the image: above Otsu, holes filled, largest part, eroded.

    ``image``: (H, W); returns bool (H, W).

    Holes are the background components that do not touch the border (the dark
    white matter inside a bright scalp/cortex ring is a hole). ``erosion`` px
    (a square of side 2·erosion+1) removes the scalp and outer cortex.
    """
    image = np.asarray(image)
    fg = image > otsu_threshold(image)
    background, n_bg = ndimage.label(~fg)
    if n_bg:
        border = np.unique(
            np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
        )
        fg = ~np.isin(background, border[border > 0]) & (background > 0) | fg
    labels, n = ndimage.label(fg)
    if n > 1:
        fg = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    if erosion > 0 and fg.any():
        fg = ndimage.minimum_filter(fg, size=2 * erosion + 1, mode="constant", cval=False)
    return fg


def _opening(image: np.ndarray, size: int) -> np.ndarray:
    # flat square: separable min then max filters (fast at any size)
    return ndimage.maximum_filter(ndimage.minimum_filter(image, size=size), size=size)


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    image = np.asarray(image, np.float32)
    return ndimage.gaussian_filter(image, sigma, truncate=3.0) if sigma > 0 else image


def local_contrast(
    image: np.ndarray,
    params: ClassicalParams,
    neighbours: Sequence[Optional[np.ndarray]] = (),
    tissue: Optional[np.ndarray] = None,
) -> np.ndarray:
    """The robust z-score of the background-subtracted slice (steps 1–3), float32 (H, W).

    Args:
        image: (H, W) slice.
        params: the detector's parameters.
        neighbours: the adjacent (H, W) slices (None where absent), used in "3d" mode.
        tissue: (H, W) bool, where the statistics are taken and contrast is kept
            (default: all).

    Returns:
        (H, W) float32, in units of the slice's own spread; 0 outside ``tissue`` and
        everywhere when the slice has no spread.
    """
    smooth = _smooth(image, params.smoothing_sigma)
    background = _opening(smooth, params.background_size)
    near = [_smooth(n, params.smoothing_sigma) for n in neighbours if n is not None]
    if params.mode == "3d" and near and params.through_plane_weight > 0:
        for n in near:
            if n.shape != smooth.shape:
                raise ValueError(
                    f"neighbouring slice of shape {n.shape} beside a slice of shape {smooth.shape}"
                )
        persisting = np.minimum(smooth, np.maximum.reduce(near))
        w = np.float32(params.through_plane_weight)
        background = np.maximum(background, background + w * (persisting - background))
    residue = smooth - background  # >= 0: an opening lies below what it opens
    inside = residue if tissue is None else residue[tissue]
    if inside.size == 0:
        return np.zeros(residue.shape, np.float32)
    sample = inside.ravel()[:: max(1, inside.size // _STATS_MAX_PIXELS)]
    median = float(np.median(sample))
    spread = MAD_TO_SD * float(np.median(np.abs(sample - median)))
    if spread <= 0:  # a flat tissue (phantoms): fall back on the plain standard deviation
        spread = float(sample.std())
    if spread <= 0:
        return np.zeros(residue.shape, np.float32)
    z = (residue - np.float32(median)) / np.float32(spread)
    if tissue is not None:
        z[~tissue] = 0
    return z.astype(np.float32, copy=False)


def _blobs(z: np.ndarray, params: ClassicalParams) -> np.ndarray:
    """Step 4: hysteresis components of z with an area in range."""
    low = z >= params.hysteresis * params.threshold
    labels, n = ndimage.label(low, structure=EIGHT_CONNECTED)
    if n == 0:
        return np.zeros(z.shape, bool)
    keep = np.zeros(n + 1, bool)
    keep[labels[z >= params.threshold]] = True
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep &= (area >= params.min_area) & (area <= params.max_area)
    keep[0] = False
    return keep[labels]


def detect_slice(
    image: np.ndarray, params: ClassicalParams, neighbours: Sequence[Optional[np.ndarray]] = ()
) -> Detection:
    """Detect punctate bright lesions in one 2-D slice (module docstring for the steps).

    Args:
        image: (H, W) slice at its own size.
        params: the detector's parameters.
        neighbours: as `local_contrast`.

    Returns:
        `Detection` with (H, W) mask, prob and contrast; all zero for a constant slice.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {image.shape}")
    if image.size == 0 or image.min() == image.max():  # no contrast, no lesion
        zero = np.zeros(image.shape, np.float32)
        return Detection(np.zeros(image.shape, bool), zero, zero)
    tissue = tissue_mask(image, params.tissue_erosion) if params.tissue_mask else None
    z = local_contrast(image, params, neighbours, tissue)
    mask = _blobs(z, params)
    low = params.hysteresis * params.threshold
    score = 1.0 / (1.0 + np.exp(np.clip(low - z, -50.0, 50.0)))  # 0.5 at the low threshold
    prob = np.where(mask, score, 0.49 * score).astype(np.float32)  # < 0.5 off the mask
    return Detection(mask, prob, z)


def detect_stack(slices: Sequence[np.ndarray], params: ClassicalParams) -> list[Detection]:
    """`Detection` of each slice of a through-plane ordered stack; in "3d" mode with its
    neighbours."""
    out = []
    for k, image in enumerate(slices):
        neighbours = ()
        if params.mode == "3d":
            neighbours = (
                slices[k - 1] if k > 0 else None,
                slices[k + 1] if k + 1 < len(slices) else None,
            )
        out.append(detect_slice(image, params, neighbours))
    return out
