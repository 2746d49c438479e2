"""The reference's ROI sampler: few positives, and about twice as many negatives.

detectron2's ``subsample_labels`` fills a batch of ``batch_size`` ROIs with
negatives once the positives run out (50 ROIs with 5 positives -> 45
negatives). The reference (Matterport's detection-target layer) takes at most
``int(batch_size * f)`` positives and then only ``int(P / f) - P`` negatives
(f = 0.33 -> about 2 negatives per positive); the rest of the batch stays empty.
The paper's 50-ROI cap exists to balance positives and negatives, which only
this rule does.
"""

import torch

__all__ = ["capped_negative_count", "subsample_capped_negatives"]


def capped_negative_count(num_positive: int, positive_fraction: float) -> int:
    """``int(P / f) - P``: the reference's number of negatives for ``P`` positives."""
    if not 0 < positive_fraction <= 1:
        raise ValueError(f"positive fraction must be in (0, 1], got {positive_fraction}")
    return max(0, int(num_positive / positive_fraction) - num_positive)


def subsample_capped_negatives(
    labels: torch.Tensor, batch_size: int, positive_fraction: float, bg_label: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of sampled positives and negatives, at random, with the reference's cap.

    Args:
        labels: Tensor of shape (N,): -1 ignore, ``bg_label`` background,
            anything else foreground.
        batch_size: upper bound on the ROIs per image (the paper: 50).
        positive_fraction: f, the largest share of positives (the reference: 0.33).
        bg_label: the background label.

    Returns:
        Two 1-D index tensors (positives, negatives) into ``labels``, with
        ``len(pos) <= int(batch_size * f)`` and
        ``len(neg) <= capped_negative_count(len(pos), f)``. An image with no
        positive contributes no ROI at all, as in the reference.
    """
    positive = torch.nonzero((labels != -1) & (labels != bg_label), as_tuple=True)[0]
    negative = torch.nonzero(labels == bg_label, as_tuple=True)[0]
    num_pos = min(positive.numel(), int(batch_size * positive_fraction))
    num_neg = min(negative.numel(), capped_negative_count(num_pos, positive_fraction))
    pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
    neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
    return pos, neg
