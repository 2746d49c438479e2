"""MODEL.RSRCNN.NORMALIZATION: exact network inputs for each choice.

(The former MODEL.RSRCNN.PER_IMAGE_ZSCORE False is NORMALIZATION "none" now.)
"""

import math

import pytest
import torch
from detectron2.modeling import build_model

from conftest import tiny_cfg

# the same 2 x 2 image in each of the three channels
X = torch.tensor([[0.0, 2.0], [4.0, 6.0]])


def _network_input(normalization, *opts):
    model = build_model(tiny_cfg("B", "MODEL.RSRCNN.NORMALIZATION", normalization, *opts))
    images = model.preprocess_image([{"image": X.expand(3, 2, 2).clone()}])
    assert images.image_sizes == [(2, 2)] and images.tensor.shape[-2:] == (32, 32)  # FPN padding
    return images.tensor[0, :, :2, :2]


def test_none_is_detectron2s_mean_and_std_on_raw_intensities():
    out = _network_input(
        "none", "MODEL.PIXEL_MEAN", "[1.0, 2.0, 3.0]", "MODEL.PIXEL_STD", "[2.0, 2.0, 4.0]"
    )
    expected = torch.stack([(X - 1) / 2, (X - 2) / 2, (X - 3) / 4])
    assert torch.equal(out, expected)
    assert out[0].tolist() == [[-0.5, 0.5], [1.5, 2.5]]


def test_zscore_per_image_ignores_pixel_mean_and_std():
    out = _network_input(
        "zscore", "MODEL.PIXEL_MEAN", "[1.0, 2.0, 3.0]", "MODEL.PIXEL_STD", "[2.0, 2.0, 4.0]"
    )
    # 12 values (0, 2, 4, 6 three times): mean 3, sample variance 60 / 11
    std = math.sqrt(60 / 11)
    torch.testing.assert_close(out, ((X - 3) / std).expand(3, 2, 2))


def test_minmax_uint8_stretches_then_subtracts_the_mean():
    out = _network_input(
        "minmax_uint8",
        "MODEL.PIXEL_MEAN",
        "[56.49, 56.49, 56.49]",
        "MODEL.PIXEL_STD",
        "[1.0, 1.0, 1.0]",
    )
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 85.0], [170.0, 255.0]]) - 56.49)


def test_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="NORMALIZATION must be one of"):
        build_model(tiny_cfg("B", "MODEL.RSRCNN.NORMALIZATION", "per_channel"))
