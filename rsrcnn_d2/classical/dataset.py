"""A registered PWML dataset's slices as the classical detector sees them, read once.

The detector works on the slices at their own size (no mapper resizing), so
tuning and evaluation read the converted slices directly: the grey image, the
truth (the union of the record's lesions) and, for "3d" mode, the adjacent
slices of the same subject where the dataset holds them (a converted dataset
keeps only lesion slices by default; a missing neighbour is simply absent).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..data.fileio import read_slice
from ..data.mapper import annotations_union_mask

__all__ = ["DatasetSlice", "load_dataset_slices", "model_input"]


@dataclass
class DatasetSlice:
    """One slice: its dataset ``record``, ``image`` float32 (H, W), ``truth`` bool (H, W),
    ``neighbours`` (previous, next) images or None."""

    record: Dict
    image: np.ndarray
    truth: np.ndarray
    neighbours: Tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None)


def load_dataset_slices(dataset_name: str, progress: bool = True) -> List[DatasetSlice]:
    """Every slice of a registered dataset, with truth and same-subject neighbours."""
    from detectron2.data import DatasetCatalog
    from tqdm import tqdm

    records = DatasetCatalog.get(dataset_name)
    images = [read_slice(r["file_name"]) for r in
              tqdm(records, desc=f"reading {dataset_name}", unit="slice", disable=not progress)]
    position = {}
    for i, r in enumerate(records):
        if r.get("subject") is not None and r.get("slice_index") is not None:
            position[(str(r["subject"]), int(r["slice_index"]))] = i
    slices = []
    for i, (r, image) in enumerate(zip(records, images)):
        height, width = int(r.get("height", image.shape[0])), int(r.get("width", image.shape[1]))
        truth = annotations_union_mask(r.get("annotations", []), height, width).astype(bool)
        near: List[Optional[np.ndarray]] = [None, None]
        if r.get("subject") is not None and r.get("slice_index") is not None:
            for side, step in enumerate((-1, 1)):
                j = position.get((str(r["subject"]), int(r["slice_index"]) + step))
                if j is not None and images[j].shape == image.shape:
                    near[side] = images[j]
        slices.append(DatasetSlice(r, image, truth, (near[0], near[1])))
    return slices


def model_input(s: DatasetSlice) -> Dict:
    """The `ClassicalLesionModel` / `PWMLEvaluator` input of a slice (record + image + truth)."""
    return {**s.record, "image": s.image, "gt_mask": s.truth, "height": s.image.shape[0],
            "width": s.image.shape[1], "neighbours": [n for n in s.neighbours if n is not None]}
