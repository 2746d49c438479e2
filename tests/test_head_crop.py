"""Head crop: the box on hand-made slices, and outputs back at the full size."""

import numpy as np
import pytest
import torch

from rsrcnn_d2.data.head_crop import crop_to_head, head_box
from rsrcnn_d2.modeling.postprocessing import paste_lesions, place_in_frame


def _head(shape, top, left, h, w, value=100.0, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(2.0, 1.0, shape).astype(np.float32)  # background noise
    image[top : top + h, left : left + w] += value
    return image


@pytest.mark.parametrize(
    "shape,top,left,h,w", [((101, 77), 13, 5, 51, 37), ((64, 90), 30, 47, 33, 41)]
)
def test_head_box_finds_odd_sized_off_centre_heads(shape, top, left, h, w):
    image = _head(shape, top, left, h, w)
    assert head_box(image, margin=0) == (left, top, left + w, top + h)
    x0, y0, x1, y1 = head_box(image, margin=3)
    assert (x0, y0) == (max(0, left - 3), max(0, top - 3))
    assert (x1, y1) == (min(shape[1], left + w + 3), min(shape[0], top + h + 3))


def test_a_small_bright_speck_is_not_the_head():
    image = _head((80, 80), 20, 10, 40, 30)
    image[75:77, 75:77] = 300.0  # brighter than the head, but tiny
    assert head_box(image, margin=0) == (10, 20, 40, 60)


def test_constant_slice_is_kept_whole_and_bad_arguments():
    assert head_box(np.zeros((7, 9)), margin=2) == (0, 0, 9, 7)
    with pytest.raises(ValueError, match="2-D"):
        head_box(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="margin"):
        head_box(np.zeros((4, 4)), margin=-1)


def test_crop_then_place_is_the_identity_on_positions():
    image = _head((101, 77), 13, 5, 51, 37, seed=1)
    lesion = np.zeros(image.shape, bool)
    lesion[[20, 40, 60], [9, 20, 39]] = True  # inside the head, off-centre
    crop, (x0, y0, x1, y1) = crop_to_head(image, margin=2)
    assert crop.shape == (y1 - y0, x1 - x0)
    back = place_in_frame(torch.from_numpy(lesion[y0:y1, x0:x1]), (y0, x0), image.shape)
    assert torch.equal(back, torch.from_numpy(lesion))
    with pytest.raises(ValueError, match="does not fit"):
        place_in_frame(torch.ones(5, 5), (98, 0), (101, 77))


def test_paste_lesions_through_a_crop_lands_at_the_full_size_position():
    # a 4 x 4 network input showing the crop (x 10..18, y 20..28) of a 50 x 40 frame;
    # a box covering network pixels 1..3 maps to frame x 12..16, y 22..26
    probs = torch.ones(1, 1, 6, 6)
    masks, prob, boxes = paste_lesions(
        probs,
        torch.tensor([[1.0, 1.0, 3.0, 3.0]]),
        torch.zeros(4, 4),
        50,
        40,
        crop_box=(10, 20, 18, 28),
    )
    expected = torch.zeros(50, 40, dtype=torch.bool)
    expected[22:26, 12:16] = True
    assert masks.shape == (1, 50, 40) and torch.equal(masks[0], expected)
    assert boxes.tolist() == [[12.0, 22.0, 16.0, 26.0]]
    assert prob.shape == (50, 40) and float(prob.sum()) == 16.0


def test_model_outputs_on_a_head_crop_come_back_at_full_size():
    """The same network input with and without a crop_box: identical maps, placed at the crop."""
    from detectron2.modeling import build_model

    from conftest import synthetic_input, tiny_cfg

    model = build_model(tiny_cfg("E", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")).eval()
    image = synthetic_input(2)[0]["image"][:, :96, :80]  # the network input (3, 96, 80)
    box = (13, 7, 93, 103)  # where it sits in a 120 x 111 slice
    with torch.no_grad():
        plain = model([{"image": image}])[0]
        placed = model([{"image": image, "height": 120, "width": 111, "crop_box": box}])[0]
    assert plain["lesion_mask"].any(), "the untrained model should still predict something here"
    expected = place_in_frame(plain["lesion_mask"], (7, 13), (120, 111))
    assert torch.equal(placed["lesion_mask"], expected)
    torch.testing.assert_close(
        placed["lesion_prob"], place_in_frame(plain["lesion_prob"], (7, 13), (120, 111))
    )
    shift = torch.tensor([13.0, 7.0, 13.0, 7.0])
    torch.testing.assert_close(
        placed["instances"].pred_boxes.tensor, plain["instances"].pred_boxes.tensor + shift
    )
    assert placed["instances"].image_size == (120, 111)
