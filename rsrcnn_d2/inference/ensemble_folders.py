"""Ensembling saved predictions: average the probability maps of several folders, threshold.

What ``rsrcnn-ensemble`` runs (nnU-Net's ``nnUNetv2_ensemble``): each input folder
holds ``<case>_prob.nii.gz`` maps written by ``rsrcnn-predict --save-probabilities``
(or a cross-validation's ``probabilities/``), one per case and the same cases in
every folder. A map is the per-voxel lesion probability after pasting (and the
dense CRF, where the config has one) and before the threshold: the pixel-wise
maximum of the lesion instances' probabilities, so the mask rsrcnn-predict writes
is exactly ``prob >= MODEL.RSRCNN.MASK_THRESHOLD`` (0.5 unless the config says
otherwise). The ensemble's mask is the same rule on the mean of the maps:
``mean >= threshold``, compared in float32 as the model compares, so one folder at
its own threshold gives back its own masks.

This is not rsrcnn-predict's in-model ensemble (``--weights`` with several files,
``-m``), which averages per-lesion mask probabilities before the CRF and the
threshold; here whole rows (different configs) are combined after them.
"""

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..data.errors import PWMLDataError
from ..data.fileio import check_inside_output
from ..data.nifti import NIFTI_ENDINGS, load_nifti_3d, read_volume, split_nifti_name
from .writers import save_volume_like, to_input_orientation

__all__ = [
    "PROBABILITY_SUFFIX",
    "probability_maps",
    "average_probability_maps",
    "ensemble_folders",
]

PathLike = Union[str, os.PathLike]
PROBABILITY_SUFFIX = "_prob"  # rsrcnn-predict's <case>_prob.nii.gz
AFFINE_ATOL_MM = 1e-3  # float32 header rounding, as rsrcnn-evaluate allows

logger = logging.getLogger(__name__)


def probability_maps(folder: PathLike) -> dict[str, Path]:
    """``{case: <case>_prob.nii[.gz]}`` of a folder; PWMLDataError if it holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PWMLDataError(folder, "probability folder does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem, _ = split_nifti_name(path.name)
        if path.name.startswith(".") or stem is None or not stem.endswith(PROBABILITY_SUFFIX):
            continue
        case = stem[: -len(PROBABILITY_SUFFIX)]
        if case in found:
            raise PWMLDataError(path, f"case {case!r} also given by {found[case].name}")
        found[case] = path
    if not found:
        raise PWMLDataError(
            folder,
            f"no <case>{PROBABILITY_SUFFIX}{NIFTI_ENDINGS[0]} probability maps "
            "(rsrcnn-predict --save-probabilities writes them)",
        )
    return found


def _probabilities(path: Path):
    volume = read_volume(path)  # 3-D, finite, or an error naming the file
    values = volume.canonical
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        low, high = float(values.min()), float(values.max())
        raise PWMLDataError(
            path, f"values from {low:g} to {high:g}: not a probability map (0 to 1)"
        )
    return volume


def average_probability_maps(paths: Sequence[PathLike]):
    """(float32 mean in canonical voxel order, the first map's `Volume`) of one case's maps.

    Every map must lie on the first one's voxel grid (shape and affine); the mean
    is summed in float64 and stored as float32, as the maps are.
    """
    paths = [Path(p) for p in paths]
    first = _probabilities(paths[0])
    total = first.canonical.astype(np.float64)
    for path in paths[1:]:
        other = _probabilities(path)
        _check_same_grid(other.source, path, first.source, paths[0])
        total += other.canonical
    return (total / len(paths)).astype(np.float32), first


def _check_same_grid(image, path: Path, first, first_path: Path) -> None:
    if image.shape != first.shape:
        raise PWMLDataError(path, f"shape {image.shape} differs from {first_path} {first.shape}")
    if not np.allclose(image.affine, first.affine, atol=AFFINE_ATOL_MM):
        raise PWMLDataError(path, f"affine differs from {first_path}: not the same voxel grid")


def _check_grids(table: dict[str, list[Path]]) -> None:
    """Every case's maps on one voxel grid, from the headers only (before anything is written)."""
    for paths in table.values():
        first = load_nifti_3d(paths[0])
        for path in paths[1:]:
            _check_same_grid(load_nifti_3d(path), path, first, paths[0])


def _case_table(folders: Sequence[Path]) -> dict[str, list[Path]]:
    """Each case's map in every folder; PWMLDataError naming a folder that lacks some."""
    maps = [probability_maps(f) for f in folders]
    cases = sorted(set().union(*maps))
    for folder, found in zip(folders, maps):
        missing = [c for c in cases if c not in found]
        if missing:
            raise PWMLDataError(
                folder,
                f"has no probability map for {len(missing)} case(s) the other folders have: "
                f"{', '.join(missing[:5])}",
            )
    return {case: [found[case] for found in maps] for case in cases}


def _check_output(folders: Sequence[Path], output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise PWMLDataError(output, "output must be a folder, not an existing file")
    for folder in folders:
        if output.resolve().is_relative_to(folder.resolve()):
            raise PWMLDataError(
                output,
                f"output folder lies inside the input folder {folder}: the ensemble's maps "
                "would mix with (or replace) that row's; choose another folder",
            )


def ensemble_folders(
    folders: Sequence[PathLike],
    output: PathLike,
    threshold: float = 0.5,
    save_probabilities: bool = False,
    progress: bool = True,
    cases: Optional[Sequence[str]] = None,
) -> list[Path]:
    """Write ``<case>.nii.gz`` (uint8, ``mean >= threshold``) for every case of ``folders``.

    ``save_probabilities``: also the mean as ``<case>_prob.nii.gz`` (float32), so an
    ensemble can be ensembled again. ``cases``: only these (each must be in every
    folder). Outputs have the first folder's maps' affine and header, in their voxel
    order. The cases and every map's grid are checked before the first file is
    written (a map's values when it is read); returns the masks written.
    """
    from tqdm import tqdm

    folders = [Path(f) for f in folders]
    if not folders:
        raise ValueError("ensemble_folders needs at least one folder")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], not {threshold}")
    output = Path(output)
    _check_output(folders, output)
    table = _case_table(folders)
    if cases is not None:
        unknown = [c for c in cases if c not in table]
        if unknown:
            raise PWMLDataError(
                folders[0], f"has no probability map for case(s) {', '.join(unknown[:5])}"
            )
        table = {case: table[case] for case in cases}
    _check_grids(table)
    level = np.float32(threshold)
    written = []
    for case, paths in tqdm(table.items(), desc="ensembling", unit="case", disable=not progress):
        mean, first = average_probability_maps(paths)
        mask = check_inside_output(output / f"{case}.nii.gz", output)
        affine = first.source.affine
        save_volume_like(
            to_input_orientation((mean >= level).astype(np.uint8), affine),
            first.source,
            mask,
            np.uint8,
        )
        if save_probabilities:
            prob = check_inside_output(output / f"{case}{PROBABILITY_SUFFIX}.nii.gz", output)
            save_volume_like(to_input_orientation(mean, affine), first.source, prob, np.float32)
        logger.debug("%s: mean of %d maps -> %s", case, len(paths), mask)
        written.append(mask)
    return written
