"""Box arithmetic of RS R-CNN: expansion by the factor k, the RoIAlign2 size, and an NMS
that stops once it has kept enough boxes.

Pure functions on tensors, no config. The paper's Eq. 1 prints the growth as
``k * (w / 2)``, which would double a box at k = 1 and contradicts its own text
("k = 1 indicates that the ROI will not be expanded"). The reference code grows
each side by ``(k - 1) * w / 2`` in float coordinates inside its ROI-align layer;
so do we, which makes the new box k*w x k*h. Pooling, mask targets and pasting
all use this same float box.
"""

import math

import torch

__all__ = ["expand_boxes", "expanded_mask_resolution", "pixel_window", "nms_first"]


def expand_boxes(boxes: torch.Tensor, k: float, image_size=None) -> torch.Tensor:
    """Grow boxes about their centres by the factor ``k``.

    Args:
        boxes: Tensor of shape (R, 4), XYXY in pixels (R may be 0).
        k: expansion factor, k >= 1; k = 1 returns the boxes unchanged.
        image_size: (height, width) to clip to, or None for no clipping.

    Returns:
        Tensor of shape (R, 4), float. Each side moves out by ``(k-1)*w/2``
        horizontally and ``(k-1)*h/2`` vertically, not rounded (as the
        reference's ROI-align layer), then the box is clipped to
        ``[0, width] x [0, height]``. k = 1 returns the boxes exactly. Boxes of
        zero width or height do not grow along that axis.
    """
    if k < 1:
        raise ValueError(f"expansion factor k must be >= 1, got {k}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (R, 4), got {tuple(boxes.shape)}")
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=0)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    grow_x = (k - 1.0) * widths / 2.0
    grow_y = (k - 1.0) * heights / 2.0
    grow = torch.stack([-grow_x, -grow_y, grow_x, grow_y], dim=1)
    out = boxes + grow
    if image_size is not None:
        height, width = image_size
        out = torch.stack(
            [
                out[:, 0].clamp(0, width),
                out[:, 1].clamp(0, height),
                out[:, 2].clamp(0, width),
                out[:, 3].clamp(0, height),
            ],
            dim=1,
        )
    return out


def expanded_mask_resolution(k: float, base: int = 14) -> int:
    """Side N of RoIAlign2's output: R(base * k), halves rounded up (k = 1.3 -> 18)."""
    if k < 1:
        raise ValueError(f"expansion factor k must be >= 1, got {k}")
    # the small epsilon keeps e.g. 14 * 1.25 = 17.499999... from rounding down
    return int(math.floor(base * k + 0.5 + 1e-9))


def pixel_window(box: torch.Tensor, height: int, width: int):
    """The pixels of a float box with its edges rounded, as the reference cuts the CRF's patch.

    Args:
        box: Tensor of shape (4,), XYXY in pixels (the expanded box at the network's scale).
        height, width: the image the window must stay in.

    Returns:
        ``(rows, cols)``, two ``slice`` objects: each edge rounded to the nearest pixel
        boundary (halves to even, as numpy's ``round`` in the reference), clipped to the
        image, and at least one pixel wide and high so that a sub-pixel box still has a patch.
        ``(2.3, 3.6, 11.4, 15.2)`` covers rows 4..14 and columns 2..10.
    """
    x0, y0, x1, y1 = (int(v) for v in torch.round(box.detach().double().cpu()).tolist())
    x0, x1 = _one_pixel_at_least(x0, x1, width)
    y0, y1 = _one_pixel_at_least(y0, y1, height)
    return slice(y0, y1), slice(x0, x1)


def _one_pixel_at_least(lo: int, hi: int, size: int):
    lo = min(max(lo, 0), size - 1)
    hi = min(max(hi, lo + 1), size)
    return lo, hi


def nms_first(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, limit: int, block: int = 0
) -> torch.Tensor:
    """The first ``limit`` boxes greedy NMS keeps: ``torchvision.ops.nms(...)[:limit]``, exactly,
    without running the NMS over boxes it would never reach.

    The RPN keeps 100 (H-RPN) or 1,000-2,000 proposals of 6,000 candidates; a full NMS visits
    every candidate and costs most of the proposal step on a CPU. Candidates are taken in score
    order in blocks: torchvision's NMS runs on the boxes kept so far followed by the next block,
    ranked by that position, so every pair is compared by the same kernel and arithmetic as in
    one NMS over all candidates (an IoU computed another way can fall on the other side of the
    threshold by a rounding); it ends when ``limit`` boxes are kept.

    Args:
        boxes: Tensor of shape (R, 4), XYXY.
        scores: Tensor of shape (R,).
        iou_threshold: a box is dropped when its IoU with a kept box is above this.
        limit: how many kept boxes are wanted (>= 0).
        block: candidates per block (0: twice the limit, at least 512).

    Returns:
        Int64 tensor of shape (min(limit, kept),): indices into ``boxes``, best score first.
        Exact with ties too on a CPU; torchvision's CUDA kernel orders tied scores its own way.
    """
    from torchvision.ops import nms

    if boxes.dtype in (torch.float16, torch.bfloat16):  # ranks past 2048 would tie
        boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    block = block or max(2 * limit, 512)
    kept = order[:0]
    for start in range(0, len(order), block):
        if len(kept) >= limit:
            break
        together = torch.cat([kept, order[start : start + block]])  # (K + C,)
        rank = -torch.arange(len(together), device=boxes.device).to(boxes.dtype)  # exact < 2^24
        kept = together[nms(boxes[together], rank, iou_threshold)]  # the kept ones stay kept
    return kept[:limit]
