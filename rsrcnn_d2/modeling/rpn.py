"""The reference's RPN: one NMS over the proposals of all FPN levels, and its box loss.

detectron2's RPN keeps ``PRE_NMS_TOPK`` proposals *per level* and runs NMS
within each level. The reference (Matterport's proposal layer) keeps the
``PRE_NMS_TOPK`` best anchors of all levels together and runs one NMS over them,
so a box on one level suppresses an overlapping box on another. Handing
detectron2's selection the levels concatenated into one does exactly that.

The box loss: the reference divides its targets by (0.1, 0.1, 0.2, 0.2) (detectron2's
``MODEL.RPN.BBOX_REG_WEIGHTS`` (10, 10, 5, 5)), takes smooth-L1 with beta 1
(``BBOX_REG_LOSS_TYPE``, ``SMOOTH_L1_BETA``) and averages it over the positive anchors'
coordinates; detectron2 divides the sum by the sampled anchors (``BATCH_SIZE_PER_IMAGE``
x images) instead, whatever their share of positives. ``MODEL.RPN.LOC_LOSS_AVERAGE``
chooses.
"""

import torch
from detectron2.config import configurable
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes

__all__ = ["SingleNMSRPN", "LOC_LOSS_AVERAGES"]

# MODEL.RPN.LOC_LOSS_AVERAGE: what the summed box loss is divided by
LOC_LOSS_AVERAGES = ("sampled_anchors", "positive_coordinates")


@PROPOSAL_GENERATOR_REGISTRY.register()
class SingleNMSRPN(RPN):
    """detectron2's RPN with one pre-NMS top-k and one NMS across all feature levels.

    Selected by ``MODEL.PROPOSAL_GENERATOR.NAME: SingleNMSRPN``; anchors, head,
    matching, sampling and the objectness loss are detectron2's; the box loss is averaged
    as ``loc_loss_average`` says.
    """

    @configurable
    def __init__(self, *, loc_loss_average: str = "sampled_anchors", **kwargs):
        super().__init__(**kwargs)
        if loc_loss_average not in LOC_LOSS_AVERAGES:
            raise ValueError(
                f"MODEL.RPN.LOC_LOSS_AVERAGE must be one of {LOC_LOSS_AVERAGES}, "
                f"got {loc_loss_average!r}"
            )
        self.loc_loss_average = loc_loss_average

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["loc_loss_average"] = cfg.MODEL.RPN.LOC_LOSS_AVERAGE
        return ret

    def losses(self, anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        """detectron2's losses; with ``positive_coordinates`` the box loss is the mean over the
        positive anchors' coordinates (the reference's ``K.mean`` over a (P, 4) tensor), 0
        without a positive anchor."""
        losses = super().losses(
            anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes
        )
        if self.loc_loss_average == "positive_coordinates":
            positives = sum(int((labels == 1).sum()) for labels in gt_labels)
            coordinates = positives * pred_anchor_deltas[0].shape[-1]
            # detectron2 divided the sum by the sampled anchors of the batch
            sampled = self.batch_size_per_image * len(gt_labels)
            losses["loss_rpn_loc"] = losses["loss_rpn_loc"] * (sampled / max(coordinates, 1))
        return losses

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        """As the parent's, but top-k and NMS run once over all levels together, not per level."""
        # per level: anchors Boxes (Hi*Wi*A, 4), logits (N, Hi*Wi*A), deltas (N, Hi*Wi*A, 4)
        anchors = [Boxes.cat(anchors)]
        pred_objectness_logits = [torch.cat(pred_objectness_logits, dim=1)]
        pred_anchor_deltas = [torch.cat(pred_anchor_deltas, dim=1)]
        return super().predict_proposals(
            anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes
        )
