"""Binary lesion masks <-> detectron2 instances (one instance per connected lesion).

Connectivity: 8-neighbourhood in 2-D, i.e. pixels that touch only at a corner
belong to the same lesion. Punctate lesions are a few pixels across, and a
diagonal pair is one lesion to a reader, not two. Whole volumes (lesion-wise
counts of 3-D lesions) use the same rule in 3-D: the 26-neighbourhood.
"""

import numpy as np
import torch
from detectron2.structures import BitMasks, Boxes, Instances
from scipy import ndimage

__all__ = ["label_lesions", "mask_to_instances", "EIGHT_CONNECTED"]

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def label_lesions(mask: np.ndarray):
    """Label the connected lesions of a 2-D or 3-D binary mask: (labels int32, count).

    Full connectivity in either case (8 neighbours in 2-D, 26 in 3-D).
    """
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or 3-D mask, got shape {mask.shape}")
    structure = EIGHT_CONNECTED if mask.ndim == 2 else np.ones((3, 3, 3), dtype=bool)
    labels, count = ndimage.label(mask > 0, structure=structure)
    return labels.astype(np.int32), int(count)


def mask_to_instances(mask: np.ndarray) -> Instances:
    """One training instance per connected lesion of an (H, W) binary mask.

    Returns Instances of image size (H, W) with, for N lesions, gt_boxes (N boxes, XYXY
    at pixel edges), gt_classes (N,) int64 zeros and gt_masks (BitMasks of (N, H, W)).
    """
    labels, count = label_lesions(mask)
    height, width = labels.shape
    boxes = np.zeros((count, 4), dtype=np.float32)
    masks = np.zeros((count, height, width), dtype=bool)
    for i, sl in enumerate(ndimage.find_objects(labels)):
        ys, xs = sl
        boxes[i] = (xs.start, ys.start, xs.stop, ys.stop)
        masks[i] = labels == (i + 1)
    inst = Instances((height, width))
    inst.gt_boxes = Boxes(torch.from_numpy(boxes))
    inst.gt_classes = torch.zeros(count, dtype=torch.int64)
    inst.gt_masks = BitMasks(torch.from_numpy(masks))
    return inst
