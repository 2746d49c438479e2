"""The reference's proposal selection: one NMS over the proposals of all FPN levels.

detectron2's RPN keeps ``PRE_NMS_TOPK`` proposals *per level* and runs NMS
within each level. The reference (Matterport's proposal layer) keeps the
``PRE_NMS_TOPK`` best anchors of all levels together and runs one NMS over them,
so a box on one level suppresses an overlapping box on another. Handing
detectron2's selection the levels concatenated into one does exactly that.
"""

import torch

from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes

__all__ = ["SingleNMSRPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class SingleNMSRPN(RPN):
    """detectron2's RPN with one pre-NMS top-k and one NMS across all feature levels.

    Selected by ``MODEL.PROPOSAL_GENERATOR.NAME: SingleNMSRPN``; anchors, head,
    matching, sampling and losses are detectron2's.
    """

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        # per level: anchors Boxes (Hi*Wi*A, 4), logits (N, Hi*Wi*A), deltas (N, Hi*Wi*A, 4)
        anchors = [Boxes.cat(anchors)]
        pred_objectness_logits = [torch.cat(pred_objectness_logits, dim=1)]
        pred_anchor_deltas = [torch.cat(pred_anchor_deltas, dim=1)]
        return super().predict_proposals(
            anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes
        )
