"""HRPNHead and ExpandedROIHeads on fixed weights and hand-computable inputs: exact outputs.

In the manner of detectron2's tests/modeling: the layers get constant weights, so
every expected number below can be worked out on paper (the derivations are in
the comments) and any change of the forward logic changes them.
"""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import BitMasks, Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage
from torch import nn

from rsrcnn_d2.modeling import HRPNHead
from rsrcnn_d2.modeling.hrpn import two_way_objectness

from conftest import tiny_cfg


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ----------------------------------------------------------------------------- H-RPN head


def _fixed_hrpn_head(objectness_relu: bool) -> HRPNHead:
    """One input channel, two anchors; every weight set by hand.

    conv (3x3, all ones, bias -4, then ReLU) on the 1x3 map x = [1, 2, 4] with zero
    padding sums each pixel's neighbours: [3, 7, 6] - 4 = [-1, 3, 2] -> t = [0, 3, 2].
    """
    head = HRPNHead(in_channels=1, num_anchors=2, conv_dims=(-1,), objectness_relu=objectness_relu)
    with torch.no_grad():
        nn.init.constant_(head.conv.weight, 1.0)
        nn.init.constant_(head.conv.bias, -4.0)
        # channels: background of anchors 0, 1, then lesion of anchors 0, 1
        head.objectness_logits.weight.copy_(torch.tensor([1.0, -1.0, 2.0, 0.5]).view(4, 1, 1, 1))
        head.objectness_logits.bias.copy_(torch.tensor([-1.0, 2.0, -3.0, 0.0]))
        head.anchor_deltas.weight.copy_(torch.arange(8.0).view(8, 1, 1, 1) / 4)
        nn.init.constant_(head.anchor_deltas.bias, -1.0)
    return head


X = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 1, 3)
T = torch.tensor([0.0, 3.0, 2.0])  # the conv's output, worked out in _fixed_hrpn_head


def test_hrpn_head_objectness_with_relu_gate_exact():
    # t = [0, 3, 2]:
    #   background 0 = t - 1    = [-1, 2, 1]   -> ReLU [0, 2, 1]
    #   background 1 = -t + 2   = [2, -1, 0]   -> ReLU [2, 0, 0]
    #   lesion 0     = 2t - 3   = [-3, 3, 1]   -> ReLU [0, 3, 1]
    #   lesion 1     = t / 2    = [0, 1.5, 1]  -> ReLU [0, 1.5, 1]
    # logit = ReLU(lesion) - ReLU(background)
    logits, deltas = _fixed_hrpn_head(True)([X])
    assert len(logits) == len(deltas) == 1
    assert logits[0].tolist() == [[[[0.0, 1.0, 0.0]], [[-2.0, 1.5, 1.0]]]]


def test_hrpn_head_objectness_without_relu_is_the_plain_difference():
    # lesion - background, no gate: [-3, 3, 1] - [-1, 2, 1] and [0, 1.5, 1] - [2, -1, 0]
    logits, _ = _fixed_hrpn_head(False)([X])
    assert logits[0].tolist() == [[[[-2.0, 1.0, 0.0]], [[-2.0, 2.5, 1.0]]]]


def test_hrpn_head_anchor_deltas_exact():
    # channel k (anchor k // 4, coordinate k % 4): k / 4 * t - 1
    _, deltas = _fixed_hrpn_head(True)([X])
    assert deltas[0].shape == (1, 8, 1, 3)
    assert deltas[0][0, :, 0].tolist() == [[k / 4 * t - 1 for t in T.tolist()] for k in range(8)]
    assert deltas[0][0, 5, 0].tolist() == [-1.0, 2.75, 1.5]  # one row written out


def test_hrpn_head_probability_is_the_two_way_softmax():
    """sigmoid(logit) is the lesion probability of the softmax over the ReLU'd pair."""
    logits, _ = _fixed_hrpn_head(True)([X])
    # position 1 of anchor 1: ReLU'd pair (background 0, lesion 1.5)
    expected = math.exp(1.5) / (math.exp(0.0) + math.exp(1.5))
    assert torch.sigmoid(logits[0][0, 1, 0, 1]).item() == pytest.approx(expected, rel=1e-6)


