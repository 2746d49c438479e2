"""ROI heads whose mask branch works on boxes expanded by the factor k.

Box branch (RoIAlign1, 7x7, class + box regression) is detectron2's
StandardROIHeads unchanged. The mask branch (RoIAlign2) pools N x N features,
N = round(14 k), from
- training: the foreground proposals expanded by k, so that detectron2's
  ``mask_rcnn_loss`` crops the ground truth to the expanded box as well;
- inference: the refined (predicted) boxes expanded by k. The expanded boxes are
  kept as ``instances.expanded_boxes`` for pasting; ``pred_boxes`` stays refined.
"""
from typing import Dict, List

import torch

from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, Instances

from ..box_ops import expand_boxes, expanded_mask_resolution

__all__ = ["ExpandedROIHeads", "mask_pooler_resolution"]


def mask_pooler_resolution(cfg) -> int:
    """RoIAlign2's side N: EXPANDED_RESOLUTION if set, else round(14 k)."""
    head = cfg.MODEL.ROI_MASK_HEAD
    return head.EXPANDED_RESOLUTION or expanded_mask_resolution(head.EXPANSION_K)


@ROI_HEADS_REGISTRY.register()
class ExpandedROIHeads(StandardROIHeads):
    """StandardROIHeads with the mask branch on k-expanded boxes (see module doc)."""

    @configurable
    def __init__(self, *, expansion_k: float = 1.3, **kwargs):
        super().__init__(**kwargs)
        if expansion_k < 1:
            raise ValueError(f"MODEL.ROI_MASK_HEAD.EXPANSION_K must be >= 1, got {expansion_k}")
        self.expansion_k = expansion_k

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["expansion_k"] = cfg.MODEL.ROI_MASK_HEAD.EXPANSION_K
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = mask_pooler_resolution(cfg)
        return super()._init_mask_head(cfg, input_shape)

    def _expand(self, boxes: Boxes, image_size) -> Boxes:
        return Boxes(expand_boxes(boxes.tensor, self.expansion_k, image_size))

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances]):
        if not self.mask_on:
            return {} if self.training else instances
        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
            for inst in instances:
                inst.proposal_boxes = self._expand(inst.proposal_boxes, inst.image_size)
            # the parent selects foreground again (a no-op now) and pools on
            # proposal_boxes, which are the expanded boxes
            return super()._forward_mask(features, instances)

        views = []
        for inst in instances:
            inst.expanded_boxes = self._expand(inst.pred_boxes, inst.image_size)
            view = Instances(inst.image_size, **inst.get_fields())
            view.pred_boxes = inst.expanded_boxes  # the parent pools on pred_boxes
            views.append(view)
        views = super()._forward_mask(features, views)
        for inst, view in zip(instances, views):
            inst.pred_masks = view.pred_masks
        return instances
