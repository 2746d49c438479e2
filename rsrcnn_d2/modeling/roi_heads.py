"""ROI heads of the reference: its ROI sampler, and boxes expanded by the factor k.

`ReferenceSamplingROIHeads` (row B) is detectron2's StandardROIHeads with the
reference's sampler (`subsample_capped_negatives`: at most ``POSITIVE_FRACTION``
positives and about twice as many negatives, not filled up to the batch size).

`ExpandedROIHeads` (rows C-E) adds the expansion by k:
- box branch (RoIAlign1, 7x7): pools the proposals expanded by k, so the
  classifier sees the lesion's surroundings, while its box deltas stay relative
  to the unexpanded proposals (training targets and decoding alike);
- mask branch (RoIAlign2, N x N, N = round(14 k)): pools the foreground
  proposals expanded by k in training, so detectron2's ``mask_rcnn_loss`` crops
  the ground truth on the expanded box too, and the refined (predicted) boxes
  expanded by k at inference. Those are kept as ``instances.expanded_boxes``
  for pasting; ``pred_boxes`` stays refined.
All expansions are the same float box (`expand_boxes`, clipped to the image).
"""

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, Instances

from ..box_ops import expand_boxes, expanded_mask_resolution
from .sampling import subsample_capped_negatives

__all__ = ["ReferenceSamplingROIHeads", "ExpandedROIHeads", "mask_pooler_resolution"]


def mask_pooler_resolution(cfg) -> int:
    """RoIAlign2's side N: EXPANDED_RESOLUTION if set, else round(14 k)."""
    head = cfg.MODEL.ROI_MASK_HEAD
    return head.EXPANDED_RESOLUTION or expanded_mask_resolution(head.EXPANSION_K)


@ROI_HEADS_REGISTRY.register()
class ReferenceSamplingROIHeads(StandardROIHeads):
    """StandardROIHeads whose training ROIs follow the reference's sampler (see module doc)."""

    @configurable
    def __init__(self, *, cap_negatives: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.cap_negatives = cap_negatives

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["cap_negatives"] = cfg.MODEL.ROI_HEADS.CAP_NEGATIVES
        return ret

    def _sample_proposals(
        self, matched_idxs: torch.Tensor, matched_labels: torch.Tensor, gt_classes: torch.Tensor
    ):
        if not self.cap_negatives:
            return super()._sample_proposals(matched_idxs, matched_labels, gt_classes)
        if gt_classes.numel() > 0:
            labels = gt_classes[matched_idxs]
            labels[matched_labels == 0] = self.num_classes
            labels[matched_labels == -1] = -1
        else:
            labels = torch.full_like(matched_idxs, self.num_classes)
        pos, neg = subsample_capped_negatives(
            labels, self.batch_size_per_image, self.positive_fraction, self.num_classes
        )
        sampled = torch.cat([pos, neg])
        return sampled, labels[sampled]


@ROI_HEADS_REGISTRY.register()
class ExpandedROIHeads(ReferenceSamplingROIHeads):
    """ReferenceSamplingROIHeads with both branches on k-expanded boxes (see module doc).

    Args:
        expansion_k: k >= 1 (1: no expansion).
        expand_box_head: RoIAlign1 pools the expanded proposals too
            (``MODEL.ROI_BOX_HEAD.EXPAND_PROPOSALS``); not with TRAIN_ON_PRED_BOXES.
        kwargs: ReferenceSamplingROIHeads' and StandardROIHeads'.
    """

    @configurable
    def __init__(self, *, expansion_k: float = 1.3, expand_box_head: bool = True, **kwargs):
        super().__init__(**kwargs)
        if expansion_k < 1:
            raise ValueError(f"MODEL.ROI_MASK_HEAD.EXPANSION_K must be >= 1, got {expansion_k}")
        if expand_box_head and self.train_on_pred_boxes:
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.EXPAND_PROPOSALS and TRAIN_ON_PRED_BOXES cannot be combined"
            )
        self.expansion_k = expansion_k
        self.expand_box_head = expand_box_head

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["expansion_k"] = cfg.MODEL.ROI_MASK_HEAD.EXPANSION_K
        ret["expand_box_head"] = cfg.MODEL.ROI_BOX_HEAD.EXPAND_PROPOSALS
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = mask_pooler_resolution(cfg)
        return super()._init_mask_head(cfg, input_shape)

    def _expand(self, boxes: Boxes, image_size) -> Boxes:
        return Boxes(expand_boxes(boxes.tensor, self.expansion_k, image_size))

    def _forward_box(self, features: dict[str, torch.Tensor], proposals: list[Instances]):
        if not self.expand_box_head:
            return super()._forward_box(features, proposals)
        # StandardROIHeads._forward_box, except that RoIAlign1 pools the expanded
        # proposals; losses and decoding use the unexpanded `proposal_boxes`
        pooled_boxes = [self._expand(p.proposal_boxes, p.image_size) for p in proposals]
        box_features = self.box_pooler([features[f] for f in self.box_in_features], pooled_boxes)
        predictions = self.box_predictor(self.box_head(box_features))
        if self.training:
            return self.box_predictor.losses(predictions, proposals)
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        return pred_instances

    def _forward_mask(self, features: dict[str, torch.Tensor], instances: list[Instances]):
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