def test_hrpn_head_every_level_same_weights():
    head = _fixed_hrpn_head(True)
    logits, deltas = head([X, X.flip(-1)])
    assert logits[1].tolist() == [[[[0.0, 1.0, 0.0]], [[1.0, 1.5, -2.0]]]]  # the mirror image
    assert torch.equal(deltas[1], deltas[0].flip(-1))


def test_hrpn_head_from_config_shapes():
    """From the CPU twin of row C: 3 anchors, so 6 two-way logits and 12 deltas per position."""
    cfg = tiny_cfg("C")
    head = HRPNHead(cfg, [ShapeSpec(channels=64)] * 5)
    assert head.objectness_relu is True
    assert (head.objectness_logits.out_channels, head.anchor_deltas.out_channels) == (6, 12)
    assert head.objectness_logits.bias.tolist() == [0.0] * 6
    x = torch.zeros(2, 64, 4, 5)
    logits, deltas = head([x, x[..., :2, :3]])
    assert [tuple(t.shape) for t in logits] == [(2, 3, 4, 5), (2, 3, 2, 3)]
    assert [tuple(t.shape) for t in deltas] == [(2, 12, 4, 5), (2, 12, 2, 3)]
    off = HRPNHead(
        tiny_cfg("C", "MODEL.HRPN.OBJECTNESS_RELU", "False"), [ShapeSpec(channels=64)] * 5
    )
    assert off.objectness_relu is False


def test_two_way_objectness_from_hand_values():
    # one-logit classifier of 2 anchors: w = [3, -2], b = [1, 0.5]
    w, b = torch.tensor([3.0, -2.0]).view(2, 1, 1, 1), torch.tensor([1.0, 0.5])
    relu_w, relu_b = two_way_objectness(w, b, objectness_relu=True)
    assert relu_w.flatten().tolist() == [-3.0, 2.0, 3.0, -2.0]  # background, then lesion
    assert relu_b.tolist() == [-1.0, -0.5, 1.0, 0.5]
    half_w, half_b = two_way_objectness(w, b, objectness_relu=False)
    assert half_w.flatten().tolist() == [-1.5, 1.0, 1.5, -1.0]
    assert half_b.tolist() == [-0.5, -0.25, 0.5, 0.25]


@pytest.mark.parametrize("objectness_relu", [True, False])
def test_a_one_logit_rpn_checkpoint_gives_the_hrpn_head_the_same_objectness(objectness_relu):
    from detectron2.modeling.proposal_generator.rpn import StandardRPNHead

    torch.manual_seed(0)
    standard = StandardRPNHead(in_channels=4, num_anchors=3, conv_dims=(8,))
    for p in standard.parameters():
        nn.init.normal_(p, std=1.0)  # logits of both signs and of size, so the ReLU matters
    state = {f"rpn_head.{k}": v.clone() for k, v in standard.state_dict().items()}
    hrpn = HRPNHead(in_channels=4, num_anchors=3, conv_dims=(8,), objectness_relu=objectness_relu)
    said = hrpn.adapt_checkpoint(state, "rpn_head.")
    assert said == [
        "rpn_head.objectness_logits: one logit per anchor -> H-RPN's two, same objectness"
    ]
    hrpn.load_state_dict({k.removeprefix("rpn_head."): v for k, v in state.items()})
    x = [torch.randn(2, 4, 5, 6), torch.randn(2, 4, 3, 3)]
    with torch.no_grad():
        (want, want_small), deltas = standard(x)
        (got, got_small), same_deltas = hrpn(x)
    assert (want < 0).any() and (want > 0).any()
    # exact in arithmetic; a conv of 2A output channels may sum in another order than one of A
    torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(got_small, want_small, rtol=2e-6, atol=2e-6)
    assert all(torch.equal(a, b) for a, b in zip(deltas, same_deltas))
    # a checkpoint already two-way (H-RPN's own) is left alone
    assert hrpn.adapt_checkpoint(state, "rpn_head.") == []


