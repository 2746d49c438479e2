"""H-RPN: detectron2's RPN with the reference code's ReLU'd objectness classifier.

The reference H-RPN (Keras) predicts two objectness logits per anchor
(background, lesion) with a 1x1 conv whose activation is ReLU, then a softmax.
detectron2's RPN works with one logit per anchor fed to a sigmoid. A softmax over
two logits equals the sigmoid of their difference, so the head below predicts the
two logits, applies the ReLU to both, and hands ``relu(lesion) - relu(background)``
to detectron2's unchanged losses and proposal selection. With the ReLU switched
off it is an ordinary two-logit softmax RPN. Proposals go through the
reference's single NMS over all levels (`SingleNMSRPN`); how many are kept is
detectron2's ``MODEL.RPN.POST_NMS_TOPK_TRAIN/TEST`` (the reference: 100 and 100).
"""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY, StandardRPNHead
from torch import nn

from .rpn import SingleNMSRPN

__all__ = ["HRPNHead", "HRPN"]


@RPN_HEAD_REGISTRY.register()
class HRPNHead(StandardRPNHead):
    """StandardRPNHead whose objectness branch is a ReLU'd 2-way softmax classifier.

    forward() returns, per feature level, objectness logits of shape (N, A, H, W)
    (equal to the log-odds of the 2-way softmax) and anchor deltas of shape
    (N, A*box_dim, H, W), as StandardRPNHead does.
    """

    @configurable
    def __init__(self, *, objectness_relu: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.objectness_relu = objectness_relu
        num_anchors = self.objectness_logits.out_channels
        two_way = nn.Conv2d(self.objectness_logits.in_channels, 2 * num_anchors, kernel_size=1)
        nn.init.normal_(two_way.weight, std=0.01)
        nn.init.constant_(two_way.bias, 0)
        # channels [0, A) are background logits, [A, 2A) lesion logits
        self.objectness_logits = two_way

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["objectness_relu"] = cfg.MODEL.HRPN.OBJECTNESS_RELU
        return ret

    def forward(self, features: list[torch.Tensor]):
        pred_objectness_logits = []
        pred_anchor_deltas = []
        for x in features:
            t = self.conv(x)
            background, lesion = self.objectness_logits(t).chunk(2, dim=1)
            if self.objectness_relu:
                background, lesion = F.relu(background), F.relu(lesion)
            pred_objectness_logits.append(lesion - background)
            pred_anchor_deltas.append(self.anchor_deltas(t))
        return pred_objectness_logits, pred_anchor_deltas


@PROPOSAL_GENERATOR_REGISTRY.register()
class HRPN(SingleNMSRPN):
    """The reference's RPN (one NMS over all levels) with the H-RPN head.

    Selected by ``MODEL.PROPOSAL_GENERATOR.NAME: HRPN``; everything but the
    objectness classifier is `SingleNMSRPN`'s.
    """

    @classmethod
    def from_config(cls, cfg, input_shape):
        """As the parent's, but the head is always `HRPNHead`, whatever ``MODEL.RPN.HEAD_NAME``."""
        ret = super().from_config(cfg, input_shape)
        ret["head"] = HRPNHead(cfg, [input_shape[f] for f in cfg.MODEL.RPN.IN_FEATURES])
        return ret
