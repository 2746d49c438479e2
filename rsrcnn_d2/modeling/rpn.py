"""The reference's RPN: one NMS over the proposals of all FPN levels, and its box loss.

detectron2's RPN keeps ``PRE_NMS_TOPK`` proposals *per level* and runs NMS
within each level. The reference (Matterport's proposal layer) keeps the
``PRE_NMS_TOPK`` best anchors of all levels together and runs one NMS over them,
so a box on one level suppresses an overlapping box on another. The NMS stops once it has
kept ``POST_NMS_TOPK`` boxes (`rsrcnn_d2.box_ops.nms_first`): torchvision's NMS cut at that
count, where a full NMS took most of the proposal step on a CPU (70-150 ms an image,
docs/BENCHMARKS.md). detectron2's selection gives the same proposals except where scores tie
exactly: it orders those its own way (a top-k over the batch, then a re-sort that does not keep
ties in order), ours keep torchvision's order.

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
from detectron2.structures import Boxes, Instances

from ..box_ops import nms_first

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
        """As the parent's, but top-k and NMS run once over all levels together, not per level,
        and the NMS stops once it has kept ``post_nms_topk`` boxes (`nms_first`: the same
        proposals, without visiting the 6,000 candidates a full NMS would).

        Args:
            anchors: per level, Boxes (Hi*Wi*A, 4).
            pred_objectness_logits: per level, (N, Hi*Wi*A).
            pred_anchor_deltas: per level, (N, Hi*Wi*A, 4).
            image_sizes: N (height, width).

        Returns:
            N Instances with ``proposal_boxes`` and ``objectness_logits``, best first.
        """
        anchors = [Boxes.cat(anchors)]
        logits = torch.cat(pred_objectness_logits, dim=1)  # (N, R)
        deltas = [torch.cat(pred_anchor_deltas, dim=1)]
        with torch.no_grad():
            boxes = self._decode_proposals(anchors, deltas)[0]  # (N, R, 4)
            return [
                self._top_proposals(b, s, size) for b, s, size in zip(boxes, logits, image_sizes)
            ]

    def _top_proposals(self, boxes: torch.Tensor, logits: torch.Tensor, image_size) -> Instances:
        """One image's proposals from its decoded boxes (R, 4) and logits (R,): the
        ``pre_nms_topk`` best, clipped, at least ``min_box_size`` wide, then NMS."""
        logits, best = logits.topk(min(self.pre_nms_topk[self.training], len(logits)))
        boxes = boxes[best]
        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(logits)
        if not finite.all():
            if self.training:  # detectron2's own verdict on the same condition
                raise FloatingPointError("the RPN predicted a non-finite box or score: diverged")
            boxes, logits = boxes[finite], logits[finite]
        boxes = Boxes(boxes)
        boxes.clip(image_size)
        wide = boxes.nonempty(threshold=self.min_box_size)
        boxes, logits = boxes[wide], logits[wide]
        keep = nms_first(boxes.tensor, logits, self.nms_thresh, self.post_nms_topk[self.training])
        proposals = Instances(image_size)
        proposals.proposal_boxes = boxes[keep]
        proposals.objectness_logits = logits[keep]
        return proposals
