"""From the network's raw outputs to masks at the output resolution.

Pure functions on tensors. Masks are pasted through the box the mask branch saw
(the expanded box, when there is one), optionally refined on the image patch
under that box, then thresholded; the slice's lesion mask is their union.
"""

from collections.abc import Sequence
from typing import Callable, Optional

import numpy as np
import torch
from detectron2.layers.mask_ops import _do_paste_mask

from ..box_ops import pixel_window
from ..data.image_ops import to_uint8

__all__ = [
    "network_grey",
    "zscore_image",
    "minmax_uint8_image",
    "paste_instance_masks",
    "crf_patch",
    "paste_lesions",
    "place_in_frame",
]


def network_grey(image: torch.Tensor) -> torch.Tensor:
    """The grey slice inside a (C, H, W) network input: its centre channel.

    Three copies of one slice (2-D input) or slices z-1, z, z+1 (2.5-D,
    INPUT.NEIGHBOR_SLICES): either way the centre channel is slice z, the one the
    masks belong to, so the CRF's pairwise term reads the slice being segmented.
    """
    return image[image.shape[0] // 2].float()


def zscore_image(image: torch.Tensor) -> torch.Tensor:
    """Per-image normalisation to zero mean and unit variance (all channels at once).

    ``image``: (C, H, W), any dtype; returns float32 of the same shape. A constant
    image becomes all zeros instead of NaN.
    """
    image = image.float()
    std = image.std() if image.numel() > 1 else image.new_tensor(0.0)
    return (image - image.mean()) / std.clamp(min=1e-6)


def minmax_uint8_image(image: torch.Tensor) -> torch.Tensor:
    """Stretch an image's min..max linearly onto 0..255 (float), as the reference's 8-bit slices.

    Not rounded: the reference rounded to 8 bit before resizing to the network's
    size, we stretch after it, where the interpolated values are not integers
    anyway. ``image``: (C, H, W); returns float32 of the same shape. A constant
    image becomes all zeros.
    """
    image = image.float()
    lo, hi = image.min(), image.max()
    return (image - lo) * (255.0 / (hi - lo).clamp(min=1e-6))


def crf_patch(mask_prob: torch.Tensor, box: torch.Tensor, height: int, width: int):
    """One instance's probabilities on the pixels the reference's CRF refines.

    The reference resizes the mask into the expanded box with its edges rounded to
    pixels and runs the CRF on that patch alone. detectron2's ``_do_paste_mask`` window
    runs from floor(x0) - 1 to ceil(x1) + 1: its ring of near-zero probability outside
    the box would pull small lesions' CRF towards background. The map is pasted through
    the float box (as everywhere else, so a pixel's value is the same with and without
    the CRF) and cut to `box_ops.pixel_window`.

    Args:
        mask_prob: Tensor of shape (1, 1, M, M), probabilities.
        box: Tensor of shape (4,), XYXY at the network's scale.
        height, width: the network input's size.

    Returns:
        ``(patch, (rows, cols))``: Tensor of shape (h, w) and the two slices it covers.
    """
    rows, cols = pixel_window(box, height, width)
    pasted, (ys, xs) = _do_paste_mask(mask_prob, box[None], height, width, skip_empty=True)
    # the rounded edges lie inside the paste's floor-1 .. ceil+1 window, clipped alike
    top, left = rows.start - ys.start, cols.start - xs.start
    patch = pasted[0, top : top + rows.stop - rows.start, left : left + cols.stop - cols.start]
    return patch, (rows, cols)


def paste_instance_masks(
    mask_probs: torch.Tensor,
    paste_boxes: torch.Tensor,
    height: int,
    width: int,
    threshold: float = 0.5,
    image: Optional[torch.Tensor] = None,
    refine: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
    refine_boxes: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste per-instance probability maps into the image and threshold them.

    Args:
        mask_probs: Tensor of shape (R, 1, M, M), probabilities in [0, 1].
        paste_boxes: Tensor of shape (R, 4), XYXY at the output resolution; each
            M x M map is resized to its box.
        height, width: output size.
        threshold: probability at or above which a pixel is lesion.
        image: grey image at the network's input scale (Hn, Wn), needed with ``refine``.
        refine: ``refine(patch_u8, prob) -> prob``, the dense CRF, or None. As in
            the reference it runs at the network's input scale, on exactly the pixels of
            ``refine_boxes`` with their edges rounded (`crf_patch`) of ``image``
            (stretched to 8 bit); the refined patch is then resized into the output.
        refine_boxes: Tensor of shape (R, 4), the same boxes at the network's scale.

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
        if image is None or refine_boxes is None:
            raise ValueError("paste_instance_masks: `refine` needs the image and refine_boxes")
        grey_u8 = to_uint8(image.detach().cpu().numpy())
        scale = paste_boxes.new_tensor([width / image.shape[1], height / image.shape[0]] * 2)
    for i in range(num):
        source, box = mask_probs[i : i + 1].float(), paste_boxes[i : i + 1]
        if grey_u8 is not None:
            patch, (ys, xs) = crf_patch(source, refine_boxes[i], *grey_u8.shape)
            refined = refine(grey_u8[ys, xs], patch.detach().cpu().numpy())
            source = torch.from_numpy(np.asarray(refined, dtype=np.float32)).to(device)[None, None]
            # the refined patch covers whole network pixels [xs] x [ys]
            box = paste_boxes.new_tensor([[xs.start, ys.start, xs.stop, ys.stop]]) * scale
        patch, (ys, xs) = _do_paste_mask(source, box, height, width, skip_empty=True)
        prob = patch[0]
        masks[i, ys, xs] = prob >= threshold
        prob_map[ys, xs] = torch.maximum(prob_map[ys, xs], prob)
    return masks, prob_map


def paste_lesions(
    mask_probs: torch.Tensor,
    network_boxes: torch.Tensor,
    network_image: torch.Tensor,
    height: int,
    width: int,
    crop_box: Optional[Sequence[int]] = None,
    threshold: float = 0.5,
    refine: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the mask head's maps to masks in the full output frame (the model and DCRF tuning).

    Args:
        mask_probs: (R, 1, M, M) probabilities.
        network_boxes: (R, 4) XYXY boxes the maps belong to, at the network's input scale.
        network_image: (Hn, Wn) grey image the network saw (before normalisation).
        height, width: the output frame.
        crop_box: (x0, y0, x1, y1) of the output frame that the network's input
            showed (a head crop), or None for the whole frame.
        threshold, refine: as `paste_instance_masks`.

    Returns:
        masks (R, height, width) bool, prob (height, width) float and the boxes
        (R, 4) the maps were pasted through, in the output frame.
    """
    if crop_box is None:
        x0, y0, x1, y1 = 0, 0, width, height
    else:
        x0, y0, x1, y1 = (int(v) for v in crop_box)
    frame_h, frame_w = y1 - y0, x1 - x0
    net_h, net_w = network_image.shape[-2:]
    scale = network_boxes.new_tensor([frame_w / net_w, frame_h / net_h] * 2)
    boxes = network_boxes * scale
    boxes = torch.stack(
        [
            boxes[:, 0].clamp(0, frame_w),
            boxes[:, 1].clamp(0, frame_h),
            boxes[:, 2].clamp(0, frame_w),
            boxes[:, 3].clamp(0, frame_h),
        ],
        dim=1,
    )
    masks, prob = paste_instance_masks(
        mask_probs,
        boxes,
        frame_h,
        frame_w,
        threshold,
        image=network_image,
        refine=refine,
        refine_boxes=network_boxes,
    )
    if crop_box is not None:
        masks = place_in_frame(masks, (y0, x0), (height, width))
        prob = place_in_frame(prob, (y0, x0), (height, width))
        boxes = boxes + boxes.new_tensor([x0, y0, x0, y0])
    return masks, prob, boxes


def place_in_frame(
    array: torch.Tensor, offset: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Put ``array`` at ``offset`` of a zero array of ``size``: the inverse of a head crop.

    Outputs computed on a crop go back to their place in the full slice.

    Args:
        array: Tensor of shape (..., h, w), computed on the crop.
        offset: (y0, x0), the crop's top-left corner in the full slice.
        size: (H, W) of the full slice.

    Returns:
        Tensor of shape (..., H, W), ``array``'s dtype and device, zero outside the
        crop. Raises ValueError when the crop does not fit inside ``size``.
    """
    y0, x0 = offset
    h, w = array.shape[-2:]
    if y0 < 0 or x0 < 0 or y0 + h > size[0] or x0 + w > size[1]:
        raise ValueError(f"a {h}x{w} crop at {offset} does not fit in {tuple(size)}")
    out = array.new_zeros((*array.shape[:-2], *size))
    out[..., y0 : y0 + h, x0 : x0 + w] = array
    return out
