"""RSRCNN: GeneralizedRCNN with per-image z-scoring, expanded-box pasting and DCRF.

Only inference's postprocessing and the input normalisation differ from
detectron2's GeneralizedRCNN; training is the parent's. Outputs, per image:

- ``instances``: as Mask R-CNN's (``pred_boxes`` are the refined boxes, at the
  output size; ``pred_masks`` bool (R, H, W)), plus ``expanded_boxes`` where the
  ROI heads expanded boxes, and ``mask_probs`` (R, 1, M, M), the raw mask head
  probabilities (what a DCRF tuner needs to re-run only the CRF);
- ``lesion_mask``: bool (H, W), union of the instance masks — the task is
  semantic segmentation of lesions;
- ``lesion_prob``: float (H, W), pixel-wise maximum of the instance probabilities.
"""
from typing import Dict, List, Optional

import torch

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances

from .dcrf import build_dcrf_postprocessor
from .postprocessing import image_at_size, paste_instance_masks, zscore_image

__all__ = ["RSRCNN"]


@META_ARCH_REGISTRY.register()
class RSRCNN(GeneralizedRCNN):
    """Mask R-CNN meta-architecture of RS R-CNN (``MODEL.META_ARCHITECTURE: RSRCNN``)."""

    @configurable
    def __init__(self, *, per_image_zscore: bool = True, mask_threshold: float = 0.5,
                 dcrf=None, **kwargs):
        super().__init__(**kwargs)
        self.per_image_zscore = per_image_zscore
        self.mask_threshold = mask_threshold
        self.dcrf = dcrf

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret.update(
            per_image_zscore=cfg.MODEL.RSRCNN.PER_IMAGE_ZSCORE,
            mask_threshold=cfg.MODEL.RSRCNN.MASK_THRESHOLD,
            dcrf=build_dcrf_postprocessor(cfg),
        )
        return ret

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        if not self.per_image_zscore:
            return super().preprocess_image(batched_inputs)
        images = [zscore_image(self._move_to_current_device(x["image"])) for x in batched_inputs]
        return ImageList.from_tensors(images, self.backbone.size_divisibility,
                                      padding_constraints=self.backbone.padding_constraints)

    def inference(self, batched_inputs, detected_instances: Optional[List[Instances]] = None,
                  do_postprocess: bool = True):
        results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
        if not do_postprocess:
            return results
        return [self._postprocess_one(r, x) for r, x in zip(results, batched_inputs)]

    def _postprocess_one(self, results: Instances, batched_input: Dict) -> Dict:
        in_h, in_w = results.image_size
        height = int(batched_input.get("height", in_h))
        width = int(batched_input.get("width", in_w))
        has_masks = results.has("pred_masks")
        if has_masks:
            results.mask_probs = results.pred_masks
            results.remove("pred_masks")  # pasted below, not by detector_postprocess
            source = results.expanded_boxes if results.has("expanded_boxes") else results.pred_boxes
            results.paste_boxes = Boxes(source.tensor.clone())
        out = detector_postprocess(results, height, width)  # rescales + filters pred_boxes

        lesion_prob = torch.zeros((height, width), dtype=torch.float32, device=self.device)
        masks = torch.zeros((len(out), height, width), dtype=torch.bool, device=self.device)
        if has_masks:
            paste = out.paste_boxes
            out.remove("paste_boxes")
            paste.scale(width / in_w, height / in_h)
            paste.clip((height, width))
            if out.has("expanded_boxes"):
                out.expanded_boxes = paste
            image = None
            if self.dcrf is not None and len(out) > 0:
                image = image_at_size(batched_input["image"], height, width)
            masks, lesion_prob = paste_instance_masks(
                out.mask_probs, paste.tensor, height, width, self.mask_threshold,
                image=image, refine=self.dcrf,
            )
            out.pred_masks = masks
        return {"instances": out, "lesion_mask": masks.any(dim=0), "lesion_prob": lesion_prob}
