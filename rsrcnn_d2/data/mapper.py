"""From a dataset dict to the model's input: read the slice, augment, make instances.

The mapper outputs raw intensities: the grey slice replicated to 3 identical
channels, float32 (3, H, W). It does NOT normalise; the model normalises each
image (MODEL.RSRCNN.NORMALIZATION), so training, testing and the demo share
one normalisation and 3-channel COCO weights load unchanged. With
INPUT.CROP_TO_HEAD the slice is first cropped to the head (head_crop.py) and
the box goes on as "crop_box" (x0, y0, x1, y1), so the model's outputs come back
at the slice's full size.

Output dict (detectron2's standard keys): "image", "height", "width" (the
slice's original size, for the model's postprocessing), in training
"instances" (gt_boxes, gt_classes, gt_masks as BitMasks, one per lesion), and
the record's other fields passed through (file_name, image_id, subject,
slice_index, ...). At test time, where the record has annotations, "gt_mask"
is the union of its lesions at the original size (uint8 tensor (H, W)), so an
evaluator can score the prediction without re-reading the dataset.
"""
import copy
from typing import List, Optional, Union

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.config import configurable
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks

from .augmentation import build_pwml_augmentations
from .errors import PWMLDataError
from .fileio import read_slice
from .head_crop import crop_to_head

__all__ = ["PWMLDatasetMapper", "build_pwml_train_loader", "build_pwml_test_loader",
           "annotations_union_mask", "head_crop_margin"]


def annotations_union_mask(annotations: List[dict], height: int, width: int) -> np.ndarray:
    """All lesions of a record as one uint8 (height, width) mask (RLE annotations)."""
    mask = np.zeros((height, width), np.uint8)
    for a in annotations:
        mask |= mask_util.decode(a["segmentation"]).astype(np.uint8)
    return mask


class PWMLDatasetMapper:
    """detectron2 mapper for converted PWML slices; use with build_detection_*_loader."""

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List[Union[T.Augmentation, T.Transform]],
                 image_channels: int = 3, head_crop_margin: Optional[int] = None):
        """``augmentations`` run in order on image and masks; ``image_channels`` copies of the
        slice; ``head_crop_margin`` (pixels) crops to the head first, None does not."""
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_channels = image_channels
        self.head_crop_margin = head_crop_margin

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {"is_train": is_train, "augmentations": build_pwml_augmentations(cfg, is_train),
                "head_crop_margin": head_crop_margin(cfg)}

    def __call__(self, dataset_dict: dict) -> dict:
        record = copy.deepcopy(dataset_dict)
        image = read_slice(record["file_name"])
        expected = (record.get("height", image.shape[0]), record.get("width", image.shape[1]))
        if image.shape != tuple(expected):
            raise PWMLDataError(record["file_name"], f"slice of size {image.shape} but the "
                                                     f"dataset says {tuple(expected)}")
        record.setdefault("height", image.shape[0])
        record.setdefault("width", image.shape[1])

        crop = []
        if self.head_crop_margin is not None:
            image, (x0, y0, x1, y1) = crop_to_head(image, self.head_crop_margin)
            record["crop_box"] = [x0, y0, x1, y1]
            crop = [T.CropTransform(x0, y0, x1 - x0, y1 - y0)]
        aug_input = T.AugInput(image)
        aug_input.spacing = record.get("spacing")  # TrainingScaleResize keeps the training's mm/pixel
        transforms = T.TransformList(crop) + self.augmentations(aug_input)
        image = aug_input.image
        shape = image.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        record["image"] = tensor[None].repeat(self.image_channels, 1, 1)

        annotations = record.pop("annotations", None)
        if not self.is_train:
            if annotations is not None:
                record["gt_mask"] = torch.from_numpy(
                    annotations_union_mask(annotations, record["height"], record["width"]))
            return record
        annos = [utils.transform_instance_annotations(a, transforms, shape)
                 for a in (annotations or []) if a.get("iscrowd", 0) == 0]
        instances = utils.annotations_to_instances(annos, shape, mask_format="bitmask")
        if not annos:
            instances.gt_masks = BitMasks(torch.zeros((0, *shape), dtype=torch.bool))
        # masks moved with nearest neighbour: boxes from the masks are the tight ones,
        # and a 1-pixel lesion squeezed out of the image leaves no instance behind
        instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        record["instances"] = utils.filter_empty_instances(instances, by_box=True, by_mask=True)
        return record


def head_crop_margin(cfg) -> Optional[int]:
    """INPUT.HEAD_CROP_MARGIN when INPUT.CROP_TO_HEAD is on, else None (no crop)."""
    return int(cfg.INPUT.HEAD_CROP_MARGIN) if cfg.INPUT.CROP_TO_HEAD else None


def build_pwml_train_loader(cfg):
    """detectron2's train loader over cfg.DATASETS.TRAIN with `PWMLDatasetMapper` (augmenting)."""
    return build_detection_train_loader(cfg, mapper=PWMLDatasetMapper(cfg, True))


def build_pwml_test_loader(cfg, dataset_name: str):
    """detectron2's test loader over ``dataset_name`` with `PWMLDatasetMapper` (no augmentation)."""
    return build_detection_test_loader(cfg, dataset_name, mapper=PWMLDatasetMapper(cfg, False))
