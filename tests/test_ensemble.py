"""Checkpoint ensembling and flip TTA (rsrcnn_d2.inference.ensemble) on real tiny models."""

import copy

import pytest
import torch
from detectron2.modeling import build_model

from rsrcnn_d2.inference.ensemble import LesionEnsemble, flip_boxes

from conftest import synthetic_input, tiny_cfg

# a random network: keep every box it finds, no CRF, so the outputs are the network's
OPEN = (
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "MODEL.DCRF.NAME",
    "",
    "INPUT.CROP_TO_HEAD",
    "False",
)


def _model(*opts):
    torch.manual_seed(0)
    cfg = tiny_cfg("E", *OPEN, *opts)
    return cfg, build_model(cfg).eval()


def _input(seed=1, size=96):
    inp, _ = synthetic_input(seed=seed, size=size)
    return {"image": inp["image"], "height": size, "width": size}


def test_flip_boxes():
    boxes = torch.tensor([[1.0, 2.0, 4.0, 5.0]])
    assert flip_boxes(boxes, 10).tolist() == [[6.0, 2.0, 9.0, 5.0]]
    assert torch.equal(flip_boxes(flip_boxes(boxes, 10), 10), boxes)


def test_one_member_is_the_model_and_a_repeated_checkpoint_changes_nothing():
    cfg, model = _model()
    inp = _input()
    with torch.no_grad():
        plain = model([inp])[0]
    alone = LesionEnsemble.from_config(cfg, [model], flip=False)([inp])[0]
    twice = LesionEnsemble.from_config(cfg, [model, model], flip=False)([inp])[0]
    assert len(plain["instances"]) > 0
    assert torch.equal(alone["lesion_prob"], plain["lesion_prob"])
    assert torch.allclose(twice["lesion_prob"], plain["lesion_prob"], atol=1e-6)
    assert torch.equal(twice["lesion_mask"], plain["lesion_mask"])


def test_two_checkpoints_average_their_probability_maps():
    # two checkpoints that differ in the mask head only: the same single detection,
    # so the ensemble's map must be the mean of the two maps (pasting is linear)
    cfg, a = _model("TEST.DETECTIONS_PER_IMAGE", "1")
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.roi_heads.mask_head.parameters():
            p.add_(0.05 * torch.randn_like(p))
        inp = _input()
        pa, pb = a([inp])[0]["lesion_prob"], b([inp])[0]["lesion_prob"]
    assert not torch.allclose(pa, pb)
    both = LesionEnsemble.from_config(cfg, [a, b], flip=False)([inp])[0]["lesion_prob"]
    assert torch.allclose(both, (pa + pb) / 2, atol=1e-5)


def test_flip_tta_commutes_with_mirroring_the_input():
    # TTA over {image, mirror} is the same set of members for the mirrored image:
    # its output must be the mirror of the image's output, box by box. (For a model
    # whose own output is mirror-symmetric on a symmetric image, this is "flip TTA of
    # a symmetric input equals no TTA"; a random network is not such a model.)
    cfg, model = _model()
    tta = LesionEnsemble.from_config(cfg, [model], flip=True)
    inp = _input(seed=2)
    mirrored = dict(inp, image=inp["image"].flip(dims=[-1]))
    out, out_m = tta([inp])[0], tta([mirrored])[0]
    assert len(out["instances"]) > 0
    assert torch.allclose(out_m["lesion_prob"], out["lesion_prob"].flip(dims=[-1]), atol=1e-5)
    with torch.no_grad():
        plain = model([inp])[0]
    assert not torch.allclose(out["lesion_prob"], plain["lesion_prob"])  # the mirror counted


def test_empty_model_list_is_refused():
    with pytest.raises(ValueError, match="at least one model"):
        LesionEnsemble([])


def test_no_detection_anywhere_gives_empty_outputs_with_the_usual_fields():
    cfg, model = _model("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.01")
    out = LesionEnsemble.from_config(cfg, [model, model], flip=True)([_input()])[0]
    assert len(out["instances"]) == 0 and out["instances"].has("mask_probs")
    assert not out["lesion_mask"].any() and out["lesion_prob"].shape == (96, 96)


def test_with_flip_tta_follows_the_config_and_unwraps_ddp():
    from rsrcnn_d2.inference.ensemble import with_flip_tta

    cfg, model = _model()
    assert with_flip_tta(cfg, model) is model  # TEST.FLIP_TTA defaults to off (the paper has none)
    cfg.defrost()
    cfg.TEST.FLIP_TTA = True

    class Wrapped(torch.nn.Module):  # what DistributedDataParallel looks like to the hook
        def __init__(self, module):
            super().__init__()
            self.module = module

    tta = with_flip_tta(cfg, Wrapped(model))
    assert isinstance(tta, LesionEnsemble) and tta.members == 2 and tta.models[0] is model


def test_train_net_evaluates_with_tta_when_the_config_asks(monkeypatch):
    import importlib.util

    from detectron2.engine import DefaultTrainer

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("train_net_tool", REPO / "tools" / "train_net.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    seen = []
    monkeypatch.setattr(
        DefaultTrainer, "test", classmethod(lambda cls, cfg, model, ev=None: seen.append(model))
    )
    cfg, model = _model("TEST.FLIP_TTA", "True")
    tool.Trainer.test(cfg, model)
    assert isinstance(seen[-1], LesionEnsemble) and seen[-1].flip
    cfg, model = _model()
    tool.Trainer.test(cfg, model)
    assert seen[-1] is model


def test_votes_count_the_members_that_detected_each_lesion():
    from rsrcnn_d2.inference.ensemble import votes

    merged = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    b = torch.tensor([[1.0, 1.0, 10.0, 10.0]])  # IoU 0.81 with the first
    c = torch.tensor([[5.0, 0.0, 15.0, 10.0]])  # IoU 1/3 with the first: not the same lesion
    assert votes(merged, [a, b, c, torch.zeros((0, 4))], 0.5).tolist() == [2, 1]
    assert votes(merged, [a, b, c], 0.3).tolist() == [3, 1]


def test_majority_vote_is_the_default_and_one_vote_is_detectron2s_union():
    cfg, model = _model()
    assert LesionEnsemble.from_config(cfg, [model], flip=True).min_votes == 2  # 2 members
    assert LesionEnsemble.from_config(cfg, [model] * 2, flip=True).min_votes == 3  # 4 members
    cfg.defrost()
    cfg.TEST.ENSEMBLE_MIN_VOTES = 1
    union = LesionEnsemble.from_config(cfg, [model], flip=True)
    assert union.min_votes == 1
    majority = LesionEnsemble([model], flip=True)
    inp = _input(seed=2)
    n_union, n_majority = (len(e([inp])[0]["instances"]) for e in (union, majority))
    assert n_union > n_majority > 0  # a random network's mirror disagrees with it
    with pytest.raises(ValueError, match="min_votes must be"):
        LesionEnsemble([model], flip=True, min_votes=3)


def test_a_number_of_votes_can_be_configured_and_tta_keeps_the_callers_mode():
    from rsrcnn_d2.config import get_rsrcnn_cfg
    from rsrcnn_d2.inference.ensemble import with_flip_tta
    from rsrcnn_d2.model_zoo import row_config

    cfg = get_rsrcnn_cfg(row_config("E"), ["TEST.ENSEMBLE_MIN_VOTES", "1", "TEST.FLIP_TTA", "True"])
    _, model = _model()
    assert LesionEnsemble.from_config(cfg, [model], flip=True).min_votes == 1
    assert with_flip_tta(cfg, model.eval()).training is False
    assert with_flip_tta(cfg, model.train()).training is True
