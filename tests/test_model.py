"""RS R-CNN's components built from small configs on CPU."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import rsrcnn_d2
from rsrcnn_d2.modeling import HRPNHead, LRSNetHead

from conftest import FULL_ROWS, TINY_ROWS, synthetic_input, tiny_cfg

LOSS_KEYS = {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}


def _train_step(cfg, inputs):
    model = build_model(cfg)
    model.train()
    with EventStorage():
        losses = model(inputs)
    total = sum(losses.values())
    total.backward()
    return model, losses


# every row's components on the tiny backbone; the R-101 backbone once, with row E (every
# component): the R-101 rows differ from one another only where the tiny rows do
# (tests/test_config_rows.py)
@pytest.mark.parametrize("path", [*TINY_ROWS.values(), FULL_ROWS["E"]], ids=lambda p: p.stem)
def test_one_training_step_every_config(path):
    # the R-101 row runs at 128 px to stay fast on CPU; the architecture is unchanged
    cfg = rsrcnn_d2.get_rsrcnn_cfg(
        str(path), ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(128,)"]
    )
    inputs = [synthetic_input(seed)[0] for seed in (1, 2)]
    model, losses = _train_step(cfg, inputs)
    assert set(losses) == LOSS_KEYS
    assert all(torch.isfinite(v) for v in losses.values()), losses
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_roialign2_is_18_at_k_1_3_and_lrsnet_keeps_it():
    model = build_model(tiny_cfg("D"))
    roi = model.roi_heads
    assert roi.mask_pooler.output_size == (18, 18)
    assert isinstance(roi.mask_head, LRSNetHead)
    out = roi.mask_head.layers(torch.zeros(3, 64, 18, 18))
    assert out.shape == (3, 1, 18, 18)  # N x N, no upsampling


def test_explicit_resolution_overrides_k():
    model = build_model(tiny_cfg("D", "MODEL.ROI_MASK_HEAD.EXPANDED_RESOLUTION", "12"))
    assert model.roi_heads.mask_pooler.output_size == (12, 12)


def test_lrsnet_parameter_count_close_to_paper():
    cfg = rsrcnn_d2.get_rsrcnn_cfg(str(FULL_ROWS["D"]))
    head = LRSNetHead(cfg, ShapeSpec(channels=256, height=18, width=18))
    count = sum(p.numel() for p in head.parameters())
    # 2 x (256*256*9 + 256) + (256 + 1) = 1,180,417
    assert count == 1_180_417
    assert abs(count - 1.2e6) / 1.2e6 < 0.05


def _hrpn_head(relu: bool):
    cfg = tiny_cfg("C", "MODEL.HRPN.OBJECTNESS_RELU", str(relu))
    return HRPNHead(cfg, [ShapeSpec(channels=64)] * 5)


def test_hrpn_objectness_is_softmax_of_relu_logits():
    head = _hrpn_head(True)
    x = torch.randn(1, 64, 5, 6)
    with torch.no_grad():
        torch.nn.init.normal_(head.objectness_logits.weight, std=1.0)
        logits, deltas = head([x])
        two = head.objectness_logits(head.conv(x))
    num_anchors = head.anchor_deltas.out_channels // 4
    bg, fg = F.relu(two[:, :num_anchors]), F.relu(two[:, num_anchors:])
    softmax_fg = torch.softmax(torch.stack([bg, fg]), dim=0)[1]
    assert logits[0].shape == (1, num_anchors, 5, 6) and deltas[0].shape == (
        1,
        4 * num_anchors,
        5,
        6,
    )
    torch.testing.assert_close(torch.sigmoid(logits[0]), softmax_fg)


def test_hrpn_relu_switch():
    on, off = _hrpn_head(True), _hrpn_head(False)
    off.load_state_dict(on.state_dict())
    x = torch.randn(1, 64, 4, 4)
    with torch.no_grad():
        torch.nn.init.normal_(on.objectness_logits.weight, std=1.0)
        torch.nn.init.normal_(off.objectness_logits.weight, std=0.0)
        off.objectness_logits.weight.copy_(on.objectness_logits.weight)
        two = on.objectness_logits(on.conv(x))
        a = on.objectness_logits.out_channels // 2
        assert torch.allclose(off([x])[0][0], two[:, a:] - two[:, :a])
        assert not torch.allclose(on([x])[0][0], off([x])[0][0])


def test_hrpn_proposal_count_is_detectron2s_key():
    model = build_model(tiny_cfg("C", "MODEL.RPN.POST_NMS_TOPK_TEST", "7"))
    model.eval()
    images = model.preprocess_image([synthetic_input(3)[0]])
    with torch.no_grad():
        proposals, _ = model.proposal_generator(images, model.backbone(images.tensor))
    assert len(proposals[0]) == 7
    assert model.proposal_generator.post_nms_topk == {True: 100, False: 7}


def test_single_nms_across_levels():
    """Two overlapping boxes from different levels: one survives SingleNMSRPN, both
    detectron2's RPN."""
    from detectron2.modeling.proposal_generator import RPN

    from rsrcnn_d2.modeling.rpn import SingleNMSRPN

    model = build_model(tiny_cfg("B"))
    rpn = model.proposal_generator
    assert isinstance(rpn, SingleNMSRPN)
    rpn.eval()
    anchors = [
        Boxes(torch.tensor([[10.0, 10.0, 30.0, 30.0]])),
        Boxes(torch.tensor([[11.0, 10.0, 31.0, 30.0]])),
    ]
    logits = [torch.tensor([[2.0]]), torch.tensor([[1.0]])]
    deltas = [torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)]
    single = rpn.predict_proposals(anchors, logits, deltas, [(64, 64)])[0]
    per_level = RPN.predict_proposals(rpn, anchors, logits, deltas, [(64, 64)])[0]
    assert single.proposal_boxes.tensor.tolist() == [[10.0, 10.0, 30.0, 30.0]]
    assert len(per_level) == 2


