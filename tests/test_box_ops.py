"""Expansion arithmetic on hand-written boxes."""
import pytest
import torch

from rsrcnn_d2.box_ops import expand_boxes, expanded_mask_resolution


def test_k_one_is_identity_even_for_fractional_boxes():
    boxes = torch.tensor([[1.25, 2.5, 7.75, 9.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(expand_boxes(boxes, 1.0, (20, 20)), boxes)


def test_growth_is_k_minus_one_half_per_side():
    # w = 10, h = 20 at k = 1.3: sides grow by 1.5 -> 2 (half up) and 3
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0]])
    out = expand_boxes(boxes, 1.3)
    assert out.tolist() == [[8.0, 7.0, 22.0, 33.0]]
    # k = 2 doubles the size about the centre
    assert expand_boxes(boxes, 2.0).tolist() == [[5.0, 0.0, 25.0, 40.0]]


def test_rounding_is_half_up_not_to_even():
    # (k-1)*w/2 = 0.5 and 2.5: torch.round would give 0 and 2
    boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0], [10.0, 10.0, 60.0, 60.0]])
    out = expand_boxes(boxes, 1.1)
    assert out.tolist() == [[9.0, 9.0, 21.0, 21.0], [7.0, 7.0, 63.0, 63.0]]


def test_clipped_at_image_borders():
    boxes = torch.tensor([[0.0, 1.0, 10.0, 11.0], [90.0, 40.0, 100.0, 50.0]])
    out = expand_boxes(boxes, 1.5, image_size=(50, 100))  # (height, width)
    assert out.tolist() == [[0.0, 0.0, 13.0, 14.0], [87.0, 37.0, 100.0, 50.0]]


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


@pytest.mark.parametrize("k,n", [(1.0, 14), (1.1, 15), (1.2, 17), (1.3, 18), (1.25, 18),
                                 (1.5, 21), (2.0, 28), (3.0, 42)])
def test_roialign2_resolution(k, n):
    assert expanded_mask_resolution(k) == n
