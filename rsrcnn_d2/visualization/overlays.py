"""Prediction-versus-truth overlays on the slice, as in the paper's Fig. 3.

The slice in grey; true-positive pixels green, false positives red, false
negatives blue. Lesions are a few pixels wide, so colours are solid (no blending
that would hide a one-pixel miss) and `save_overlay_png` can enlarge by pixel
replication instead of smoothing.
"""

import io
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..data.fileio import atomic_write_bytes
from ..data.image_ops import to_uint8

__all__ = [
    "TP_COLOR",
    "FP_COLOR",
    "FN_COLOR",
    "TITLE_BAND",
    "overlay_rgb",
    "save_overlay_png",
    "save_figure_png",
]

TP_COLOR = (0, 255, 0)
FP_COLOR = (255, 0, 0)
FN_COLOR = (0, 0, 255)
TITLE_BAND = 24  # pixels above the image that hold the title, when there is one
_DPI = 100


def _as_2d(name: str, array, shape=None) -> np.ndarray:
    array = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
    if array.ndim != 2:
        raise ValueError(f"overlay: {name} must be 2-D (H, W), got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"overlay: {name} has shape {array.shape}, the image {shape}")
    return array


def overlay_rgb(image, pred, truth) -> np.ndarray:
    """uint8 RGB (H, W, 3): ``image`` (H, W) in grey (min..max -> 0..255), TP/FP/FN coloured.

    Args:
        image: (H, W) slice, any intensity scale; numpy array or tensor.
        pred: (H, W) predicted mask (nonzero = lesion); numpy array or tensor.
        truth: (H, W) reference mask, likewise.

    Returns:
        (H, W, 3) uint8: TP `TP_COLOR`, FP `FP_COLOR`, FN `FN_COLOR`, the rest grey.
        ValueError for a mask that is not 2-D or not the image's shape.
    """
    grey = to_uint8(_as_2d("image", image))
    pred = _as_2d("prediction", pred, grey.shape).astype(bool)
    truth = _as_2d("truth", truth, grey.shape).astype(bool)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[pred & truth] = TP_COLOR
    rgb[pred & ~truth] = FP_COLOR
    rgb[~pred & truth] = FN_COLOR
    return rgb


def save_overlay_png(
    path: Union[str, Path], image, pred, truth, title: Optional[str] = None, scale: int = 1
) -> Path:
    """Write `overlay_rgb` as a PNG, each pixel as a ``scale`` x ``scale`` block.

    Written atomically (temporary file + rename).

    Args:
        path: the PNG file to write.
        image, pred, truth: as `overlay_rgb`.
        title: text in a band of ``TITLE_BAND`` pixels on top (None: no band).
        scale: positive integer enlargement by pixel replication, so that a one-pixel
            lesion stays one sharp block.

    Returns:
        ``path`` as a Path; the PNG is (H·scale, W·scale) pixels, plus the title band.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    rgb = overlay_rgb(image, pred, truth)
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    h, w = rgb.shape[:2]
    band = TITLE_BAND if title else 0
    fig = Figure(figsize=(w / _DPI, (h + band) / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    fig.figimage(rgb, xo=0, yo=0, origin="upper")
    if title:
        fig.text(0.5, 1 - band / 2 / (h + band), title, ha="center", va="center", fontsize=10)
    return save_figure_png(fig, path, dpi=_DPI)


def save_figure_png(fig, path: Union[str, Path], dpi: Optional[float] = None) -> Path:
    """Render a matplotlib Figure to PNG at ``path`` atomically (temporary file + rename).

    A reader (a report, a notebook watching the folder) never sees half a PNG.

    Args:
        fig: the Figure, with a canvas attached.
        path: the PNG file to write.
        dpi: resolution (None: the figure's own).

    Returns:
        ``path`` as a Path.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())