@pytest.mark.parametrize("training", [False, True])
def test_single_nms_rpn_gives_detectron2s_proposals_of_the_levels_joined(training):
    """The NMS that stops at POST_NMS_TOPK returns exactly what detectron2's selection returns
    for the levels concatenated into one (6,000 candidates, one NMS over all), where no two
    scores are equal: detectron2 orders equal scores its own way (a top-k over the batch, a
    re-sort that does not keep ties in order), ours keeps torchvision's (tests/test_box_ops.py)."""
    from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals

    from rsrcnn_d2.modeling.rpn import SingleNMSRPN

    model = build_model(tiny_cfg("C", "MODEL.RPN.POST_NMS_TOPK_TEST", "300"))
    rpn = model.proposal_generator.train(training)
    torch.manual_seed(0)
    inputs = [synthetic_input(s, size=256)[0] for s in (1, 2)]
    images = model.preprocess_image(inputs)
    seen = []  # the RPN's own forward hands predict_proposals its flattened head outputs

    def spy(*args):
        seen.append(args)
        return SingleNMSRPN.predict_proposals(rpn, *args)

    rpn.predict_proposals = spy
    gt = [x["instances"] for x in inputs] if training else None
    with torch.no_grad(), EventStorage():  # training logs its anchor counts
        ours, _ = rpn(images, model.backbone(images.tensor), gt)
    anchors, logits, deltas, _ = seen[0]
    joined = rpn._decode_proposals([Boxes.cat(anchors)], [torch.cat(deltas, 1)])
    theirs = find_top_rpn_proposals(
        joined,
        [torch.cat(logits, 1)],
        images.image_sizes,
        rpn.nms_thresh,
        rpn.pre_nms_topk[training],
        rpn.post_nms_topk[training],
        rpn.min_box_size,
        training,
    )
    assert [len(p) for p in ours] == [rpn.post_nms_topk[training]] * 2
    for a, b in zip(ours, theirs):
        assert torch.equal(a.proposal_boxes.tensor, b.proposal_boxes.tensor)
        assert torch.equal(a.objectness_logits, b.objectness_logits)


def test_single_nms_rpn_calls_a_non_finite_score_divergence_in_training():
    model = build_model(tiny_cfg("B"))
    rpn = model.proposal_generator
    anchors = [Boxes(torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 8.0, 8.0]]))]
    logits = [torch.tensor([[float("nan"), 1.0]])]
    deltas = [torch.zeros(1, 2, 4)]
    with pytest.raises(FloatingPointError, match="non-finite"):
        rpn.train().predict_proposals(anchors, logits, deltas, [(64, 64)])
    kept = rpn.eval().predict_proposals(anchors, logits, deltas, [(64, 64)])[0]
    assert kept.proposal_boxes.tensor.tolist() == [[0.0, 0.0, 8.0, 8.0]]  # the finite one


def _given_proposals(boxes, size=(128, 128)):
    inst = Instances(size)
    inst.proposal_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.objectness_logits = torch.ones(len(boxes))
    return inst


def _spy(monkeypatch, obj, name, record):
    original = getattr(obj, name)

    def spy(*args, **kwargs):
        record.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, spy)


