"""The converted dataset's COCO instances files: writing annotations, reading them back.

One annotation per 2-D connected lesion component, with the connectivity of
instances.py (8-neighbourhood: diagonal neighbours are one lesion), so that the
instances the model trains on are exactly the lesions the converter counted.
Masks are COCO RLE (pycocotools), ``bbox`` is [x, y, w, h] in pixels enclosing
the component, ``area`` its pixel count, ``iscrowd`` 0, category id 1 "lesion".

Image entries carry, besides COCO's id/file_name/height/width: ``subject``,
``slice_index``, ``axis``, ``source_file``, ``mask_file`` and ``spacing``
(row, column, through-plane mm; null for PNG slices, whose spacing is unknown).

`annotations_mask` is the one way back from a record's annotations to its truth
mask (the mapper's ``gt_mask``, the evaluator's truth, the classical baseline's).
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Union

import numpy as np
import pycocotools.mask as mask_util

from .errors import PWMLDataError
from .fileio import read_json
from .instances import label_lesions

__all__ = [
    "CATEGORIES",
    "lesion_annotations",
    "annotations_mask",
    "coco_dict",
    "coco_subset",
    "load_pwml_coco",
]

CATEGORIES = [{"id": 1, "name": "lesion", "supercategory": "lesion"}]


def lesion_annotations(mask: np.ndarray) -> list[dict]:
    """COCO annotations (without ids) of the connected lesions of a binary 2-D mask.

    ``mask``: (H, W), non-zero is lesion. One annotation per 8-connected component.
    """
    if not mask.any():  # most slices of a volume: skip the labelling
        return []
    labels, count = label_lesions(mask)
    if count == 0:
        return []
    components = np.asfortranarray(labels[:, :, None] == np.arange(1, count + 1, dtype=np.int32))
    rles = mask_util.encode(components.astype(np.uint8))
    areas = mask_util.area(rles)
    boxes = mask_util.toBbox(rles)
    out = []
    for rle, area, box in zip(rles, areas, boxes):
        out.append(
            {
                "category_id": 1,
                "segmentation": {
                    "size": [int(s) for s in rle["size"]],
                    "counts": rle["counts"].decode("ascii"),
                },
                "area": int(area),
                "bbox": [float(v) for v in box],
                "iscrowd": 0,
            }
        )
    return out


def annotations_mask(
    annotations: Iterable[dict], height: int, width: int, where: Union[str, Path] = "record"
) -> np.ndarray:
    """The union of a record's lesions as a bool (height, width) mask.

    Args:
        annotations: COCO annotations whose segmentations may be compressed RLE (the
            converter's), uncompressed RLE (list counts) or polygons, as COCO allows.
        height, width: the slice's size.
        where: the slice's file, named in the PWMLDataError of an annotation without a
            segmentation.

    Returns:
        (height, width) bool array; all False without annotations.
    """
    mask = np.zeros((height, width), bool)
    for a in annotations:
        seg = a.get("segmentation")
        if seg is None:
            raise PWMLDataError(
                where, "an annotation has no segmentation; cannot build the truth mask"
            )
        if isinstance(seg, dict):  # uncompressed RLE (list counts) needs encoding first
            rle = (
                mask_util.frPyObjects(seg, height, width)
                if isinstance(seg["counts"], list)
                else seg
            )
        else:
            rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
        mask |= mask_util.decode(rle).astype(bool)
    return mask


def coco_dict(images: list[dict], annotations: list[dict], description: str = "") -> dict:
    """A COCO instances dict from already numbered images and annotations.

    Args:
        images: COCO image entries with their ``id``.
        annotations: COCO annotations with their ``id`` and ``image_id``.
        description: ``info.description`` (default: says the converter wrote it).

    Returns:
        ``{"info", "images", "annotations", "categories"}`` with the one lesion category.
    """
    return {
        "info": {"description": description or "PWML slices converted by rsrcnn_d2"},
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }


def coco_subset(coco: dict, subjects: Iterable[str]) -> dict:
    """The images (and their annotations) of ``subjects`` only; ids are kept."""
    keep = set(subjects)
    images = [im for im in coco["images"] if im["subject"] in keep]
    ids = {im["id"] for im in images}
    annotations = [a for a in coco["annotations"] if a["image_id"] in ids]
    return {**coco, "images": images, "annotations": annotations}


def load_pwml_coco(json_file: Union[str, Path], image_root: Union[str, Path]) -> list[dict]:
    """detectron2 dataset dicts from a converted COCO file.

    Like detectron2's ``load_coco_json`` but keeps the per-slice fields (subject,
    slice_index, ...) the evaluator and the mapper pass through, and maps the
    category id 1 to the contiguous class 0.
    """
    from detectron2.structures import BoxMode

    coco = read_json(json_file)
    try:
        by_image: dict[int, list[dict]] = {im["id"]: [] for im in coco["images"]}
        for a in coco["annotations"]:
            by_image[a["image_id"]].append(
                {
                    "bbox": a["bbox"],
                    "bbox_mode": BoxMode.XYWH_ABS,
                    "category_id": 0,
                    "segmentation": a["segmentation"],
                    "iscrowd": a.get("iscrowd", 0),
                    "area": a.get("area"),
                }
            )
        records = []
        for im in coco["images"]:
            record = {k: v for k, v in im.items() if k != "id"}
            record["file_name"] = str(Path(image_root) / im["file_name"])
            if "neighbor_file" in im:  # slices z-1, z+1 (converter since 2.5-D)
                record["neighbor_file"] = str(Path(image_root) / im["neighbor_file"])
            record["image_id"] = im["id"]
            record["annotations"] = by_image[im["id"]]
            records.append(record)
    except (KeyError, TypeError) as e:
        raise PWMLDataError(json_file, f"not a PWML COCO file (missing {e})") from e
    return records
