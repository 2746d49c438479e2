"""RSRCNN: GeneralizedRCNN with the reference's input normalisation, expanded-box pasting,
DCRF and head crops.

Only inference's postprocessing and the input normalisation differ from
detectron2's GeneralizedRCNN; training is the parent's. Outputs, per image, in
the frame given by the input's ``height`` x ``width`` (default: the input's own
size); an input with ``crop_box`` (x0, y0, x1, y1) showed the network only that
part of the frame (a head crop) and its outputs are put back in place:

- ``instances``: as Mask R-CNN's (``pred_boxes`` are the refined boxes;
  ``pred_masks`` bool (R, H, W)), plus ``expanded_boxes`` (the boxes masks were
  pasted through, in the output frame), ``network_boxes`` (the same at the
  network's input scale) and ``mask_probs`` (R, 1, M, M), the raw mask head
  probabilities (what a DCRF tuner needs to re-run only the CRF);
- ``lesion_mask``: bool (H, W), union of the instance masks — the task is
  semantic segmentation of lesions;
- ``lesion_prob``: float (H, W), pixel-wise maximum of the instance probabilities.
"""

from typing import Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances

from .dcrf import build_dcrf_postprocessor
from .postprocessing import minmax_uint8_image, network_grey, paste_lesions, zscore_image

__all__ = ["RSRCNN", "NORMALIZATIONS"]

NORMALIZATIONS = ("minmax_uint8", "zscore", "none")


@META_ARCH_REGISTRY.register()
class RSRCNN(GeneralizedRCNN):
    """Mask R-CNN meta-architecture of RS R-CNN (``MODEL.META_ARCHITECTURE: RSRCNN``).

    Args:
        normalization: one of `NORMALIZATIONS`: "zscore" per image (the pixel mean and
            std are not used), "minmax_uint8" (stretch to 0..255, then the pixel mean and
            std) or "none" (the pixel mean and std only).
        mask_threshold: probability at or above which a pasted mask pixel is lesion.
        dcrf: ``dcrf(patch_u8, prob) -> prob`` run on each instance before thresholding
            (`build_dcrf_postprocessor`), or None.
        kwargs: GeneralizedRCNN's.
    """

    @configurable
    def __init__(
        self, *, normalization: str = "zscore", mask_threshold: float = 0.5, dcrf=None, **kwargs
    ):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"MODEL.RSRCNN.NORMALIZATION must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        self.normalization = normalization
        self.mask_threshold = mask_threshold
        self.dcrf = dcrf

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret.update(
            normalization=cfg.MODEL.RSRCNN.NORMALIZATION,
            mask_threshold=cfg.MODEL.RSRCNN.MASK_THRESHOLD,
            dcrf=build_dcrf_postprocessor(cfg),
        )
        return ret

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        image = self._move_to_current_device(image).float()
        if self.normalization == "zscore":
            return zscore_image(image)
        if self.normalization == "minmax_uint8":
            image = minmax_uint8_image(image)
        return (image - self.pixel_mean) / self.pixel_std

    def preprocess_image(self, batched_inputs: list[dict[str, torch.Tensor]]) -> ImageList:
        """As the parent's, but each image is normalised as ``MODEL.RSRCNN.NORMALIZATION`` says."""
        images = [self._normalize(x["image"]) for x in batched_inputs]
        return ImageList.from_tensors(
            images,
            self.backbone.size_divisibility,
            padding_constraints=self.backbone.padding_constraints,
        )

    def inference(
        self,
        batched_inputs,
        detected_instances: Optional[list[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """As the parent's, but postprocessed outputs are the dicts of the module doc."""
        results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
        if not do_postprocess:
            return results
        return [self._postprocess_one(r, x) for r, x in zip(results, batched_inputs)]

    def _postprocess_one(self, results: Instances, batched_input: dict) -> dict:
        in_h, in_w = results.image_size
        height = int(batched_input.get("height", in_h))
        width = int(batched_input.get("width", in_w))
        crop_box = batched_input.get("crop_box")
        x0, y0, x1, y1 = (0, 0, width, height) if crop_box is None else (int(v) for v in crop_box)
        has_masks = results.has("pred_masks")
        if has_masks:
            results.mask_probs = results.pred_masks
            results.remove("pred_masks")  # pasted below, not by detector_postprocess
            source = results.expanded_boxes if results.has("expanded_boxes") else results.pred_boxes
            results.network_boxes = source.tensor.clone()  # a plain tensor: not rescaled
        # rescales pred_boxes to the (cropped) frame and drops empty ones
        framed = detector_postprocess(results, y1 - y0, x1 - x0)
        out = Instances((height, width), **framed.get_fields())
        out.pred_boxes.tensor += out.pred_boxes.tensor.new_tensor([x0, y0, x0, y0])

        lesion_prob = torch.zeros((height, width), dtype=torch.float32, device=self.device)
        masks = torch.zeros((len(out), height, width), dtype=torch.bool, device=self.device)
        if has_masks:
            network_image = network_grey(batched_input["image"].to(self.device))
            masks, lesion_prob, boxes = paste_lesions(
                out.mask_probs,
                out.network_boxes,
                network_image,
                height,
                width,
                crop_box,
                self.mask_threshold,
                refine=self.dcrf if len(out) > 0 else None,
            )
            out.expanded_boxes = Boxes(boxes)
            out.pred_masks = masks
        return {"instances": out, "lesion_mask": masks.any(dim=0), "lesion_prob": lesion_prob}