@pytest.mark.parametrize("training", [True, False])
def test_box_head_pools_expanded_proposals_and_decodes_against_unexpanded(monkeypatch, training):
    from rsrcnn_d2.box_ops import expand_boxes

    cfg = tiny_cfg("C", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    model = build_model(cfg)
    model.train(training)
    heads = model.roi_heads
    boxes = [[10.0, 20.0, 20.0, 25.0], [40.0, 40.0, 47.0, 51.0], [0.0, 100.0, 10.0, 128.0]]
    x = synthetic_input(6)[0]
    images = model.preprocess_image([x])
    features = model.backbone(images.tensor)
    pooled, decoded = [], []
    _spy(monkeypatch, heads.box_pooler, "forward", pooled)
    _spy(monkeypatch, heads.box_predictor, "losses" if training else "inference", decoded)
    targets = [x["instances"]] if training else None
    with EventStorage(), torch.no_grad():
        heads(images, features, [_given_proposals(boxes)], targets)
    used = decoded[0][1][0].proposal_boxes.tensor  # the proposals the deltas refer to
    first = pooled[0][1][0].tensor  # RoIAlign1's boxes
    expected = expand_boxes(used, 1.3, (128, 128))
    assert torch.equal(first, expected)
    if not training:  # no sampling: exactly the given boxes
        assert used.tolist() == boxes
        # hand-computed: w = 10, h = 5 -> each side by 1.5 and 0.75; clipped at the border
        assert first[0].tolist() == [8.5, 19.25, 21.5, 25.75]
        torch.testing.assert_close(first[2], torch.tensor([0.0, 95.8, 11.5, 128.0]))  # clipped


def test_box_head_expansion_switch(monkeypatch):
    model = build_model(tiny_cfg("C", "MODEL.ROI_BOX_HEAD.EXPAND_PROPOSALS", "False"))
    model.eval()
    pooled = []
    _spy(monkeypatch, model.roi_heads.box_pooler, "forward", pooled)
    images = model.preprocess_image([synthetic_input(6)[0]])
    with torch.no_grad():
        model.roi_heads(
            images, model.backbone(images.tensor), [_given_proposals([[10.0, 20.0, 20.0, 25.0]])]
        )
    assert pooled[0][1][0].tensor.tolist() == [[10.0, 20.0, 20.0, 25.0]]


def test_training_mask_targets_use_expanded_proposals_and_no_gt_is_appended(monkeypatch):
    """The mask loss sees the foreground proposals expanded by k; no GT box joins the proposals."""
    from rsrcnn_d2.box_ops import expand_boxes

    seen = {}
    import detectron2.modeling.roi_heads.mask_head as mask_head

    original = mask_head.mask_rcnn_loss

    def spy(pred, instances, vis_period=0):
        seen["boxes"] = torch.cat([i.proposal_boxes.tensor for i in instances])
        return original(pred, instances, vis_period)

    monkeypatch.setattr(mask_head, "mask_rcnn_loss", spy)
    model = build_model(tiny_cfg("D", "MODEL.ROI_MASK_HEAD.EXPANSION_K", "2.0"))
    model.train()
    x = synthetic_input(4)[0]
    gt = x["instances"].gt_boxes.tensor
    # proposals: each GT box shifted by one pixel (IoU >= 0.5: foreground), none equal to a GT box
    shifted = (gt + torch.tensor([1.0, 0.0, 1.0, 0.0])).tolist()
    images = model.preprocess_image([x])
    with EventStorage():
        model.roi_heads(
            images, model.backbone(images.tensor), [_given_proposals(shifted)], [x["instances"]]
        )
    expected = expand_boxes(torch.tensor(shifted), 2.0, (128, 128))
    assert seen["boxes"].shape[0] == len(shifted)
    assert torch.equal(
        seen["boxes"][seen["boxes"][:, 0].argsort()], expected[expected[:, 0].argsort()]
    )


def test_overfits_one_synthetic_image():
    """Mask loss falls well below its start, and masks on the true boxes match the truth."""
    # ground truth and many proposals, so the mask head has foreground ROIs from the first step
    model = build_model(
        tiny_cfg(
            "D",
            "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT",
            "True",
            "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
            "1000",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN",
            "1000",
        )
    )
    model.train()
    # 64 px and 40 steps: the same lesions (1-30 px each) learnt in a 20th of the time of
    # 128 px x 60
    x, mask = synthetic_input(5, size=64, num_lesions=(3, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    mask_losses = []
    with EventStorage():
        for _ in range(40):
            losses = model([x, x])
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            mask_losses.append(losses["loss_mask"].item())
    assert abs(mask_losses[0] - np.log(2)) < 0.05  # untrained head predicts p = 0.5
    # the float expansion gives tiny lesions soft target edges that 40 steps do not fit
    # (a rounded growth left boxes under 4 px unexpanded); the masks below are what counts
    assert np.median(mask_losses[-13:]) < 0.9 * mask_losses[0], mask_losses

    model.eval()
    gt = x["instances"]
    given = Instances(
        gt.image_size,
        pred_boxes=gt.gt_boxes,
        pred_classes=gt.gt_classes,
        scores=torch.ones(len(gt)),
    )
    with torch.no_grad():
        out = model.inference([{"image": x["image"]}], detected_instances=[given])[0]
    pred = out["lesion_mask"].numpy()
    dice = 2 * (pred & (mask > 0)).sum() / (pred.sum() + mask.sum())
    assert dice > 0.8, dice
