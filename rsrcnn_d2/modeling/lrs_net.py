"""LRS-Net: the lightweight mask head of RS R-CNN.

Two 3x3 conv + ReLU layers and a 1x1 predictor on the N x N RoIAlign2 features,
with no deconvolution: the mask is predicted at N x N and pasted back through the
expanded box. At 256 channels it has about 1.18 M parameters, against 2.62 M for
detectron2's default MaskRCNNConvUpsampleHead.
"""

import fvcore.nn.weight_init as weight_init
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY, BaseMaskRCNNHead
from torch import nn

__all__ = ["LRSNetHead"]


@ROI_MASK_HEAD_REGISTRY.register()
class LRSNetHead(BaseMaskRCNNHead, nn.Sequential):
    """Mask head: (R, C, N, N) pooled features -> (R, num_classes, N, N) mask logits.

    Loss (per-pixel BCE against targets resized to N x N) and the sigmoid at
    inference come from BaseMaskRCNNHead, as for detectron2's own heads.

    Args:
        input_shape: the pooled features' shape (C channels).
        num_classes: mask channels out (1 with class-agnostic masks).
        conv_dims: output channels of each 3x3 conv (``LRS_NUM_CONV`` times ``CONV_DIM``).
        conv_norm: the convs' norm ("": none, and the convs get a bias).
        kwargs: BaseMaskRCNNHead's (loss weight, vis period).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dims: list[int],
        conv_norm: str = "",
        **kwargs,
    ):
        super().__init__(**kwargs)
        channels = input_shape.channels
        for i, dim in enumerate(conv_dims):
            conv = Conv2d(
                channels,
                dim,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, dim),
                activation=nn.ReLU(),
            )
            weight_init.c2_msra_fill(conv)
            self.add_module(f"mask_fcn{i + 1}", conv)
            channels = dim
        self.predictor = Conv2d(channels, num_classes, kernel_size=1)
        # small initial logits, as detectron2's mask predictor
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.ROI_MASK_HEAD
        ret.update(
            input_shape=input_shape,
            conv_dims=[head.CONV_DIM] * head.LRS_NUM_CONV,
            conv_norm=head.NORM,
            num_classes=1 if head.CLS_AGNOSTIC_MASK else cfg.MODEL.ROI_HEADS.NUM_CLASSES,
        )
        return ret

    def layers(self, x):
        for layer in self:
            x = layer(x)
        return x
