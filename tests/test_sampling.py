"""The reference's ROI sampler: hand-computed counts, and the ROI heads that use it."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from rsrcnn_d2.modeling.roi_heads import ReferenceSamplingROIHeads
from rsrcnn_d2.modeling.sampling import capped_negative_count, subsample_capped_negatives

from conftest import synthetic_input, tiny_cfg

BG = 1  # one class: label 0 is a lesion, 1 background


@pytest.mark.parametrize("p,expected", [(0, 0), (1, 2), (5, 10), (16, 32), (66, 134)])
def test_negative_count_is_int_p_over_f_minus_p(p, expected):
    # int(5 / 0.33) - 5 = int(15.15) - 5 = 10; int(66 / 0.33) - 66 = 200 - 66 = 134
    assert capped_negative_count(p, 0.33) == expected


def test_few_positives_get_about_twice_as_many_negatives():
    labels = torch.tensor([0] * 5 + [BG] * 95 + [-1] * 10)
    pos, neg = subsample_capped_negatives(labels, 50, 0.33, BG)
    assert len(pos) == 5 and len(neg) == 10  # detectron2's sampler: 45 negatives
    assert (labels[pos] == 0).all() and (labels[neg] == BG).all()
    assert len(set(pos.tolist()) | set(neg.tolist())) == 15


def test_positives_capped_at_the_fraction_of_the_batch():
    labels = torch.tensor([0] * 40 + [BG] * 200)
    pos, neg = subsample_capped_negatives(labels, 50, 0.33, BG)
    assert len(pos) == 16 and len(neg) == 32  # int(50 * 0.33) = 16; int(16 / 0.33) - 16 = 32


def test_no_positive_no_roi_and_few_negatives_all_taken():
    labels = torch.tensor([BG] * 30)
    pos, neg = subsample_capped_negatives(labels, 50, 0.33, BG)
    assert len(pos) == 0 and len(neg) == 0
    labels = torch.tensor([0] * 4 + [BG] * 3)
    pos, neg = subsample_capped_negatives(labels, 50, 0.33, BG)
    assert len(pos) == 4 and len(neg) == 3


def test_bad_fraction():
    with pytest.raises(ValueError, match="positive fraction"):
        capped_negative_count(3, 0.0)


def _count_sampled(row: str, *opts):
    model = build_model(tiny_cfg(row, *opts))
    model.train()
    x = synthetic_input(7, num_lesions=(3, 3))[0]
    gt = x["instances"].gt_boxes.tensor
    # proposals: the 3 GT boxes shifted by 1 px (foreground), and 60 far-away boxes (background)
    fg = gt + torch.tensor([1.0, 0.0, 1.0, 0.0])
    bg = torch.tensor([[float(i), 0.0, float(i) + 4.0, 4.0] for i in range(60)])
    proposals = Instances(
        (128, 128), proposal_boxes=Boxes(torch.cat([fg, bg])), objectness_logits=torch.ones(63)
    )
    with EventStorage():
        sampled = model.roi_heads.label_and_sample_proposals([proposals], [x["instances"]])[0]
    return sampled, gt


@pytest.mark.parametrize("row", ["B", "C"])
def test_roi_heads_sample_like_the_reference(row):
    sampled, gt = _count_sampled(row)
    fg = sampled.gt_classes == 0
    assert int(fg.sum()) == 3 and int((~fg).sum()) == capped_negative_count(3, 0.33) == 6
    # no ground-truth box was appended to the proposals
    boxes = sampled.proposal_boxes.tensor
    assert not (boxes[:, None, :] == gt[None]).all(-1).any()


def test_cap_switch_gives_detectron2s_sampler():
    sampled, _ = _count_sampled("C", "MODEL.ROI_HEADS.CAP_NEGATIVES", "False")
    assert len(sampled) == 50 - 0  # filled up to the batch with negatives
    assert isinstance(build_model(tiny_cfg("B")).roi_heads, ReferenceSamplingROIHeads)
