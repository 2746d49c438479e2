"""tools/train_net.py end to end on a tiny synthetic cohort: train, evaluate, resume, 2 workers."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, TINY_ROWS

TRAIN_NET = REPO / "tools" / "train_net.py"


@pytest.fixture(scope="module")
def cohort_root(tmp_path_factory):
    from rsrcnn_d2.data import convert_pwml, write_synthetic_cohort

    base = tmp_path_factory.mktemp("cohort")
    write_synthetic_cohort(base / "raw", num_subjects=8, size=128, depth=6, seed=3, lesion_fraction=0.5)
    convert_pwml(base / "raw", base / "pwml", workers=1)
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the tool's mechanics, not the input scale: whole 128-px slices keep these runs short
SMALL_INPUT = ["INPUT.CROP_TO_HEAD", "False", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
               "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"]


def _run(root, out, *extra, num_gpus=1):
    env = dict(os.environ, DETECTRON2_DATASETS=str(root), OMP_NUM_THREADS="1")
    # detectron2's default port depends only on the user id: runs side by side would collide
    flags = [e for e in extra if e.startswith("--")] + ["--dist-url", f"tcp://127.0.0.1:{_free_port()}"]
    opts = [e for e in extra if not e.startswith("--")]
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(TINY_ROWS["E"]), "--num-gpus", str(num_gpus),
           *flags, "OUTPUT_DIR", str(out), "SOLVER.IMS_PER_BATCH", str(2 * num_gpus),
           "TEST.EVAL_PERIOD", "0", "SOLVER.CHECKPOINT_PERIOD", "1000", "SEED", "1", *SMALL_INPUT, *opts]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _iterations(out):
    lines = (out / "metrics.json").read_text().splitlines()
    return [json.loads(line)["iteration"] for line in lines if '"iteration"' in line]


def test_train_evaluate_and_resume(cohort_root, tmp_path):
    out = tmp_path / "run"
    log = _run(cohort_root, out, "SOLVER.MAX_ITER", "6", "SOLVER.LR_SCHEDULER_NAME", "WarmupPlateauLR",
               "SOLVER.PLATEAU.PERIOD", "3", "SOLVER.PLATEAU.PATIENCE", "1", "SOLVER.WARMUP_ITERS", "0")
    assert "validation_loss" in log
    # our own log lines reach the console and log.txt
    assert "is the lowest so far: saved" in log and "is the lowest so far" in (out / "log.txt").read_text()
    assert "copypaste: Task: pwml_strict" in log and "copypaste: Task: pwml_reference" in log
    assert (out / "inference" / "pwml_val" / "pwml_slices.csv").exists()
    first = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert first["iteration"] == 5
    first_hooks = first["trainer"]["hooks"]
    assert first_hooks["ValidationLossHook"]["tracker"]["best"] < float("inf")

    # resume: iteration count, LR schedule and plateau state carry on
    (out / "metrics.json").unlink()
    _run(cohort_root, out, "--resume", "SOLVER.MAX_ITER", "9", "SOLVER.LR_SCHEDULER_NAME", "WarmupPlateauLR",
         "SOLVER.PLATEAU.PERIOD", "3", "SOLVER.PLATEAU.PATIENCE", "1", "SOLVER.WARMUP_ITERS", "0")
    assert min(_iterations(out)) >= 6
    second = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert second["iteration"] == 8
    second_hooks = second["trainer"]["hooks"]
    assert second_hooks["LRScheduler"]["last_epoch"] == first_hooks["LRScheduler"]["last_epoch"] + 3
    # the tracker resumed from the first run's best instead of starting from inf
    assert second_hooks["ValidationLossHook"]["tracker"]["best"] <= first_hooks["ValidationLossHook"]["tracker"]["best"]


def test_eval_only(cohort_root, tmp_path):
    out = tmp_path / "eval"
    log = _run(cohort_root, out, "--eval-only", "SOLVER.MAX_ITER", "1")
    assert "copypaste: Task: pwml_strict" in log


def test_two_workers_over_gloo(cohort_root, tmp_path):
    out = tmp_path / "ddp"
    log = _run(cohort_root, out, "SOLVER.MAX_ITER", "3", num_gpus=2)
    assert "world_size" in log.lower() or "rank" in log.lower()
    assert (out / "model_final.pth").exists()
    assert "copypaste: Task: pwml_strict" in log  # evaluation gathered from both workers
    rows = (out / "inference" / "pwml_val" / "pwml_slices.csv").read_text().strip().splitlines()
    val = json.loads((cohort_root / "pwml" / "annotations" / "instances_val.json").read_text())
    assert len(rows) - 1 == len(val["images"])


PLATEAU_EVERY_EVAL = ["SOLVER.LR_SCHEDULER_NAME", "WarmupPlateauLR", "SOLVER.PLATEAU.PERIOD", "4",
                      "SOLVER.PLATEAU.PATIENCE", "1", "SOLVER.PLATEAU.MIN_DELTA", "1e9",
                      "SOLVER.WARMUP_ITERS", "0", "SOLVER.MAX_ITER", "20"]


def _final_schedule(out):
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    return (state["trainer"]["hooks"]["ValidationLossHook"]["scale"]["scale"],
            state["trainer"]["_trainer"]["optimizer"]["param_groups"][0]["lr"])


def test_kill_and_resume_keeps_the_lr_schedule_and_best_checkpoint(cohort_root, tmp_path):
    """A run killed right after a checkpoint taken at an evaluation, then resumed, ends with the
    LR of an uninterrupted run (MIN_DELTA 1e9: every evaluation after the first halves it)."""
    whole = tmp_path / "whole"
    _run(cohort_root, whole, *PLATEAU_EVERY_EVAL)
    # evaluations at iterations 3, 7, 11, 15, 19: four halvings
    assert _final_schedule(whole)[0] == 1 / 16
    assert (whole / "model_best.pth").exists()

    killed = tmp_path / "killed"
    env = dict(os.environ, DETECTRON2_DATASETS=str(cohort_root), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(TINY_ROWS["E"]), "OUTPUT_DIR", str(killed),
           "TEST.EVAL_PERIOD", "0", "SOLVER.CHECKPOINT_PERIOD", "8", "SEED", "1", *SMALL_INPUT,
           *PLATEAU_EVERY_EVAL]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tag = killed / "last_checkpoint"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if tag.exists() and tag.read_text().strip() == "model_0000007.pth":
            proc.kill()  # SIGKILL: no clean-up of any kind
            break
        time.sleep(0.02)
    proc.wait()
    assert not (killed / "model_final.pth").exists(), "the run finished before it could be killed"
    best_before = torch.load(killed / "model_best.pth", map_location="cpu", weights_only=True)

    _run(cohort_root, killed, "--resume", "SOLVER.CHECKPOINT_PERIOD", "8", *PLATEAU_EVERY_EVAL)
    assert _final_schedule(killed) == pytest.approx(_final_schedule(whole))
    best_after = torch.load(killed / "model_best.pth", map_location="cpu", weights_only=True)
    assert best_after["validation_loss"] <= best_before["validation_loss"]
    hooks = torch.load(killed / "model_final.pth", map_location="cpu", weights_only=False)["trainer"]["hooks"]
    assert hooks["ValidationLossHook"]["lowest"] == pytest.approx(best_after["validation_loss"])
