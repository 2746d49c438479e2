"""Training that cannot silently fail: the reference's global-norm gradient clipping and RPN box
loss on hand-computed cases, and a run whose heads never trained is named and never keeps a
pre-head model_best.pth."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage
from torch import nn

from rsrcnn_d2.engine.health import FOREGROUND_SCALAR, HeadHealthHook, health_verdict
from rsrcnn_d2.engine.validation_loss import BEST_CHECKPOINT, ValidationLossHook
from rsrcnn_d2.solver import build_optimizer, clip_global_norm_

from conftest import tiny_cfg


# ----------------------------------------------------------------- global-norm gradient clipping
def _params_with_grads(*grads):
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g, dtype=torch.float32)
        params.append(p)
    return params


def test_global_norm_scales_two_norm_4_tensors_to_3_54():
    a, b = _params_with_grads([4.0, 0.0], [0.0, -4.0])
    norm = clip_global_norm_([a, b], 5.0)
    assert norm == pytest.approx(math.sqrt(32))
    scale = 5.0 / math.sqrt(32)  # Keras 2: g * clipnorm / global norm
    torch.testing.assert_close(a.grad, torch.tensor([4.0 * scale, 0.0]))
    torch.testing.assert_close(b.grad, torch.tensor([0.0, -4.0 * scale]))
    assert a.grad.norm().item() == pytest.approx(3.5355339, rel=1e-6)
    # detectron2's per-tensor "norm" would have left both alone
    c, d = _params_with_grads([4.0, 0.0], [0.0, -4.0])
    for p in (c, d):
        torch.nn.utils.clip_grad_norm_([p], 5.0)
    assert c.grad.norm().item() == d.grad.norm().item() == 4.0


def test_global_norm_below_the_limit_changes_nothing():
    a, b = _params_with_grads([3.0, 0.0], [2.0])
    assert clip_global_norm_([a, b, nn.Parameter(torch.ones(1))], 5.0) == pytest.approx(
        math.sqrt(13)
    )
    assert a.grad.tolist() == [3.0, 0.0] and b.grad.tolist() == [2.0]


class _TwoTensors(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(2))
        self.b = nn.Parameter(torch.zeros(1))


def test_optimizer_from_the_rows_config_clips_all_gradients_together():
    cfg = tiny_cfg("B", "SOLVER.BASE_LR", "1.0", "SOLVER.MOMENTUM", "0.0")
    cfg.defrost()
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "global_norm"
    model = _TwoTensors()
    optimizer = build_optimizer(cfg, model)
    model.a.grad, model.b.grad = torch.tensor([4.0, 0.0]), torch.tensor([-4.0])
    optimizer.step()  # SGD, lr 1: the parameter moves by minus the clipped gradient
    step = 4.0 * 5.0 / math.sqrt(32)
    torch.testing.assert_close(model.a.data, torch.tensor([-step, 0.0]))
    torch.testing.assert_close(model.b.data, torch.tensor([step]))
    assert optimizer.state_dict()["param_groups"][0]["lr"] == 1.0  # a plain SGD state


# ------------------------------------------------------------------------------ RPN box loss
def _rpn(row="B", *opts):
    from detectron2.modeling import build_proposal_generator

    cfg = tiny_cfg(row, *opts)
    shapes = {
        f: ShapeSpec(channels=8, stride=2 ** (i + 2))
        for i, f in enumerate(cfg.MODEL.RPN.IN_FEATURES)
    }
    return build_proposal_generator(cfg, shapes)


ANCHORS = [Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 4, 4]]))]
GT_BOXES = [torch.tensor([[1.0, 1, 11, 11], [0, 0, 1, 1], [0, 0, 4, 8]])]
LABELS = [torch.tensor([1, 0, 1])]  # anchor 1 negative: no box loss
# anchor 0: targets (dx, dy, dw, dh) = (10 * 1/10, 10 * 1/10, 0, 0); anchor 2: (0, 10 * 2/4,
# 0, 5 * log 2). Predicted: zeros, and (0, 4.5, 0, 3.0)
DELTAS = [torch.tensor([[[0.0, 0, 0, 0], [7, 7, 7, 7], [0, 4.5, 0, 3.0]]])]
# smooth-L1 (beta 1): 0.5 + 0.5 for anchor 0; 0.5 * 0.5^2 + 0.5 * (5 log 2 - 3)^2 for anchor 2
SMOOTH_L1_SUM = 1.0 + 0.125 + 0.5 * (5 * math.log(2) - 3.0) ** 2


@pytest.mark.parametrize("row", ["B", "E"])
def test_rpn_box_loss_is_the_references_mean_over_positive_coordinates(row):
    rpn = _rpn(row)
    with EventStorage():
        losses = rpn.losses(ANCHORS, [torch.zeros(1, 3)], LABELS, DELTAS, GT_BOXES)
    # 2 positive anchors x 4 coordinates (the reference's K.mean over a (P, 4) tensor)
    assert losses["loss_rpn_loc"].item() == pytest.approx(SMOOTH_L1_SUM / 8, rel=1e-6)
    assert SMOOTH_L1_SUM / 8 == pytest.approx(0.1541819, rel=1e-6)


def test_rpn_box_loss_detectron2s_average_and_no_positive():
    rpn = _rpn("B", "MODEL.RPN.LOC_LOSS_AVERAGE", "sampled_anchors")
    with EventStorage():
        losses = rpn.losses(ANCHORS, [torch.zeros(1, 3)], LABELS, DELTAS, GT_BOXES)
        assert losses["loss_rpn_loc"].item() == pytest.approx(SMOOTH_L1_SUM / 64, rel=1e-6)
        none = _rpn("B").losses(
            ANCHORS, [torch.zeros(1, 3)], [torch.tensor([0, 0, -1])], DELTAS, GT_BOXES
        )
    assert none["loss_rpn_loc"].item() == 0.0


def test_an_unknown_box_loss_average_is_refused():
    with pytest.raises(ValueError, match="LOC_LOSS_AVERAGE"):
        _rpn("B", "MODEL.RPN.LOC_LOSS_AVERAGE", "per_anchor")


# ---------------------------------------------------------------------- health and best checkpoint
class _Model(nn.Module):
    """Validation losses from the batch: loss_rpn_cls = x, loss_mask = 2x (total 3x)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(1.0))

    def forward(self, inputs):
        x = torch.tensor([float(v) for v in inputs]).mean() * self.weight
        return {"loss_rpn_cls": x, "loss_mask": 2 * x}


