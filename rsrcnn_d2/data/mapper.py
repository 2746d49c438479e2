"""From a dataset dict to the model's input: read the slice, augment, make instances.

The mapper outputs raw intensities: the grey slice replicated to 3 identical
channels, float32 (3, H, W), or with INPUT.NEIGHBOR_SLICES (2.5-D) the slices
z-1, z, z+1 of the volume, read from the record's "neighbor_file" (the
converter's (2, H, W) z-1, z+1). It does NOT normalise; the model normalises each
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
from typing import Optional, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks

from .augmentation import build_pwml_augmentations
from .coco import annotations_mask
from .errors import PWMLDataError
from .fileio import read_slice
from .head_crop import crop_to_head

__all__ = [
    "PWMLDatasetMapper",
    "build_pwml_train_loader",
    "build_pwml_test_loader",
    "head_crop_margin",
    "read_neighbors",
    "slice_model_input",
]


def slice_model_input(
    image: np.ndarray,
    augmentations: T.AugmentationList,
    head_crop_margin: Optional[int] = None,
    spacing=None,
    channels: int = 3,
    neighbors: Optional[np.ndarray] = None,
):
    """(model input fields, transforms applied) for one grey slice (H, W).

    The one place that turns a slice into what the network reads, so that
    training, the test loader and `LesionPredictor` feed it alike.

    Args:
        image: (H, W) raw intensities of slice z.
        augmentations: applied after the optional head crop.
        head_crop_margin: pixels around the head box (None: no crop).
        spacing: the slice's (row, column) mm, for TrainingScaleResize (None: unknown).
        channels: identical copies of the slice under "image".
        neighbors: (2, H, W), slices z-1 and z+1: the 3 channels are then z-1, z, z+1
            instead (2.5-D; ``channels`` must be 3). The head box is found on slice z and
            every transform moves the three channels together, as one (H, W, 3) image.

    Returns:
        ``(fields, transforms)``: fields holds "image", float32 (channels, h, w) at the
        network's size, and with a head crop "crop_box" [x0, y0, x1, y1] in the slice;
        transforms is the TransformList applied (crop first), to move annotations alike.
    """
    fields, crop = {}, []
    if neighbors is not None and (channels != 3 or neighbors.shape != (2, *image.shape)):
        raise ValueError(
            f"neighbours {neighbors.shape} need a (2, {image.shape[0]}, {image.shape[1]}) "
            f"stack and 3 channels (got {channels})"
        )
    if head_crop_margin is not None:
        image, (x0, y0, x1, y1) = crop_to_head(image, head_crop_margin)
        fields["crop_box"] = [x0, y0, x1, y1]
        crop = [T.CropTransform(x0, y0, x1 - x0, y1 - y0)]
        if neighbors is not None:
            neighbors = neighbors[:, y0:y1, x0:x1]
    if neighbors is not None:
        image = np.stack([neighbors[0], image, neighbors[1]], axis=-1)  # (H, W, 3): z-1, z, z+1
    aug_input = T.AugInput(np.ascontiguousarray(image, dtype=np.float32))
    aug_input.spacing = spacing
    transforms = T.TransformList(crop) + augmentations(aug_input)
    tensor = torch.from_numpy(np.ascontiguousarray(aug_input.image, dtype=np.float32))
    if neighbors is not None:
        fields["image"] = tensor.permute(2, 0, 1).contiguous()
    else:
        fields["image"] = tensor[None].repeat(channels, 1, 1)
    return fields, transforms


def read_neighbors(record: dict, shape) -> np.ndarray:
    """The record's slices z-1 and z+1, float32 (2, H, W), checked against the slice's
    ``shape``; PWMLDataError naming the file when missing or of another size."""
    path = record.get("neighbor_file")
    if not path:
        raise PWMLDataError(
            record.get("file_name", record.get("image_id", "<record>")),
            "INPUT.NEIGHBOR_SLICES needs each slice's neighbours (neighbor_file), which "
            "this dataset lacks: it was converted before 2.5-D input existed; convert it "
            "again with tools/prepare_pwml.py",
        )
    try:
        neighbors = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises many types for missing or truncated files
        raise PWMLDataError(path, f"cannot read neighbour slices ({type(e).__name__}: {e})") from e
    if neighbors.shape != (2, *shape):
        raise PWMLDataError(
            path,
            f"neighbour slices of shape {neighbors.shape}; expected (2, {shape[0]}, {shape[1]}) "
            "(slices z-1, z+1 of the slice's size)",
        )
    return neighbors.astype(np.float32, copy=False)


class PWMLDatasetMapper:
    """detectron2 mapper for converted PWML slices; use with build_detection_*_loader."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: list[Union[T.Augmentation, T.Transform]],
        image_channels: int = 3,
        head_crop_margin: Optional[int] = None,
        neighbor_slices: bool = False,
    ):
        """
        Args:
            is_train: training: instances from the annotations; testing: their union as
                "gt_mask" (where the record has annotations).
            augmentations: run in order on image and masks.
            image_channels: copies of the slice.
            head_crop_margin: (pixels) crops to the head first; None does not.
            neighbor_slices: channels z-1, z, z+1 from the record's "neighbor_file".
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_channels = image_channels
        self.head_crop_margin = head_crop_margin
        self.neighbor_slices = bool(neighbor_slices)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": build_pwml_augmentations(cfg, is_train),
            "head_crop_margin": head_crop_margin(cfg),
            "neighbor_slices": cfg.INPUT.NEIGHBOR_SLICES,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        record = copy.deepcopy(dataset_dict)
        image = read_slice(record["file_name"])
        expected = (record.get("height", image.shape[0]), record.get("width", image.shape[1]))
        if image.shape != tuple(expected):
            raise PWMLDataError(
                record["file_name"],
                f"slice of size {image.shape} but the dataset says {tuple(expected)}",
            )
        record.setdefault("height", image.shape[0])
        record.setdefault("width", image.shape[1])
        neighbors = read_neighbors(record, image.shape) if self.neighbor_slices else None

        # the record's spacing: TrainingScaleResize keeps the training's mm/pixel
        fields, transforms = slice_model_input(
            image,
            self.augmentations,
            self.head_crop_margin,
            record.get("spacing"),
            self.image_channels,
            neighbors,
        )
        record.update(fields)
        shape = tuple(fields["image"].shape[1:])

        annotations = record.pop("annotations", None)
        if not self.is_train:
            if annotations is not None:
                record["gt_mask"] = torch.from_numpy(
                    annotations_mask(
                        annotations, record["height"], record["width"], record["file_name"]
                    ).astype(np.uint8)
                )
            return record
        annos = [
            utils.transform_instance_annotations(a, transforms, shape)
            for a in (annotations or [])
            if a.get("iscrowd", 0) == 0
        ]
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
