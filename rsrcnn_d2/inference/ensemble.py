"""Several checkpoints and horizontal-flip test-time augmentation as one RS R-CNN.

How the members are combined, per image (detectron2's own TTA recipe for Mask
R-CNN, extended to several checkpoints of one config):

1. every member — each checkpoint, on the image and, with ``flip``, on its
   mirror — detects lesions; mirrored boxes are mirrored back;
2. the union of all members' detections is merged by the config's test NMS
   (``MODEL.ROI_HEADS.NMS_THRESH_TEST``, ``TEST.DETECTIONS_PER_IMAGE``): each
   lesion once, with its highest score; it is kept if at least ``min_votes``
   members detected it (a detection of theirs overlaps it by the NMS IoU) —
   ``TEST.ENSEMBLE_MIN_VOTES``: 1 is detectron2's TTA (any member's detection
   counts), "majority" (the default) more than half of the members;
3. every member's mask head predicts the mask of each merged box (on the
   mirror for mirrored members, then mirrored back), and the per-instance mask
   probabilities are averaged over the members;
4. the averaged masks go through the first model's usual postprocessing:
   pasting through the (k-expanded) boxes, the dense CRF per instance on the
   network-scale image patch, then the mask threshold.

So averaging happens before thresholding and before the CRF, and the CRF runs
exactly as in a single model. One member without ``flip`` is the plain model.
All members must share the config's input pipeline (the same network input);
checkpoints of one config's folds or seeds do.
"""

from collections.abc import Sequence
from typing import Union

import torch
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Boxes, Instances, pairwise_iou

__all__ = ["LesionEnsemble", "flip_boxes", "member_scores", "votes", "with_flip_tta"]


def member_scores(
    merged: torch.Tensor,
    member_boxes: Sequence[torch.Tensor],
    member_box_scores: Sequence[torch.Tensor],
    iou: float,
) -> torch.Tensor:
    """(R, members): each member's highest score among its boxes overlapping a merged box by
    IoU >= ``iou``, 0 where none does.

    Why keep them: a member's detections at a higher score threshold are the ones
    above it, so the votes a merged box would get at any threshold t are the
    members whose entry is >= t; calibrating the threshold (rsrcnn_d2.tuning)
    needs no second network pass.
    """
    out = merged.new_zeros((len(merged), len(member_boxes)))
    for j, (boxes, scores) in enumerate(zip(member_boxes, member_box_scores)):
        if len(boxes) and len(merged):
            hits = pairwise_iou(Boxes(merged), Boxes(boxes)) >= iou
            out[:, j] = torch.where(hits, scores[None, :], torch.zeros_like(scores)[None, :]).amax(
                1
            )
    return out


def votes(merged: torch.Tensor, member_boxes: Sequence[torch.Tensor], iou: float) -> torch.Tensor:
    """For each merged box, how many members detected it (a box of theirs with IoU >= ``iou``)."""
    ones = [torch.ones(len(b), device=merged.device) for b in member_boxes]
    return (member_scores(merged, member_boxes, ones, iou) > 0).sum(dim=1)


def flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """XYXY boxes mirrored left-right in an image ``width`` pixels wide."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def with_flip_tta(cfg, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with horizontal-flip TTA when ``TEST.FLIP_TTA`` is on (evaluation, tuning),
    else itself."""
    if not cfg.TEST.FLIP_TTA:
        return model
    inner = getattr(model, "module", model)
    # the caller's train/eval mode: inference_on_dataset restores the wrapper's mode afterwards
    return LesionEnsemble.from_config(cfg, [inner], flip=True).train(inner.training)