def test_a_ddp_checkpoint_is_rewritten_under_its_module_lead():
    from rsrcnn_d2.checkpoint import adapt_checkpoint

    model = nn.Module()
    model.rpn_head = HRPNHead(in_channels=4, num_anchors=3, conv_dims=(8,))
    weight, bias = torch.ones(3, 8, 1, 1), torch.tensor([1.0, 2.0, 3.0])
    state = {
        "module.rpn_head.objectness_logits.weight": weight,
        "module.rpn_head.objectness_logits.bias": bias,
        "module.rpn_head.conv.weight": torch.zeros(8, 4, 3, 3),
    }
    said = adapt_checkpoint(model, state)
    assert said == [
        "module.rpn_head.objectness_logits: one logit per anchor -> H-RPN's two, same objectness"
    ]
    assert state["module.rpn_head.objectness_logits.bias"].tolist() == [-1, -2, -3, 1, 2, 3]


# ----------------------------------------------------------------------- expanded ROI heads

SIZE = 64
STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
BOX = [16.0, 16.0, 32.0, 32.0]  # a 16 x 16 lesion; every proposal below is exactly its box


def _fixed_roi_heads(row="C", *opts, cls_bias=(1.0, 0.0), mask_bias=0.5):
    """The row's ROI heads with constant predictors: class logits ``cls_bias``, zero box deltas,
    mask logits ``mask_bias`` everywhere, whatever the pooled features."""
    cfg = tiny_cfg(row, *opts)
    shapes = {name: ShapeSpec(channels=64, stride=s) for name, s in STRIDES.items()}
    heads = build_roi_heads(cfg, shapes)
    with torch.no_grad():
        for layer in (
            heads.box_predictor.cls_score,
            heads.box_predictor.bbox_pred,
            heads.mask_head.predictor,
        ):
            nn.init.constant_(layer.weight, 0.0)
        heads.box_predictor.cls_score.bias.copy_(torch.tensor(cls_bias))
        nn.init.constant_(heads.box_predictor.bbox_pred.bias, 0.0)
        nn.init.constant_(heads.mask_head.predictor.bias, mask_bias)
    return heads


