"""From the network's raw outputs to masks at the output resolution.

Pure functions on tensors. Masks are pasted through the box the mask branch saw
(the expanded box, when there is one), optionally refined on the image patch
under that box, then thresholded; the slice's lesion mask is their union.
"""
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from detectron2.layers.mask_ops import _do_paste_mask

from .dcrf import to_uint8

__all__ = ["zscore_image", "image_at_size", "paste_instance_masks"]


def zscore_image(image: torch.Tensor) -> torch.Tensor:
    """Per-image normalisation to zero mean and unit variance (all channels at once).

    A constant image becomes all zeros instead of NaN.
    """
    image = image.float()
    std = image.std() if image.numel() > 1 else image.new_tensor(0.0)
    return (image - image.mean()) / std.clamp(min=1e-6)


def image_at_size(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Grey image (height, width) from a (C, H, W) input, resized bilinearly if needed."""
    grey = image.float().mean(dim=0)
    if tuple(grey.shape) != (height, width):
        grey = F.interpolate(grey[None, None], size=(height, width), mode="bilinear",
                             align_corners=False)[0, 0]
    return grey


def paste_instance_masks(
    mask_probs: torch.Tensor,
    paste_boxes: torch.Tensor,
    height: int,
    width: int,
    threshold: float = 0.5,
    image: Optional[torch.Tensor] = None,
    refine: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Paste per-instance probability maps into the image and threshold them.

    Args:
        mask_probs: Tensor of shape (R, 1, M, M), probabilities in [0, 1].
        paste_boxes: Tensor of shape (R, 4), XYXY at the output resolution; each
            M x M map is resized to its box.
        height, width: output size.
        threshold: probability at or above which a pixel is lesion.
        image: grey image (height, width), needed when ``refine`` is given.
        refine: ``refine(patch_u8, prob) -> prob`` applied to each instance's
            patch before thresholding (the dense CRF), or None.

    Returns:
        masks: bool Tensor of shape (R, height, width);
        prob: float Tensor of shape (height, width), the pixel-wise maximum of the
            (refined) instance probabilities, zero outside every box.
    """
    num = mask_probs.shape[0]
    device = mask_probs.device
    masks = torch.zeros((num, height, width), dtype=torch.bool, device=device)
    prob_map = torch.zeros((height, width), dtype=torch.float32, device=device)
    grey_u8 = None
    if refine is not None and num > 0:
        if image is None:
            raise ValueError("paste_instance_masks: `refine` needs the image")
        grey_u8 = to_uint8(image.detach().cpu().numpy())
    for i in range(num):
        patch, (ys, xs) = _do_paste_mask(mask_probs[i : i + 1].float(), paste_boxes[i : i + 1],
                                         height, width, skip_empty=True)
        prob = patch[0]
        if grey_u8 is not None and prob.numel() > 0:
            refined = refine(grey_u8[ys, xs], prob.detach().cpu().numpy())
            prob = torch.from_numpy(np.asarray(refined, dtype=np.float32)).to(device)
        masks[i, ys, xs] = prob >= threshold
        prob_map[ys, xs] = torch.maximum(prob_map[ys, xs], prob)
    return masks, prob_map
