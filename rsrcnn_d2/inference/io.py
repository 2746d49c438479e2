"""Files of a prediction run: what the inputs are, where outputs go, how they are written.

Inputs (`find_inputs`) are one NIfTI volume, a folder of volumes (``*.nii``,
``*.nii.gz``) or a folder of 8-bit grey slice PNGs — flat, or the reference
implementation's ``input/<subject>/<slice>.png`` (pass the folder holding
``input/`` or ``input/`` itself).

Output names (`output_paths`), under the output folder:

- volume ``<case>.nii.gz`` or nnU-Net ``<case>_0000.nii.gz``:
  ``<case>.nii.gz`` (uint8 0/1; nnU-Net's name, ``<case>_lesion.nii.gz`` with
  ``--mask-suffix _lesion``), ``<case>_prob.nii.gz`` (float32, with
  ``--save-prob``), ``<case>_overlays/<axis>_<index>.png`` (with ``--overlays``);
- slice ``<rel>/<name>.png``: ``<rel>/<name>.png`` (0/255), ``<rel>/<name>_prob.npy``
  (float32) and ``<rel>/<name>_overlay.png``, ``<rel>`` being the subject folder.

Volumes are cut exactly as the converter cuts them (`nibabel.as_closest_canonical`,
then `rsrcnn_d2.data.nifti.volume_slice`), and predictions are put back into the
input's own voxel order (`to_input_orientation`) and saved with the input's
affine and a copy of its header (`save_volume_like`), so they overlay the input
in any viewer without resampling.

Every file is written to a temporary name beside its target and renamed over
it, so an interrupted run never leaves a truncated mask that looks finished.
Every target must lie inside the output folder once symlinks are followed
(`check_inside_output`): a pre-existing ``<case>_overlays`` link to another
folder is refused, never written through; a link as the file itself is
replaced by the rename, its target left alone.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from ..data.errors import PWMLDataError
from ..data.fileio import atomic_write, check_inside_output  # noqa: F401 (part of this API)
from ..data.nifti import load_nifti_3d

__all__ = ["NIFTI_ENDINGS", "PredictionInput", "OutputPaths", "find_inputs", "case_name",
           "output_paths", "check_output_location", "check_inside_output",
           "input_slice_geometry", "check_input_geometry", "Volume", "read_volume",
           "to_input_orientation", "save_volume_like", "save_mask_png", "save_prob_npy",
           "save_overlay", "atomic_write"]

PathLike = Union[str, os.PathLike]
NIFTI_ENDINGS = (".nii.gz", ".nii")
NNUNET_T1_CHANNEL = "_0000"


# ---------------------------------------------------------------- inputs and names
@dataclass(frozen=True)
class PredictionInput:
    """One unit of work: a volume (kind "nifti") or a slice image (kind "png").

    ``name`` is the case name of a volume, or the slice's path relative to its
    folder without ".png" (``"<subject>/<slice>"``); outputs are named after it.
    """

    kind: str
    path: Path
    name: str


@dataclass(frozen=True)
class OutputPaths:
    """Where one input's results go; ``overlays`` is a folder (volumes) or a file (slices)."""

    mask: Path
    prob: Path
    overlays: Path


def _nifti_stem(name: str) -> Optional[str]:
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return None


def case_name(path: PathLike) -> str:
    """``case`` from ``case.nii.gz``, ``case.nii`` or nnU-Net's T1w channel ``case_0000.nii.gz``."""
    stem = _nifti_stem(Path(path).name)
    if stem is None:
        raise PWMLDataError(path, "not a NIfTI file (.nii or .nii.gz)")
    if stem.endswith(NNUNET_T1_CHANNEL) and len(stem) > len(NNUNET_T1_CHANNEL):
        stem = stem[: -len(NNUNET_T1_CHANNEL)]
    return stem