def _train(tmp_path, foreground, validation_values, head_iters, criterion="val_loss", dice=None):
    """Six iterations of a stand-in trainer with validations at iterations 1, 3 and 5."""
    model = _Model()
    values = iter(validation_values)
    dice = dice or (lambda m: {"dice": 0.0, "empty_lesion_share": 1.0})
    health = HeadHealthHook(warn_period=2, output_dir=str(tmp_path), max_empty_share=0.9)
    validation = ValidationLossHook(
        period=2,
        batches_fn=lambda: [[next(values)]],
        output_dir=str(tmp_path),
        criterion=criterion,
        dice_fn=dice,
        health=health,
        head_iters=head_iters,
        max_empty_share=0.9,
    )
    health.validation = validation
    hooks = [validation, health]
    with EventStorage(0) as storage:
        trainer = SimpleNamespace(model=model, storage=storage, iter=0, max_iter=6, start_iter=0)
        for h in hooks:
            h.trainer = trainer
            h.before_train()
        for i in range(6):
            trainer.iter = storage.iter = i
            storage.put_scalar(FOREGROUND_SCALAR, float(i in foreground))
            for h in hooks:
                h.after_step()
        trainer.iter = 6
        for h in hooks:
            h.after_train()
    return validation, health, json.loads((tmp_path / "health.json").read_text())


def test_heads_that_never_trained_are_named_and_leave_no_best_checkpoint(tmp_path, caplog):
    # an earlier run's best checkpoint in the same folder is never taken for this run's
    torch.save({"model": {}, "iteration": 3, "score": -1.0}, tmp_path / BEST_CHECKPOINT)
    # the total validation loss falls at every evaluation: any loss-based choice would keep one
    with caplog.at_level("WARNING"):
        validation, _, health = _train(tmp_path, (), [1.0, 0.5, 0.25], head_iters=0)
    assert not (tmp_path / BEST_CHECKPOINT).exists()
    assert health["verdict"] == "heads_never_trained"
    assert health["first_foreground_iteration"] is None
    assert health["best_checkpoint"] == {"criterion": "val_loss", "iteration": None, "file": None}
    assert health["validation"]["evaluated"] == {"dice": 0.0, "empty_lesion_share": 1.0}
    assert "never trained" in health["cure"]
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("no foreground ROI yet" in w for w in warnings) == 3  # iterations 1, 3, 5
    assert any(w.startswith("training health: heads_never_trained") for w in warnings)


def _predicting(model):
    return {"dice": 0.5, "empty_lesion_share": 0.25}


