"""A registered PWML dataset's slices as the classical detector sees them, read once.

The detector works on the slices at their own size (no mapper resizing), so
tuning and evaluation read the converted slices directly: the grey image, the
truth (the union of the record's lesions) and, for "3d" mode, the adjacent
slices. A converted dataset keeps only lesion slices by default, so with
``from_volumes`` the neighbours are cut from the record's ``source_file``
volume exactly as the converter cut the slice (`rsrcnn_d2.data.nifti.read_volume`,
`volume_slice`); otherwise, or for slices converted from PNGs, they are the
dataset's own slices of the same subject at ``slice_index`` ± 1, where present.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..data.coco import annotations_mask
from ..data.errors import PWMLDataError
from ..data.fileio import read_slice

__all__ = ["DatasetSlice", "load_dataset_slices", "model_input"]


@dataclass
class DatasetSlice:
    """One slice: its dataset ``record``, ``image`` float32 (H, W), ``truth`` bool (H, W),
    ``neighbours`` (previous, next) images or None."""

    record: dict
    image: np.ndarray
    truth: np.ndarray
    neighbours: tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None)


def _volume_neighbours(record: dict, volumes: dict) -> Optional[list[Optional[np.ndarray]]]:
    """(previous, next) slices cut from the record's source volume; None without one."""
    from ..data.nifti import NIFTI_ENDINGS, axis_index, read_volume, volume_slice

    source, axis, k = record.get("source_file"), record.get("axis"), record.get("slice_index")
    if not source or axis is None or k is None or not str(source).endswith(NIFTI_ENDINGS):
        return None
    if source not in volumes:
        volumes.clear()  # records come subject by subject: keep one volume in memory
        volumes[source] = read_volume(source).canonical
    volume, axis = volumes[source], axis_index(axis)
    return [
        np.asarray(volume_slice(volume, axis, j), np.float32)
        if 0 <= j < volume.shape[axis]
        else None
        for j in (int(k) - 1, int(k) + 1)
    ]


def load_dataset_slices(
    dataset_name: str, progress: bool = True, from_volumes: bool = False, required: bool = False
) -> list[DatasetSlice]:
    """Every slice of a registered dataset, with truth and neighbours (module docstring).

    Read once, so that every tuning trial scores the same slices without reading them again.

    Args:
        dataset_name: a registered dataset.
        progress: show a progress bar while reading.
        from_volumes: cut the neighbours from each record's ``source_file`` volume
            (needed for "3d" mode on lesion-slice datasets); else the dataset's own
            slices of the same subject.
        required: an empty dataset is a PWMLDataError naming it (what the tools want).

    Returns:
        One `DatasetSlice` per record, in the dataset's order.
    """
    from detectron2.data import DatasetCatalog
    from tqdm import tqdm

    records = DatasetCatalog.get(dataset_name)
    images = [
        read_slice(r["file_name"])
        for r in tqdm(records, desc=f"reading {dataset_name}", unit="slice", disable=not progress)
    ]
    position = {}
    for i, r in enumerate(records):
        if r.get("subject") is not None and r.get("slice_index") is not None:
            position[(str(r["subject"]), int(r["slice_index"]))] = i
    slices, volumes = [], {}
    for r, image in zip(records, images):
        height, width = int(r.get("height", image.shape[0])), int(r.get("width", image.shape[1]))
        truth = annotations_mask(r.get("annotations", []), height, width, r["file_name"])
        near: list[Optional[np.ndarray]] = [None, None]
        cut = _volume_neighbours(r, volumes) if from_volumes else None
        if cut is not None:
            near = [n if n is not None and n.shape == image.shape else None for n in cut]
        elif r.get("subject") is not None and r.get("slice_index") is not None:
            for side, step in enumerate((-1, 1)):
                j = position.get((str(r["subject"]), int(r["slice_index"]) + step))
                if j is not None and images[j].shape == image.shape:
                    near[side] = images[j]
        slices.append(DatasetSlice(r, image, truth, (near[0], near[1])))
    if required and not slices:
        raise PWMLDataError(dataset_name, "the dataset has no slices")
    return slices


def model_input(s: DatasetSlice) -> dict:
    """The `ClassicalLesionModel` / `PWMLEvaluator` input of a slice (record + image + truth)."""
    return {
        **s.record,
        "image": s.image,
        "gt_mask": s.truth,
        "height": s.image.shape[0],
        "width": s.image.shape[1],
        "neighbours": [n for n in s.neighbours if n is not None],
    }
