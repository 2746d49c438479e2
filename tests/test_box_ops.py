"""Expansion arithmetic on hand-written boxes."""

import pytest
import torch

from rsrcnn_d2.box_ops import expand_boxes, expanded_mask_resolution


def test_k_one_is_identity_even_for_fractional_boxes():
    boxes = torch.tensor([[1.25, 2.5, 7.75, 9.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(expand_boxes(boxes, 1.0, (20, 20)), boxes)


def test_growth_is_k_minus_one_half_per_side_in_float():
    # w = 10, h = 20 at k = 1.3: sides grow by 1.5 and 3, not rounded
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0]])
    out = expand_boxes(boxes, 1.3)
    torch.testing.assert_close(out, torch.tensor([[8.5, 7.0, 21.5, 33.0]]))
    # k = 2 doubles the size about the centre
    assert expand_boxes(boxes, 2.0).tolist() == [[5.0, 0.0, 25.0, 40.0]]
    # a 1-pixel box grows by 0.15 per side (a rounded growth would leave it as it is)
    torch.testing.assert_close(
        expand_boxes(torch.tensor([[4.0, 4.0, 5.0, 5.0]]), 1.3),
        torch.tensor([[3.85, 3.85, 5.15, 5.15]]),
    )


def test_clipped_at_image_borders():
    boxes = torch.tensor([[0.0, 1.0, 10.0, 11.0], [90.0, 40.0, 100.0, 50.0]])
    out = expand_boxes(boxes, 1.5, image_size=(50, 100))  # (height, width)
    assert out.tolist() == [[0.0, 0.0, 12.5, 13.5], [87.5, 37.5, 100.0, 50.0]]


@pytest.mark.parametrize("side", [1, 2, 3, 5])
@pytest.mark.parametrize("shape", ["square", "line"])
def test_mask_target_then_paste_gives_the_lesion_back(side, shape):
    """Training target (GT cropped on the float expanded box, N x N, rounded) pasted back
    through the same box at k = 1.3 reproduces the lesion exactly."""
    from detectron2.structures import BitMasks

    from rsrcnn_d2.modeling.postprocessing import paste_instance_masks

    lesion = torch.zeros(1, 40, 40, dtype=torch.bool)
    height = side if shape == "square" else 1
    lesion[0, 17 : 17 + height, 11 : 11 + side] = True
    box = BitMasks(lesion).get_bounding_boxes().tensor
    expanded = expand_boxes(box, 1.3, (40, 40))
    n = expanded_mask_resolution(1.3)
    target = BitMasks(lesion).crop_and_resize(expanded, n).float()  # (1, N, N), 0/1
    masks, _ = paste_instance_masks(target[:, None], expanded, 40, 40)
    assert torch.equal(masks[0], lesion[0])


def test_zero_width_box_does_not_grow_along_that_axis():
    out = expand_boxes(torch.tensor([[5.0, 5.0, 5.0, 15.0]]), 1.4)
    assert out.tolist() == [[5.0, 3.0, 5.0, 17.0]]


def test_empty_box_list():
    out = expand_boxes(torch.zeros((0, 4)), 1.3, (10, 10))
    assert out.shape == (0, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be >= 1"):
        expand_boxes(torch.zeros((1, 4)), 0.9)
    with pytest.raises(ValueError, match=r"shape \(R, 4\)"):
        expand_boxes(torch.zeros((4,)), 1.3)


@pytest.mark.parametrize(
    "k,n", [(1.0, 14), (1.1, 15), (1.2, 17), (1.3, 18), (1.25, 18), (1.5, 21), (2.0, 28), (3.0, 42)]
)
def test_roialign2_resolution(k, n):
    assert expanded_mask_resolution(k) == n


def test_nms_first_keeps_what_greedy_nms_keeps_and_not_a_suppressed_boxs_victims():
    from rsrcnn_d2.box_ops import nms_first

    # B overlaps A by IoU 90/110 = 0.82 (dropped); C overlaps A by 80/120 = 0.67 (kept),
    # although it overlaps the dropped B by 0.82: only kept boxes suppress
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    assert nms_first(boxes, scores, 0.7, 10).tolist() == [0, 2, 3]
    assert nms_first(boxes, scores, 0.7, 2).tolist() == [0, 2]
    assert nms_first(boxes, scores, 0.7, 0).tolist() == []
    assert nms_first(boxes[:0], scores[:0], 0.7, 5).tolist() == []


@pytest.mark.parametrize(
    "limit, block", [(1, 0), (100, 0), (300, 0), (1000, 0), (5000, 0), (300, 7), (5000, 64)]
)
def test_nms_first_is_torchvisions_nms_cut_at_the_limit(limit, block):
    """3,000 clustered boxes; with small blocks, boxes kept in one block suppress boxes of
    the next, as one NMS over all of them would."""
    from torchvision.ops import nms

    from rsrcnn_d2.box_ops import nms_first

    g = torch.Generator().manual_seed(limit)
    centres = torch.rand(40, 2, generator=g) * 200
    xy = centres[torch.randint(0, 40, (3000,), generator=g)] + torch.randn(3000, 2, generator=g) * 4
    wh = 4 + torch.rand(3000, 2, generator=g) * 20
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    scores = torch.rand(3000, generator=g)
    full = nms(boxes, scores, 0.5)
    assert 300 < len(full) < 3000  # some boxes suppressed, more kept than one block's limit
    assert torch.equal(nms_first(boxes, scores, 0.5, limit, block), full[:limit])


def test_nms_first_keeps_tied_scores_in_their_order_as_torchvisions_nms():
    """Many equal scores (a trained RPN scores padded regions alike): the boxes of one score
    keep their order, as in torchvision's NMS, at every limit and block size."""
    from torchvision.ops import nms

    from rsrcnn_d2.box_ops import nms_first

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3000, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 4 + torch.rand(3000, 2, generator=g) * 20], dim=1)
    scores = torch.randint(0, 20, (3000,), generator=g).float()
    full = nms(boxes, scores, 0.7)
    for limit, block in [(100, 0), (1000, 0), (2000, 0), (700, 64)]:
        assert torch.equal(nms_first(boxes, scores, 0.7, limit, block), full[:limit])