def test_no_best_checkpoint_before_the_heads_have_trained(tmp_path):
    # heads start at iteration 2; at 3 they have trained 1 < 2 iterations; the lowest loss (1.0,
    # iteration 1) is from before them and must not be kept
    validation, health_hook, health = _train(
        tmp_path, (2, 3), [1.0, 3.0, 2.0], head_iters=2, dice=_predicting
    )
    best = torch.load(tmp_path / BEST_CHECKPOINT, map_location="cpu", weights_only=True)
    assert best["iteration"] == 5 and best["score"] == pytest.approx(6.0)  # total: 3 x 2.0
    assert best["criterion"] == "val_loss"
    assert health_hook.first_foreground == 2
    assert health["first_foreground_iteration"] == 2
    assert health["best_checkpoint"]["iteration"] == 5
    assert health["verdict"] == "ok"


def test_weights_that_predict_nothing_never_become_the_best(tmp_path, caplog):
    """Heads trained from iteration 0, but the weights with the lowest loss (iteration 1) leave
    every validation lesion slice empty: the best is the lowest loss among weights that
    predict (iteration 5), and the verdict judges those."""
    # iteration 1 is refused, so 3 (a higher loss) and then 5 are candidates, and kept
    empties = iter([1.0, 0.0, 0.0])

    def dice(model):
        empty = next(empties)
        return {"dice": 0.6 * (1 - empty), "empty_lesion_share": empty}

    with caplog.at_level("INFO"):
        _, _, health = _train(tmp_path, (0,), [1.0, 3.0, 2.0], head_iters=0, dice=dice)
    best = torch.load(tmp_path / BEST_CHECKPOINT, map_location="cpu", weights_only=True)
    assert best["iteration"] == 5 and best["score"] == pytest.approx(6.0)
    assert health["validation"]["best"] == {"dice": 0.6, "empty_lesion_share": 0.0}
    assert health["verdict"] == "ok"
    refused = [r.getMessage() for r in caplog.records if "would be the best" in r.getMessage()]
    assert refused == [
        "validation total loss 3.0000 would be the best so far, but these weights leave 100% of "
        "the validation slices with lesions without any prediction: not kept as model_best.pth"
    ]


def test_no_kept_weights_means_the_final_ones_are_judged(tmp_path):
    # every candidate predicts nothing: no model_best.pth; the verdict is on the final weights
    _, _, health = _train(tmp_path, (0,), [1.0, 0.5, 0.25], head_iters=0)
    assert not (tmp_path / BEST_CHECKPOINT).exists()
    assert health["best_checkpoint"]["file"] is None
    assert health["validation"]["evaluated"] == health["validation"]["final"]
    assert health["verdict"] == "no_predictions" and "model_final.pth" in health["cure"]


def test_best_by_validation_dice_and_an_ok_verdict(tmp_path):
    dices = iter([0.2, 0.6, 0.4, 0.4])  # evaluations at 1, 3, 5; nothing more after training

    def dice(model):
        d = next(dices)
        return {"dice": d, "empty_lesion_share": 1.0 - d}

    _, _, health = _train(
        tmp_path, (0,), [1.0, 2.0, 3.0], head_iters=0, criterion="val_dice", dice=dice
    )
    best = torch.load(tmp_path / BEST_CHECKPOINT, map_location="cpu", weights_only=True)
    assert best["iteration"] == 3 and best["score"] == pytest.approx(-0.6)
    assert health["verdict"] == "ok"
    assert health["validation"]["best"] == {"dice": 0.6, "empty_lesion_share": pytest.approx(0.4)}
    assert health["validation"]["final"] == {"dice": 0.4, "empty_lesion_share": pytest.approx(0.6)}
    assert health["validation"]["evaluated"] == health["validation"]["best"]


@pytest.mark.parametrize(
    "first, empty, verdict",
    [
        (None, 0.0, "heads_never_trained"),
        (10, 0.95, "no_predictions"),
        (10, 0.9, "ok"),
        (10, float("nan"), "unvalidated"),
        (10, None, "unvalidated"),
    ],
)
def test_health_verdict(first, empty, verdict):
    assert health_verdict(first, empty, 0.9) == verdict