def _visible(paths) -> list:
    # our own temporary files and OS litter start with a dot
    return sorted(p for p in paths if not p.name.startswith("."))


def _png_inputs(base: Path) -> List[PredictionInput]:
    files = [p for p in _visible(base.iterdir()) if p.is_file() and p.suffix.lower() == ".png"]
    for sub in (p for p in _visible(base.iterdir()) if p.is_dir()):
        files += [p for p in _visible(sub.iterdir()) if p.is_file() and p.suffix.lower() == ".png"]
    return [PredictionInput("png", p, p.relative_to(base).with_suffix("").as_posix()) for p in files]


def find_inputs(path: PathLike) -> List[PredictionInput]:
    """Every volume or slice image that ``path`` holds, sorted; PWMLDataError if none.

    A folder with NIfTI files is a folder of volumes (sub-folders are not
    searched); otherwise its PNGs, directly inside or one sub-folder deep
    (``<subject>/<slice>.png``), are slices. A folder with both is ambiguous.
    """
    path = Path(path)
    if path.is_file():
        return [PredictionInput("nifti", path, case_name(path))]
    if not path.is_dir():
        raise PWMLDataError(path, "input does not exist")
    base = path / "input" if (path / "input").is_dir() else path
    volumes = [p for p in _visible(path.iterdir()) if p.is_file() and _nifti_stem(p.name)]
    slices = _png_inputs(base)
    if volumes and slices:
        raise PWMLDataError(path, "holds both NIfTI volumes and PNG slices; give one kind per run")
    if volumes:
        inputs = [PredictionInput("nifti", p, case_name(p)) for p in volumes]
    elif slices:
        inputs = slices
    else:
        hint = "".join(f"; did you mean {path / d}?" for d in ("imagesTs", "imagesTr")
                       if (path / d).is_dir())
        raise PWMLDataError(path, f"no NIfTI volumes (.nii, .nii.gz) or PNG slices found{hint}")
    seen = {}
    for item in inputs:
        if item.name in seen:
            raise PWMLDataError(item.path, f"would write the same outputs as {seen[item.name]} "
                                           f"(both are case {item.name!r})")
        seen[item.name] = item.path
    return inputs


def output_paths(item: PredictionInput, output: PathLike, mask_suffix: str = "") -> OutputPaths:
    """The output files of ``item`` under the ``output`` folder (see the module docstring).

    ``mask_suffix`` goes between a volume's case name and ``.nii.gz`` in its mask's
    name: "" gives nnU-Net's ``<case>.nii.gz`` (what its and our evaluators pair
    with the label ``<case>.nii.gz``), "_lesion" this project's earlier names.
    """
    output = Path(output)
    if item.kind == "nifti":
        return OutputPaths(mask=output / f"{item.name}{mask_suffix}.nii.gz",
                           prob=output / f"{item.name}_prob.nii.gz",
                           overlays=output / f"{item.name}_overlays")
    return OutputPaths(mask=output / f"{item.name}.png", prob=output / f"{item.name}_prob.npy",
                       overlays=output / f"{item.name}_overlay.png")


def check_output_location(input_path: PathLike, output: PathLike, allow_in_input: bool = False) -> None:
    """Refuse an output folder that is an input file, a file, or (by default) inside the input folder.

    Writing predictions among the inputs mixes them up with the next run's
    inputs; ``allow_in_input`` permits it. Input files themselves are never
    overwritten whatever this says: `predict_inputs` checks every target.
    """
    input_path, output = Path(input_path).resolve(), Path(output).resolve()
    if output.exists() and not output.is_dir():  # an input file among them
        raise PWMLDataError(output, "output must be a folder, not an existing file")
    if input_path.is_dir() and output.is_relative_to(input_path) and not allow_in_input:
        raise PWMLDataError(output, f"output folder is inside the input folder {input_path}; "
                                    "choose another folder or pass --allow-output-in-input")


