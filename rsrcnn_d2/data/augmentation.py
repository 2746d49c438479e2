"""The paper's training augmentation as detectron2 Augmentations.

Liu et al. scale the slice's width by a random d, 0.85 < d < 1.15, flip it
horizontally with p = 0.5, then crop or pad it back to its original size.
Written as detectron2 Augmentations, the same transforms move the image
(bilinear) and every instance mask (nearest neighbour), so they stay aligned.
The network's input size is then set by detectron2's ResizeShortestEdge from
INPUT.MIN_SIZE_* / MAX_SIZE_*, exactly as for any detectron2 model, except at
test time for a model whose training slice geometry is recorded and whose
slices are not head-cropped: `TrainingScaleResize` then gives every slice the
scale of the training's typical slice (see rsrcnn_d2/data/slice_geometry.py).

Every transform here takes (H, W) and (H, W, C) float32 images alike (the
2.5-D input, INPUT.NEIGHBOR_SLICES, is one (H, W, 3) image), so slices z-1, z,
z+1 are moved identically; nothing here changes intensities.
"""

from collections.abc import Sequence
from typing import Optional

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, PadTransform, TransformList
from PIL import Image

from .slice_geometry import SliceGeometry, geometry_from_cfg, shortest_edge_scale

__all__ = [
    "RandomWidthScale",
    "TrainingScaleResize",
    "build_pwml_augmentations",
    "PAPER_WIDTH_SCALE",
]

PAPER_WIDTH_SCALE = (0.85, 1.15)


class RandomWidthScale(T.Augmentation):
    """Scale the width by d ~ U(low, high), then centre-crop / zero-pad back to the old width.

    Zero padding suits MRI, whose background outside the head is close to 0.
    """

    def __init__(self, scale_range: tuple[float, float] = PAPER_WIDTH_SCALE):
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
            tfms.append(
                PadTransform(
                    left,
                    0,
                    w - new_w - left,
                    0,
                    orig_w=new_w,
                    orig_h=h,
                    pad_value=0,
                    seg_pad_value=0,
                )
            )
        return TransformList(tfms)


class TrainingScaleResize(T.Augmentation):
    """Resize by the one scale the test sizes give the training data's median slice.

    ResizeShortestEdge scales each slice by its own size, so the same head in a
    wider field of view would reach the network smaller than in training. Here
    a network pixel covers the same millimetres as in training whatever the
    slice's shape: with the slice's in-plane ``spacing`` (row, column mm) and
    the training's both known, each axis is scaled by ``scale`` x slice spacing /
    training spacing; otherwise the spacing is taken to be the training's.
    The spacing comes from the AugInput's ``spacing`` attribute (the mapper's
    records) or else ``input_spacing``, which the predictor sets per input.

    Args:
        scale: the factor for a slice of the training's spacing (`shortest_edge_scale`
            of the training's typical slice at the test sizes).
        train: the training geometry (`geometry_from_cfg`).
        interp: PIL resampling of the image.
    """

    def __init__(self, scale: float, train: SliceGeometry, interp=Image.BILINEAR):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"resize scale must be > 0, got {scale}")
        self.scale, self.train, self.interp = float(scale), train, interp
        self.input_spacing: Optional[tuple[float, float]] = None

    def scales(self, spacing: Optional[Sequence[float]] = None) -> tuple[float, float]:
        """(row, column) factors for slices of ``spacing`` (None: the training's)."""
        if spacing is None or self.train.spacing is None:
            return self.scale, self.scale
        return (
            self.scale * float(spacing[0]) / self.train.spacing[0],
            self.scale * float(spacing[1]) / self.train.spacing[1],
        )

    def get_transform(self, image: np.ndarray, spacing: Optional[Sequence[float]] = None):
        """As the parent's, plus the slice's (row, column) ``spacing`` mm (None: the training's)."""
        h, w = image.shape[:2]
        sy, sx = self.scales(spacing)
        return T.ResizeTransform(
            h, w, max(1, int(h * sy + 0.5)), max(1, int(w * sx + 0.5)), self.interp
        )

    def __call__(self, aug_input) -> T.Transform:
        spacing = getattr(aug_input, "spacing", None)
        tfm = self.get_transform(
            aug_input.image, spacing if spacing is not None else self.input_spacing
        )
        aug_input.transform(tfm)
        return tfm


def _training_scale_resize(cfg) -> Optional[TrainingScaleResize]:
    # the new test-time resize applies only where the training geometry is known,
    # slices are not head-cropped (the crop already fixes the head's scale) and resizing is on
    mode = cfg.INPUT.TEST_RESIZE
    if mode not in ("training_scale", "shortest_edge"):
        from ..errors import ConfigError

        raise ConfigError(
            "INPUT.TEST_RESIZE", f"must be 'training_scale' or 'shortest_edge', got {mode!r}"
        )
    train = geometry_from_cfg(cfg)
    min_size = cfg.INPUT.MIN_SIZE_TEST
    if isinstance(min_size, (list, tuple)):
        min_size = min_size[0] if len(min_size) == 1 else 0
    if mode != "training_scale" or train is None or cfg.INPUT.CROP_TO_HEAD or min_size <= 0:
        return None
    scale = shortest_edge_scale(train.height, train.width, min_size, cfg.INPUT.MAX_SIZE_TEST)
    return TrainingScaleResize(scale, train)


def build_pwml_augmentations(cfg, is_train: bool) -> list[T.Augmentation]:
    """Training: width scale, flip, resize (cfg); testing: resize only.

    The width-scale range is INPUT.WIDTH_SCALE_RANGE (added by add_rsrcnn_config,
    default the paper's (0.85, 1.15)); INPUT.RANDOM_FLIP ("horizontal",
    "vertical" or "none") chooses the flip; sizes follow detectron2's
    ResizeShortestEdge keys, and a min size of 0 means no resizing. At test time
    `TrainingScaleResize` replaces ResizeShortestEdge when INPUT.TEST_RESIZE is
    "training_scale", INPUT.TRAIN_SLICE_SIZE is recorded and CROP_TO_HEAD is off.
    """
    augs: list[T.Augmentation] = []
    if not is_train:
        resize = _training_scale_resize(cfg)
        if resize is not None:
            return [resize]
    if is_train:
        scale = tuple(cfg.INPUT.WIDTH_SCALE_RANGE)
        if scale != (1.0, 1.0):
            augs.append(RandomWidthScale(scale))
        flip = cfg.INPUT.RANDOM_FLIP
        if flip != "none":
            augs.append(
                T.RandomFlip(prob=0.5, horizontal=flip == "horizontal", vertical=flip == "vertical")
            )
        min_size, max_size = cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN
        sampling = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    else:
        min_size, max_size, sampling = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice"
    sizes = min_size if isinstance(min_size, (list, tuple)) else (min_size,)
    if any(s > 0 for s in sizes):
        augs.append(T.ResizeShortestEdge(min_size, max_size, sampling))
    return augs
