"""LR halving on a validation-loss plateau: tracker logic, scheduler, checkpoint state."""

import math

import pytest
import torch

from rsrcnn_d2.solver import PlateauTracker, build_lr_scheduler

from conftest import tiny_cfg


def test_tracker_cuts_after_patience_bad_evaluations_and_restarts_count():
    t = PlateauTracker(patience=3)
    decisions = [t.update(x) for x in [1.0, 0.9, 0.95, 0.9, 0.91, 0.8, 0.85, 0.85, 0.85, 0.86]]
    #            improve improve bad  bad(=best) bad->cut improve bad bad bad->cut bad
    assert decisions == [False, False, False, False, True, False, False, False, True, False]
    assert t.best == 0.8 and t.bad_evals == 1


def test_tracker_min_delta_and_bad_values():
    t = PlateauTracker(patience=1, min_delta=0.1)
    assert t.update(1.0) is False
    assert t.update(0.95) is True  # 0.05 better is not better enough
    with pytest.raises(FloatingPointError):
        t.update(math.nan)
    with pytest.raises(ValueError):
        PlateauTracker(patience=0)


def test_tracker_state_round_trip():
    a = PlateauTracker(patience=4)
    for x in [3.0, 2.0, 2.5]:
        a.update(x)
    b = PlateauTracker(patience=4)
    b.load_state_dict(a.state_dict())
    assert (b.best, b.bad_evals) == (2.0, 1)


def test_plateau_scheduler_follows_the_scale_after_warmup():
    cfg = tiny_cfg(
        "E",
        "SOLVER.LR_SCHEDULER_NAME",
        "WarmupPlateauLR",
        "SOLVER.BASE_LR",
        "0.001",
        "SOLVER.WARMUP_ITERS",
        "2",
        "SOLVER.MAX_ITER",
        "20",
    )
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for it in range(8):
        if it == 4:
            sched.plateau_scale.scale *= 0.5
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[2:4] == pytest.approx([0.001, 0.001])
    assert lrs[4:] == pytest.approx([0.0005] * 4)


def test_other_schedulers_are_detectron2s():
    cfg = tiny_cfg("E", "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    assert not hasattr(build_lr_scheduler(cfg, opt), "plateau_scale")
