"""Inputs of a prediction run and the names of their outputs.

Inputs (`find_inputs`) are one NIfTI volume, a folder of volumes (``*.nii``,
``*.nii.gz``) or a folder of 8-bit grey slice PNGs — flat, or the reference
implementation's ``input/<subject>/<slice>.png`` (pass the folder holding
``input/`` or ``input/`` itself). Case names: `rsrcnn_d2.data.nifti.case_name`.
A volume's slices are predicted with their neighbours when the config asks for
2.5-D input (INPUT.NEIGHBOR_SLICES); a PNG slice has none and is fed as three
copies of itself (`LesionPredictor` logs this once).

Output names (`output_paths`), under the output folder:

- volume ``<case>.nii.gz`` or nnU-Net ``<case>_0000.nii.gz``:
  ``<case>.nii.gz`` (uint8 0/1; nnU-Net's name, ``<case>_lesion.nii.gz`` with
  ``--mask-suffix _lesion``), ``<case>_prob.nii.gz`` (float32, with
  ``--save-prob``), ``<case>_overlays/<axis>_<index>.png`` (with ``--overlays``);
- slice ``<rel>/<name>.png``: ``<rel>/<name>.png`` (0/255), ``<rel>/<name>_prob.npy``
  (float32) and ``<rel>/<name>_overlay.png``, ``<rel>`` being the subject folder.

Every target must lie inside the output folder once symlinks are followed
(`rsrcnn_d2.data.fileio.check_inside_output`); how files are written: writers.py.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..data.errors import PWMLDataError
from ..data.fileio import check_writable
from ..data.nifti import case_name, load_nifti_3d, split_nifti_name

__all__ = [
    "PredictionInput",
    "OutputPaths",
    "find_inputs",
    "output_paths",
    "check_output_location",
    "check_output_collisions",
    "input_slice_geometry",
    "check_input_geometry",
]

PathLike = Union[str, os.PathLike]


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


def _visible(paths) -> list:
    # our own temporary files and OS litter start with a dot
    return sorted(p for p in paths if not p.name.startswith("."))


def _png_inputs(base: Path) -> list[PredictionInput]:
    files = [p for p in _visible(base.iterdir()) if p.is_file() and p.suffix.lower() == ".png"]
    for sub in (p for p in _visible(base.iterdir()) if p.is_dir()):
        files += [p for p in _visible(sub.iterdir()) if p.is_file() and p.suffix.lower() == ".png"]
    return [
        PredictionInput("png", p, p.relative_to(base).with_suffix("").as_posix()) for p in files
    ]


def find_inputs(path: PathLike) -> list[PredictionInput]:
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
    volumes = [p for p in _visible(path.iterdir()) if p.is_file() and split_nifti_name(p.name)[0]]
    slices = _png_inputs(base)
    if volumes and slices:
        raise PWMLDataError(path, "holds both NIfTI volumes and PNG slices; give one kind per run")
    if volumes:
        inputs = [PredictionInput("nifti", p, case_name(p)) for p in volumes]
    elif slices:
        inputs = slices
    else:
        hint = "".join(
            f"; did you mean {path / d}?" for d in ("imagesTs", "imagesTr") if (path / d).is_dir()
        )
        raise PWMLDataError(path, f"no NIfTI volumes (.nii, .nii.gz) or PNG slices found{hint}")
    seen = {}
    for item in inputs:
        if item.name in seen:
            raise PWMLDataError(
                item.path,
                f"would write the same outputs as {seen[item.name]} (both are case {item.name!r})",
            )
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
        return OutputPaths(
            mask=output / f"{item.name}{mask_suffix}.nii.gz",
            prob=output / f"{item.name}_prob.nii.gz",
            overlays=output / f"{item.name}_overlays",
        )
    return OutputPaths(
        mask=output / f"{item.name}.png",
        prob=output / f"{item.name}_prob.npy",
        overlays=output / f"{item.name}_overlay.png",
    )


def check_output_collisions(
    inputs: Sequence[PredictionInput],
    output: PathLike,
    mask_suffix: str = "",
    save_prob: bool = False,
    overlays: bool = False,
) -> None:
    """Refuse a run in which two inputs would write the same output file (`PWMLDataError`
    naming both, before anything is written): ``a.nii.gz`` + ``a_prob.nii.gz`` with
    probabilities (``a``'s map is ``a_prob``'s mask), ``43.png`` + ``43_overlay.png`` with
    overlays."""
    owner: dict[Path, PredictionInput] = {}
    for item in inputs:
        paths = output_paths(item, output, mask_suffix)
        targets = [paths.mask]
        targets += [paths.prob] if save_prob else []
        targets += [paths.overlays] if overlays else []
        for target in targets:
            other = owner.setdefault(target, item)
            if other is not item:
                raise PWMLDataError(
                    item.path,
                    f"its output {target.name} is also {other.path.name}'s; rename one of "
                    "the two inputs (or predict them into different folders)",
                )


def check_output_location(
    input_path: PathLike, output: PathLike, allow_in_input: bool = False
) -> None:
    """Refuse an output folder that is an input file, a file, not writable, or (by default)
    inside the input folder.

    Writing predictions among the inputs mixes them up with the next run's
    inputs; ``allow_in_input`` permits it. Input files themselves are never
    overwritten whatever this says: `predict_inputs` checks every target.
    """
    input_path, output = Path(input_path).resolve(), Path(output).resolve()
    if output.exists() and not output.is_dir():  # an input file among them
        raise PWMLDataError(output, "output must be a folder, not an existing file")
    if input_path.is_dir() and output.is_relative_to(input_path) and not allow_in_input:
        raise PWMLDataError(
            output,
            f"output folder is inside the input folder {input_path}; "
            "choose another folder or pass --allow-output-in-input",
        )
    check_writable(output)  # once, before the model is built; not one failure per input


def input_slice_geometry(item: PredictionInput, axis: int):
    """((rows, columns), (row, column) mm or None) of ``item``'s slices, from its header only.

    For a volume, the slices `volume_slice` cuts along canonical ``axis``, with
    the canonical voxel sizes (the header's, permuted as ``as_closest_canonical``
    permutes the axes); a PNG's spacing is unknown. PWMLDataError if unreadable.
    """
    from ..data.nifti import canonical_shape_and_zooms, slice_spacing

    if item.kind != "nifti":
        from PIL import Image

        try:
            with Image.open(item.path) as im:
                return (im.height, im.width), None
        except Exception as e:  # PIL raises many types for bad files
            raise PWMLDataError(
                item.path, f"cannot read slice image ({type(e).__name__}: {e})"
            ) from e
    shape, zooms = canonical_shape_and_zooms(load_nifti_3d(item.path))
    first, second = (a for a in (0, 1, 2) if a != axis)
    return (shape[second], shape[first]), slice_spacing(zooms, axis)[:2]


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
