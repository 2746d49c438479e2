"""How hard a PWML slice is, measured the same way on real and synthetic data.

Three figures decide whether a synthetic cohort teaches what real slices need:
how small lesions are on head crops, how far they stand out from their
immediate surroundings (not from the whole image), and whether one global
intensity threshold could find them (on real slices it cannot: scalp and cortex
are brighter). A fourth, for volumes only, is how many lesions are 3-D, i.e.
cross two or more slices. All figures are plain functions of arrays; lesions
are 8-connected components (`instances.label_lesions`' convention).
"""

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

__all__ = [
    "RING_WIDTH",
    "lesion_measures",
    "best_threshold_dice",
    "lesion_slice_spans",
    "summarize_measures",
    "volume_crops",
    "volume_realism",
]

RING_WIDTH = 3  # pixels of surrounding tissue the contrast is measured against
_EIGHT = np.ones((3, 3), bool)


def lesion_measures(image: np.ndarray, mask: np.ndarray) -> list[tuple[int, float]]:
    """(area in pixels, contrast) of every 2-D lesion of a slice (``image``, ``mask``: (H, W)).

    Contrast = (lesion mean - ring mean) / ring standard deviation, the ring
    being the pixels within `RING_WIDTH` pixels (8-neighbour steps) of the
    lesion that are not lesion themselves (no lesion of the slice). A ring with
    no spread (flat surroundings) gives contrast inf.
    """
    image = np.asarray(image, np.float64)
    mask = np.asarray(mask) > 0
    labels, count = ndimage.label(mask, structure=_EIGHT)
    out = []
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        pad = RING_WIDTH + 1
        rows = slice(max(box[0].start - pad, 0), box[0].stop + pad)
        cols = slice(max(box[1].start - pad, 0), box[1].stop + pad)
        lesion = labels[rows, cols] == index
        ring = ndimage.binary_dilation(lesion, _EIGHT, iterations=RING_WIDTH) & ~mask[rows, cols]
        values, around = image[rows, cols][lesion], image[rows, cols][ring]
        spread = around.std() if around.size > 1 else 0.0
        contrast = (values.mean() - around.mean()) / spread if spread > 0 else float("inf")
        out.append((int(lesion.sum()), float(contrast)))
    return out


def best_threshold_dice(image: np.ndarray, mask: np.ndarray) -> float:
    """The highest Dice any single global threshold ``image >= t`` reaches against ``mask``.

    Every distinct intensity is tried (an 8-bit slice has at most 256), via
    cumulative counts, so the search is exact.
    """
    image = np.asarray(image).ravel()
    truth = np.asarray(mask).ravel() > 0
    if not truth.any():
        return 0.0
    levels, inverse = np.unique(image, return_inverse=True)
    # pixels and lesion pixels at or above each level
    above = np.cumsum(np.bincount(inverse, minlength=len(levels))[::-1])[::-1]
    lesion_above = np.cumsum(np.bincount(inverse, weights=truth, minlength=len(levels))[::-1])[::-1]
    dice = 2 * lesion_above / (above + truth.sum())
    return float(dice.max())


def lesion_slice_spans(mask: np.ndarray, axis: int = 2) -> np.ndarray:
    """For each 3-D lesion (26-connected component), the number of slices along ``axis`` it
    crosses: ``mask`` 3-D, returns (L,) int for L lesions."""
    labels, count = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3, 3), bool))
    return np.array(
        [box[axis].stop - box[axis].start for box in ndimage.find_objects(labels)], dtype=int
    )


def summarize_measures(
    slices: Iterable[tuple[np.ndarray, np.ndarray]], spans: Iterable[int] = ()
) -> dict[str, float]:
    """The realism table's figures over (8-bit head crop, mask) slices and 3-D lesion spans.

    Keys: slices, lesions, area_min / area_median / area_max (pixels),
    contrast_p10 / contrast_median / contrast_p90 (ring SDs), threshold_dice_mean
    / threshold_dice_max, and, where spans are given, lesions_3d and
    multi_slice_share (share of 3-D lesions crossing >= 2 slices).
    """
    areas, contrasts, dices = [], [], []
    for image, mask in slices:
        if not np.asarray(mask).any():
            continue
        for area, contrast in lesion_measures(image, mask):
            areas.append(area)
            contrasts.append(contrast)
        dices.append(best_threshold_dice(image, mask))
    if not areas:
        raise ValueError("no lesion in any slice: nothing to measure")
    finite = np.asarray([c for c in contrasts if np.isfinite(c)])
    p10, median, p90 = np.percentile(finite, (10, 50, 90)) if finite.size else (np.nan,) * 3
    table = {
        "slices": len(dices),
        "lesions": len(areas),
        "area_min": float(np.min(areas)),
        "area_median": float(np.median(areas)),
        "area_max": float(np.max(areas)),
        "contrast_p10": float(p10),
        "contrast_median": float(median),
        "contrast_p90": float(p90),
        "threshold_dice_mean": float(np.mean(dices)),
        "threshold_dice_max": float(np.max(dices)),
    }
    spans = np.asarray(list(spans), int)
    if spans.size:
        table.update(lesions_3d=int(spans.size), multi_slice_share=float((spans >= 2).mean()))
    return table


def volume_crops(image: np.ndarray, mask: np.ndarray, axis: int = 2):
    """(8-bit head crop, mask crop) of every lesion slice of a volume, in the reference's form.

    Slices are cut and oriented as the converter does (`nifti.volume_slice`) and
    cropped by `reference_crops.reference_crop`, exactly as the PNG export writes them.

    Args:
        image: a 3-D volume.
        mask: its lesion mask, the same shape.
        axis: the slicing axis (2: axial in canonical voxels).

    Yields:
        ``(crop, mask_crop)``: uint8 (h, w) and bool (h, w), long side 100 pixels.
    """
    from ..data.nifti import volume_slice
    from .reference_crops import reference_crop

    for index in np.flatnonzero(np.asarray(mask).any(axis=tuple(a for a in range(3) if a != axis))):
        yield reference_crop(
            volume_slice(image, axis, index).astype(np.float32), volume_slice(mask, axis, index)
        )


def volume_realism(
    volumes: Iterable[tuple[np.ndarray, np.ndarray]], axis: int = 2
) -> dict[str, float]:
    """`summarize_measures` over the lesion slices' head crops and the 3-D lesions of
    (image, mask) volumes."""
    crops, spans = [], []
    for image, mask in volumes:
        crops.extend(volume_crops(image, mask, axis))
        spans.extend(lesion_slice_spans(mask, axis).tolist())
    return summarize_measures(crops, spans)