class LesionEnsemble(torch.nn.Module):
    """An inference-only module with the model's interface over several models and/or flips."""

    def __init__(
        self,
        models: Sequence[torch.nn.Module],
        flip: bool = True,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        min_votes: Union[int, str] = "majority",
    ):
        super().__init__()
        if not models:
            raise ValueError("LesionEnsemble needs at least one model")
        self.models = torch.nn.ModuleList(models)
        self.flip = bool(flip)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_image = int(detections_per_image)
        if min_votes == "majority":
            min_votes = self.members // 2 + 1
        elif not (isinstance(min_votes, int) and 1 <= min_votes <= self.members):
            raise ValueError(
                f"min_votes must be 'majority' or 1..{self.members} (the members), "
                f"got {min_votes!r}"
            )
        self.min_votes = min_votes

    @classmethod
    def from_config(cls, cfg, models: Sequence[torch.nn.Module], flip: bool) -> "LesionEnsemble":
        votes = int(cfg.TEST.ENSEMBLE_MIN_VOTES)  # 0: a majority
        members = len(models) * (2 if flip else 1)
        return cls(
            models,
            flip,
            cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            cfg.TEST.DETECTIONS_PER_IMAGE,
            min(votes, members) if votes > 0 else "majority",
        )

    @property
    def members(self) -> int:
        return len(self.models) * (2 if self.flip else 1)

    @torch.no_grad()
    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        if self.members == 1:
            return self.models[0](batched_inputs)
        return [self._one(x) for x in batched_inputs]

    def _views(self, inp: dict):
        mirrored = dict(inp, image=inp["image"].flip(dims=[-1]))
        for model in self.models:
            yield model, inp, False
            if self.flip:
                yield model, mirrored, True

    def _one(self, inp: dict) -> dict:
        height, width = inp["image"].shape[-2:]
        boxes, scores, classes, members = [], [], [], []
        for model, view, mirrored in self._views(inp):
            # GeneralizedRCNN.inference's steps, keeping the features for the mask pass
            images = model.preprocess_image([view])
            features = model.backbone(images.tensor)
            proposals, _ = model.proposal_generator(images, features, None)
            found = model.roi_heads(images, features, proposals, None)[0][0]
            members.append((model, features, mirrored))
            b = found.pred_boxes.tensor
            boxes.append(flip_boxes(b, width) if mirrored else b)
            scores.append(found.scores)
            classes.append(found.pred_classes)
        merged = self._merge(
            torch.cat(boxes), torch.cat(scores), torch.cat(classes), (height, width)
        )
        merged.member_scores = member_scores(
            merged.pred_boxes.tensor, boxes, scores, self.nms_thresh
        )
        if self.min_votes > 1 and len(merged):
            merged = merged[(merged.member_scores > 0).sum(dim=1) >= self.min_votes]
        masks, expanded = [], None
        for model, features, mirrored in members:
            given = Instances(
                (height, width),
                scores=merged.scores,
                pred_classes=merged.pred_classes,
                pred_boxes=Boxes(
                    flip_boxes(merged.pred_boxes.tensor, width)
                    if mirrored
                    else merged.pred_boxes.tensor
                ),
            )
            out = model.roi_heads.forward_with_given_boxes(features, [given.to(model.device)])[0]
            if out.has("pred_masks"):  # (R, 1, M, M); R = 0 keeps the field's shape
                masks.append(out.pred_masks.flip(dims=[-1]) if mirrored else out.pred_masks)
            if not mirrored and expanded is None and out.has("expanded_boxes"):
                expanded = out.expanded_boxes
        if masks:
            merged.pred_masks = torch.stack(masks).mean(dim=0)
        if expanded is not None:
            merged.expanded_boxes = expanded
        return self.models[0]._postprocess_one(merged, inp)

    def _merge(self, boxes, scores, classes, shape_hw) -> Instances:
        num_classes = int(classes.max()) + 1 if len(classes) else 1
        scores_2d = boxes.new_zeros((len(boxes), num_classes + 1))  # + background column
        scores_2d[torch.arange(len(boxes)), classes] = scores
        merged, _ = fast_rcnn_inference_single_image(
            boxes, scores_2d, shape_hw, 1e-8, self.nms_thresh, self.detections_per_image
        )
        return merged