def _inputs():
    torch.manual_seed(3)
    features = {name: torch.rand(1, 64, SIZE // s, SIZE // s) for name, s in STRIDES.items()}
    images = ImageList(torch.zeros(1, 3, SIZE, SIZE), [(SIZE, SIZE)])
    proposals = Instances(
        (SIZE, SIZE),
        proposal_boxes=Boxes(torch.tensor([BOX])),
        objectness_logits=torch.tensor([5.0]),
    )
    mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    mask[0, 16:32, 16:32] = True
    gt = Instances(
        (SIZE, SIZE),
        gt_boxes=Boxes(torch.tensor([BOX])),
        gt_classes=torch.tensor([0]),
        gt_masks=BitMasks(mask),
    )
    return images, features, [proposals], [gt]


def _record_pooled_boxes(monkeypatch, pooler):
    seen = []
    original = pooler.forward

    def forward(x, boxes):
        seen.append(torch.cat([b.tensor for b in boxes]))
        return original(x, boxes)

    monkeypatch.setattr(pooler, "forward", forward)
    return seen


@pytest.mark.parametrize("k, foreground", [(2.0, 0.25), (1.0, 1.0)])
def test_training_losses_exact(monkeypatch, k, foreground):
    """k = 2: RoIAlign2 pools [8, 8, 40, 40], twice the lesion's side, so the lesion fills the
    middle quarter of the mask target; k = 1: the target is all lesion. Box deltas stay
    relative to the unexpanded proposal, which is the lesion's box: zero regression loss."""
    heads = _fixed_roi_heads(
        "C",
        "MODEL.ROI_MASK_HEAD.EXPANSION_K",
        str(k),
        "MODEL.ROI_MASK_HEAD.EXPANDED_RESOLUTION",
        "8",
    )
    heads.train()
    box_boxes = _record_pooled_boxes(monkeypatch, heads.box_pooler)
    mask_boxes = _record_pooled_boxes(monkeypatch, heads.mask_pooler)
    with EventStorage():
        _, losses = heads(*_inputs())
    side = 16 * k
    expanded = [24 - side / 2, 24 - side / 2, 24 + side / 2, 24 + side / 2]
    assert box_boxes[0].tolist() == [expanded] and mask_boxes[0].tolist() == [expanded]
    assert losses["loss_cls"].item() == pytest.approx(softplus(-1.0), rel=1e-6)  # logits (1, 0)
    assert losses["loss_box_reg"].item() == 0.0
    # mask logit 0.5 everywhere: BCE softplus(-0.5) on lesion pixels, softplus(0.5) elsewhere
    expected = foreground * softplus(-0.5) + (1 - foreground) * softplus(0.5)
    assert losses["loss_mask"].item() == pytest.approx(expected, rel=1e-6)


def test_training_mask_target_exact(monkeypatch):
    """The 16 x 16 target (RoIAlign2 side 8, upsampled x2 by row C's head) on the box
    [8, 8, 40, 40]: cells of 2 px, the lesion (pixels 16-31) is cells 4-11."""
    import detectron2.modeling.roi_heads.mask_head as mask_head

    targets = []
    original = mask_head.mask_rcnn_loss

    def spy(pred, instances, vis_period=0):
        side = pred.shape[-1]
        targets.append(
            torch.cat(
                [i.gt_masks.crop_and_resize(i.proposal_boxes.tensor, side) for i in instances]
            )
        )
        return original(pred, instances, vis_period)

    monkeypatch.setattr(mask_head, "mask_rcnn_loss", spy)
    heads = _fixed_roi_heads(
        "C",
        "MODEL.ROI_MASK_HEAD.EXPANSION_K",
        "2.0",
        "MODEL.ROI_MASK_HEAD.EXPANDED_RESOLUTION",
        "8",
    )
    heads.train()
    with EventStorage():
        heads(*_inputs())
    expected = torch.zeros(1, 16, 16, dtype=torch.bool)
    expected[0, 4:12, 4:12] = True
    assert torch.equal(targets[0], expected)


@pytest.mark.parametrize("row, side", [("C", 36), ("D", 18)])
def test_inference_outputs_exact(monkeypatch, row, side):
    """k = 1.3: RoIAlign2 is 18 x 18 (round(14 k)); row C's head upsamples to 36, LRS-Net keeps 18.

    The lesion box [16, 16, 32, 32] grows by 0.15 x 16 = 2.4 px on each side."""
    heads = _fixed_roi_heads(row, cls_bias=(2.0, 0.0))
    heads.eval()
    mask_boxes = _record_pooled_boxes(monkeypatch, heads.mask_pooler)
    images, features, proposals, _ = _inputs()
    with torch.no_grad():
        instances, losses = heads(images, features, proposals)
    assert losses == {}
    (inst,) = instances
    assert inst.pred_boxes.tensor.tolist() == [BOX]  # zero deltas: the proposal, unexpanded
    torch.testing.assert_close(inst.expanded_boxes.tensor, torch.tensor([[13.6, 13.6, 34.4, 34.4]]))
    assert torch.equal(mask_boxes[0], inst.expanded_boxes.tensor)
    assert inst.scores.item() == pytest.approx(math.exp(2) / (math.exp(2) + 1), rel=1e-6)
    assert inst.pred_classes.tolist() == [0]
    assert inst.pred_masks.shape == (1, 1, side, side)
    torch.testing.assert_close(
        inst.pred_masks, torch.full((1, 1, side, side), 1 / (1 + math.exp(-0.5)))
    )
