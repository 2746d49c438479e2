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

The reference loads its starting checkpoint's RPN (the Keras ``rpn_model`` holding
``rpn_class_raw``) by name with nothing excluded, so its H-RPN classifier is fine-tuned from
the pre-trained one (a two-way classifier in the Keras Mask R-CNN it builds on). A
checkpoint of row B's layout (`rsrcnn-pretrain`'s) holds one logit per anchor instead;
`HRPNHead.adapt_checkpoint` turns it into the two-way classifier that gives exactly the same
objectness, so the H-RPN does not start from scratch. (COCO's detectron2 checkpoint has a
256-channel RPN conv where ours has 512: nothing of its RPN fits either way.)
"""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY, StandardRPNHead
from torch import nn

from .rpn import SingleNMSRPN

__all__ = ["HRPNHead", "HRPN", "two_way_objectness"]


def two_way_objectness(
    weight: torch.Tensor, bias: torch.Tensor, objectness_relu: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-way classifier whose logit difference equals a one-logit classifier's.

    With z = w·x + b the one-logit objectness, background = -s·z and lesion = s·z give
    relu(z) - relu(-z) = z with the ReLU (s = 1) and z/2 + z/2 = z without it (s = 1/2);
    exact in arithmetic, and to float rounding where the conv sums 2A channels in another
    order than A.

    Args:
        weight: (A, C, 1, 1), the one-logit 1x1 conv of A anchors.
        bias: (A,).
        objectness_relu: whether the H-RPN applies its ReLU to both logits.

    Returns:
        weight (2A, C, 1, 1) and bias (2A,): background channels first, as `HRPNHead`'s.
    """
    scale = 1.0 if objectness_relu else 0.5
    return torch.cat([-scale * weight, scale * weight]), torch.cat([-scale * bias, scale * bias])


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

    def adapt_checkpoint(self, state: dict, prefix: str) -> list[str]:
        """Rewrite, in ``state`` (a checkpoint's model dict), a one-logit RPN classifier under
        ``prefix`` (detectron2's StandardRPNHead: weight (A, C, 1, 1)) as `two_way_objectness`.

        Returns one line saying what was rewritten; [] when the checkpoint's classifier is
        already two-way, absent, or of another size.
        """
        w_key, b_key = prefix + "objectness_logits.weight", prefix + "objectness_logits.bias"
        if w_key not in state or b_key not in state:
            return []
        weight, bias = torch.as_tensor(state[w_key]), torch.as_tensor(state[b_key])
        ours = self.objectness_logits.weight
        if weight.shape != (ours.shape[0] // 2, *ours.shape[1:]) or bias.shape != weight.shape[:1]:
            return []
        state[w_key], state[b_key] = two_way_objectness(weight, bias, self.objectness_relu)
        return [f"{prefix}objectness_logits: one logit per anchor -> H-RPN's two, same objectness"]

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
