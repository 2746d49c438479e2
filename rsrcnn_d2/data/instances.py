"""Binary lesion masks <-> detectron2 instances (one instance per connected lesion).

Connectivity: 8-neighbourhood in 2-D, i.e. pixels that touch only at a corner
belong to the same lesion. Punctate lesions are a few pixels across, and a
diagonal pair is one lesion to a reader, not two.
"""
import numpy as np
import torch
from scipy import ndimage

from detectron2.structures import BitMasks, Boxes, Instances

__all__ = ["label_lesions", "mask_to_instances", "EIGHT_CONNECTED"]

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def label_lesions(mask: np.ndarray):
    """Label the connected lesions of a 2-D binary mask: (labels int32 (H, W), count)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    labels, count = ndimage.label(mask > 0, structure=EIGHT_CONNECTED)
    return labels.astype(np.int32), int(count)


def mask_to_instances(mask: np.ndarray) -> Instances:
    """Instances with gt_boxes (XYXY, pixel edges), gt_classes (0) and gt_masks (BitMasks)."""
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