def test_a_kept_checkpoint_far_below_the_final_weights_is_warned_about():
    """Row D, seed 1 of the re-run: model_best.pth at iteration 149 (validation Dice 0.055) against
    final weights at 0.273: the verdict stays ok, and a warning names the way out."""
    from rsrcnn_d2.engine.health import health_report

    validation = {
        "best_checkpoint": {"criterion": "val_loss", "iteration": 149, "file": "model_best.pth"},
        "best": {"dice": 0.055, "empty_lesion_share": 0.774},
        "final": {"dice": 0.273, "empty_lesion_share": 0.0},
    }
    validation["evaluated"] = validation["best"]
    report = health_report(54, 500, validation, 0.9)
    assert report["verdict"] == "ok" and "cure" not in report
    assert report["warning"] == (
        "model_best.pth (val_loss) scores validation Dice 0.055, the final weights 0.273: "
        "evaluate model_final.pth (MODEL.WEIGHTS) or select by SOLVER.BEST_CHECKPOINT val_dice"
    )
    from rsrcnn_d2.experiments.run_health import health_cell

    assert health_cell(report) == "ok (heads 54, best 149, below the final weights)"
    from rsrcnn_d2.experiments.run_health import health_line

    fine = health_report(54, 500, {**validation, "final": validation["best"]}, 0.9)
    assert health_line({"D seed 1": report, "D seed 0": fine, "D seed 2": None}) == (
        "Training health: 2 of 3 runs ok; 1 kept a checkpoint (model_best.pth) whose validation "
        "Dice is clearly below their final weights' (D seed 1); 1 without a health report."
    )
    validation["final"]["dice"] = 0.155  # within 0.1: no warning
    assert "warning" not in health_report(54, 500, validation, 0.9)


def test_heads_with_a_foreground_roi_in_few_iterations_are_warned_about(tmp_path, caplog):
    """Row C under the pre-trained protocol before its classifier was carried over: a first
    foreground ROI at iteration 6, then none in most iterations until about 500. The heads
    have foreground at iterations 1 and 4 of 6 here: 2 of 6 (33 %), each window of 2 with
    one, except (2, 3) with none."""
    with caplog.at_level("WARNING"):
        _, hook, health = _train(tmp_path, (1, 4), [1.0, 0.5, 0.25], head_iters=0, dice=_predicting)
    assert hook.foreground_iterations == 2
    assert health["first_foreground_iteration"] == 1
    assert health["foreground_share"] == pytest.approx(2 / 6)
    assert health["verdict"] == "ok"
    assert health["heads_idle"] == (
        "the box and mask heads had a foreground ROI in 2 of 6 iterations (33.3%): for most of "
        "the run only the RPN learned; train longer (SOLVER.MAX_ITER) or start from weights "
        "whose RPN already finds lesions (MODEL.WEIGHTS)"
    )
    warnings = [r.getMessage() for r in caplog.records]
    # windows (0, 1) and (4, 5) have 1 of 2: not below half; (2, 3) has none
    assert [w for w in warnings if "hardly learning" in w] == [
        "iteration 3: the box and mask heads had a foreground ROI in only 0 of the last 2 "
        "iterations: they are hardly learning"
    ]
    assert "training health: " + health["heads_idle"] in warnings
    from rsrcnn_d2.experiments.run_health import health_cell, health_line

    assert health_cell(health) == "ok (heads 1, heads in 33% of iterations, best 5)"
    assert health_line({"C seed 0": health}) == (
        "Training health: 1 of 1 runs ok; 1 trained their heads in less than half of the "
        "iterations (C seed 0)."
    )


def test_heads_busy_half_the_run_or_uncounted_are_not_idle(tmp_path):
    _, hook, health = _train(tmp_path, (0, 2, 4), [1.0, 0.5, 0.25], head_iters=0, dice=_predicting)
    assert health["foreground_share"] == 0.5 and "heads_idle" not in health
    from rsrcnn_d2.engine.health import health_report

    # resumed from a checkpoint that did not count: unknown, not idle, no window warning
    hook.load_state_dict({"first_foreground": 3})
    assert hook.window_foreground is None
    assert hook.foreground_iterations is None and hook.pooled_foreground_iterations() is None
    report = health_report(3, 6, None, 0.9, None)
    assert report["foreground_share"] is None and "heads_idle" not in report


def test_a_resume_without_the_hooks_state_counts_nothing_before_it(tmp_path):
    """A checkpoint written before the hook existed: the iterations before the resume are
    unknown, so no share (and no idle warning) is made up from the resumed part alone."""
    from types import SimpleNamespace

    hook = HeadHealthHook(warn_period=2)
    hook.trainer = SimpleNamespace(start_iter=500)
    hook.before_train()
    assert hook.foreground_iterations is None and hook.window_foreground is None
    fresh = HeadHealthHook(warn_period=2)
    fresh.trainer = SimpleNamespace(start_iter=0)
    fresh.before_train()
    assert fresh.foreground_iterations == 0 and fresh.window_foreground == 0
