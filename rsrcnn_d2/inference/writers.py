"""Writing a prediction run's outputs: masks and probabilities as NIfTI, PNG or .npy, overlays.

Volumes are cut exactly as the converter cuts them (`nibabel.as_closest_canonical`,
then `rsrcnn_d2.data.nifti.volume_slice`), and predictions are put back into the
input's own voxel order (`to_input_orientation`) and saved with the input's
affine and a copy of its header (`save_volume_like`), so they overlay the input
in any viewer without resampling.

Every file goes through `rsrcnn_d2.data.fileio.atomic_write` (a temporary name
beside its target, then a rename), so an interrupted run never leaves a
truncated mask that looks finished; a link as the file itself is replaced by
the rename, its target left alone.
"""

import os
from typing import Union

import numpy as np

from ..data.fileio import atomic_write

__all__ = [
    "to_input_orientation",
    "save_volume_like",
    "save_mask_png",
    "save_prob_npy",
    "save_overlay",
]

PathLike = Union[str, os.PathLike]


def to_input_orientation(canonical: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of ``as_closest_canonical`` on voxels: RAS+ array back to the order of ``affine``."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    back = ornt_transform(axcodes2ornt(("R", "A", "S")), io_orientation(affine))
    return np.ascontiguousarray(apply_orientation(canonical, back))


def save_volume_like(array: np.ndarray, reference, path: PathLike, dtype) -> None:
    """Save ``array`` (in ``reference``'s voxel order) with its affine and header, as ``dtype``.

    The header copy keeps sform/qform codes, units and description; the data
    type, scaling (reset) and display range (0-1) are the output's own.
    """
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    if "cal_min" in header:
        header["cal_min"], header["cal_max"] = 0, 1
    image = type(reference)(np.asarray(array, dtype=dtype), reference.affine, header)
    image.header.set_slope_inter(None, None)
    atomic_write(path, lambda tmp: image.to_filename(tmp))


# ---------------------------------------------------------------- slices and overlays
def save_mask_png(path: PathLike, mask: np.ndarray) -> None:
    """A bool (H, W) mask as an 8-bit PNG with values 0 and 255."""
    from PIL import Image

    image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_prob_npy(path: PathLike, prob: np.ndarray) -> None:
    """A float32 (H, W) probability map, lossless (.npy)."""
    atomic_write(
        path,
        lambda tmp: np.save(tmp, np.asarray(prob, np.float32), allow_pickle=False),
        binary_handle=True,
    )


def save_overlay(path: PathLike, image: np.ndarray, mask: np.ndarray, title: str = "") -> None:
    """The grey slice with the predicted mask filled in translucent red and outlined.

    Grey levels span the slice's 1st-99th percentile, so one bright voxel does
    not wash the brain out. Drawn with matplotlib's Agg canvas directly (no
    pyplot state), so it is safe without a display and between threads.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    h, w = image.shape
    scale = max(1.0, 512 / max(h, w))  # small slices are blown up so outlines stay visible
    fig = Figure(figsize=(w * scale / 100, h * scale / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    low, high = np.percentile(image, (1, 99))
    ax.imshow(image, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), interpolation="nearest")
    ax.imshow(
        np.ma.masked_where(~mask, mask),
        cmap=ListedColormap(["red"]),
        alpha=0.35,
        interpolation="nearest",
    )
    if mask.any():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=["red"], linewidths=1.0)
    if title:
        ax.text(2, 2, title, color="yellow", fontsize=9, va="top", ha="left")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