def input_slice_geometry(item: PredictionInput, axis: int):
    """((rows, columns), (row, column) mm or None) of ``item``'s slices, from its header only.

    For a volume, the slices `volume_slice` cuts along canonical ``axis``, with
    the canonical voxel sizes (the header's, permuted as ``as_closest_canonical``
    permutes the axes); a PNG's spacing is unknown. PWMLDataError if unreadable.
    """
    from nibabel.orientations import io_orientation

    from ..data.nifti import slice_spacing

    if item.kind != "nifti":
        from PIL import Image

        try:
            with Image.open(item.path) as im:
                return (im.height, im.width), None
        except Exception as e:  # PIL raises many types for bad files
            raise PWMLDataError(item.path, f"cannot read slice image ({type(e).__name__}: {e})") from e
    img = load_nifti_3d(item.path)
    shape, zooms = [0, 0, 0], [0.0, 0.0, 0.0]
    for source_axis, (canonical_axis, _) in enumerate(io_orientation(img.affine)):
        shape[int(canonical_axis)] = img.shape[source_axis]
        zooms[int(canonical_axis)] = float(img.header.get_zooms()[source_axis])
    first, second = (a for a in (0, 1, 2) if a != axis)
    return (shape[second], shape[first]), slice_spacing(tuple(zooms), axis)[:2]


def check_input_geometry(predictor, item: PredictionInput, axis: int) -> None:
    """Before predicting ``item``: give the predictor's `TrainingScaleResize` its spacing, and
    warn once (logger "rsrcnn_d2") if its slices are unlike the training data's.

    A no-op for predictors without that resize (head crop, unknown training
    geometry, the classical baseline). An unreadable input is left to the
    prediction, which reports it.
    """
    from ..data.augmentation import TrainingScaleResize
    from ..data.slice_geometry import warn_if_unlike

    augs = getattr(getattr(predictor, "augmentations", None), "augs", ())
    resize = next((a for a in augs if isinstance(a, TrainingScaleResize)), None)
    if resize is None:
        return
    resize.input_spacing = None
    try:
        shape, spacing = input_slice_geometry(item, axis)
    except PWMLDataError:
        return
    resize.input_spacing = spacing
    warn_if_unlike(resize.train, shape, spacing, item.path)


# ---------------------------------------------------------------- volumes
@dataclass
class Volume:
    """An input volume: ``source`` is the image as stored (affine, header), ``canonical`` its voxels in RAS+."""

    source: "nibabel.spatialimages.SpatialImage"  # noqa: F821
    canonical: np.ndarray


def read_volume(path: PathLike) -> Volume:
    """Load a 3-D NIfTI and its voxels in canonical (RAS+) order; PWMLDataError naming the file."""
    import nibabel as nib

    path = Path(path)
    img = load_nifti_3d(path)
    try:  # reading the voxels is where truncated files fail
        canonical = np.asanyarray(nib.as_closest_canonical(img).dataobj)
    except Exception as e:
        raise PWMLDataError(path, f"cannot read voxel data, truncated or corrupt file "
                                  f"({type(e).__name__}: {e})") from e
    if canonical.dtype.kind not in "fiub":
        raise PWMLDataError(path, f"unsupported voxel type {canonical.dtype}")
    if canonical.dtype.kind == "f" and not np.isfinite(canonical).all():
        raise PWMLDataError(path, "image contains NaN or infinite intensities")
    return Volume(source=img, canonical=canonical)


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
    atomic_write(path, lambda tmp: np.save(tmp, np.asarray(prob, np.float32), allow_pickle=False),
                 binary_handle=True)


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
    ax.imshow(np.ma.masked_where(~mask, mask), cmap=ListedColormap(["red"]), alpha=0.35,
              interpolation="nearest")
    if mask.any():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=["red"], linewidths=1.0)
    if title:
        ax.text(2, 2, title, color="yellow", fontsize=9, va="top", ha="left")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
