"""The paper's training augmentation as detectron2 Augmentations.

Liu et al. scale the slice's width by a random d, 0.85 < d < 1.15, flip it
horizontally with p = 0.5, then crop or pad it back to its original size.
Written as detectron2 Augmentations, the same transforms move the image
(bilinear) and every instance mask (nearest neighbour), so they stay aligned.
The network's input size is then set by detectron2's ResizeShortestEdge from
INPUT.MIN_SIZE_* / MAX_SIZE_*, exactly as for any detectron2 model.
"""
from typing import List, Tuple

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, PadTransform, TransformList
from PIL import Image

__all__ = ["RandomWidthScale", "build_pwml_augmentations", "PAPER_WIDTH_SCALE"]

PAPER_WIDTH_SCALE = (0.85, 1.15)


class RandomWidthScale(T.Augmentation):
    """Scale the width by d ~ U(low, high), then centre-crop / zero-pad back to the old width.

    Zero padding suits MRI, whose background outside the head is close to 0.
    """

    def __init__(self, scale_range: Tuple[float, float] = PAPER_WIDTH_SCALE):
        super().__init__()
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"width scale range must satisfy 0 < low <= high, got {scale_range}")
        self._init(locals())

    def get_transform(self, image: np.ndarray):
        h, w = image.shape[:2]
        d = self._rand_range(self.scale_range[0], self.scale_range[1])
        new_w = max(1, int(round(w * d)))
        tfms = [T.ResizeTransform(h, w, h, new_w, Image.BILINEAR)]
        if new_w > w:
            tfms.append(CropTransform((new_w - w) // 2, 0, w, h))
        elif new_w < w:
            left = (w - new_w) // 2
            tfms.append(PadTransform(left, 0, w - new_w - left, 0, orig_w=new_w, orig_h=h,
                                     pad_value=0, seg_pad_value=0))
        return TransformList(tfms)


def build_pwml_augmentations(cfg, is_train: bool) -> List[T.Augmentation]:
    """Training: width scale, flip, resize (cfg); testing: resize only.

    The width-scale range is INPUT.WIDTH_SCALE_RANGE (added by add_rsrcnn_config,
    default the paper's (0.85, 1.15)); INPUT.RANDOM_FLIP ("horizontal",
    "vertical" or "none") chooses the flip; sizes follow detectron2's
    ResizeShortestEdge keys, and a min size of 0 means no resizing.
    """
    augs: List[T.Augmentation] = []
    if is_train:
        scale = tuple(cfg.INPUT.WIDTH_SCALE_RANGE)
        if scale != (1.0, 1.0):
            augs.append(RandomWidthScale(scale))
        flip = cfg.INPUT.RANDOM_FLIP
        if flip != "none":
            augs.append(T.RandomFlip(prob=0.5, horizontal=flip == "horizontal",
                                     vertical=flip == "vertical"))
        min_size, max_size = cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN
        sampling = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    else:
        min_size, max_size, sampling = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice"
    sizes = min_size if isinstance(min_size, (list, tuple)) else (min_size,)
    if any(s > 0 for s in sizes):
        augs.append(T.ResizeShortestEdge(min_size, max_size, sampling))
    return augs
