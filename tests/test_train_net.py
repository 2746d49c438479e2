"""tools/train_net.py end to end on a tiny synthetic cohort: train, evaluate, resume, 2 workers."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, TINY_ROWS, whole_slices_at

TRAIN_NET = REPO / "tools" / "train_net.py"


@pytest.fixture(scope="session")  # session: the slow tests run apart from the rest (conftest)
def cohort_root(tmp_path_factory):
    from test_data_fixtures import converted_cohort

    return converted_cohort(
        tmp_path_factory.mktemp("cohort"),
        num_subjects=8,
        size=128,
        depth=6,
        seed=3,
        lesion_fraction=0.5,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the tool's mechanics, not the input scale: whole slices shrunk to 64 px keep these runs short;
# the ground truth among the proposals gives the heads foreground ROIs from the first iteration,
# and weights that still predict nothing are allowed, so that a validation of these few
# iterations may give model_best.pth (tests/test_training_health.py tests both rules)
SMALL_INPUT = [
    *whole_slices_at(64),
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT",
    "True",
    "SOLVER.HEALTH.HEAD_ITERS_BEFORE_BEST",
    "0",
    "SOLVER.HEALTH.MAX_EMPTY_SHARE",
    "1.0",
]


def _run_here(root, out, *extra):
    """train_net's command line in this process (one worker, one thread, the cohort under
    ``root``/pwml registered as the default names), as `_run` without its Python start and
    imports; the output of the run."""
    import io
    from pathlib import Path

    from rsrcnn_d2.data.register import register_all_pwml

    from conftest import _train_net_here

    flags = [e for e in extra if e.startswith("--")]
    opts = [e for e in extra if not e.startswith("--")]
    args = ["--config-file", TINY_ROWS["E"], *flags, "OUTPUT_DIR", out, "SOLVER.IMS_PER_BATCH"]
    args += ["2", "TEST.EVAL_PERIOD", "0", "SOLVER.CHECKPOINT_PERIOD", "1000", "SEED", "1"]
    log = io.StringIO()
    register_all_pwml(Path(root) / "pwml")
    try:
        cmd = [sys.executable, "-m", "train_net", *args, *SMALL_INPUT, *opts]
        proc = _train_net_here(cmd, log, subprocess.STDOUT, threads=1)  # as `_run`
    finally:
        register_all_pwml()
    assert proc.returncode == 0, log.getvalue()[-6000:]
    return log.getvalue()


def _run(root, out, *extra, num_gpus=1, timeout=600, threads="1", dataset_root=None):
    """train_net in a session of its own: on a timeout the whole group (workers too) is killed.
    ``root``: $DETECTRON2_DATASETS; ``dataset_root``: a --dataset-root NAME=DIR."""
    env = dict(os.environ, DETECTRON2_DATASETS=str(root))
    env.pop("OMP_NUM_THREADS", None)
    env.pop("MKL_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    # detectron2's default port depends only on the user id: runs side by side would collide
    flags = [e for e in extra if e.startswith("--")] + [
        *(["--dataset-root", dataset_root] if dataset_root else []),
        "--dist-url",
        f"tcp://127.0.0.1:{_free_port()}",
    ]
    opts = [e for e in extra if not e.startswith("--")]
    cmd = [
        sys.executable,
        str(TRAIN_NET),
        "--config-file",
        str(TINY_ROWS["E"]),
        "--num-gpus",
        str(num_gpus),
        *flags,
        "OUTPUT_DIR",
        str(out),
        "SOLVER.IMS_PER_BATCH",
        str(2 * num_gpus),
        "TEST.EVAL_PERIOD",
        "0",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "SEED",
        "1",
        *SMALL_INPUT,
        *opts,
    ]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"train_net did not finish within {timeout} s (hung?):\n"
            f"{stdout[-3000:]}{stderr[-3000:]}"
        )
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout + stderr


def _iterations(out):
    lines = (out / "metrics.json").read_text().splitlines()
    return [json.loads(line)["iteration"] for line in lines if '"iteration"' in line]


def test_train_evaluate_and_resume(cohort_root, tmp_path):
    """The program's console and files, in this process (the real program's start, imports and
    warnings are the GLOO test's, which runs it as a child)."""
    out = tmp_path / "run"
    log = _run_here(
        cohort_root,
        out,
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.LR_SCHEDULER_NAME",
        "WarmupPlateauLR",
        "SOLVER.PLATEAU.PERIOD",
        "3",
        "SOLVER.PLATEAU.PATIENCE",
        "1",
        "SOLVER.WARMUP_ITERS",
        "0",
        "TEST.CALIBRATED_WITH.MODELS",  # as if fine-tuned from a tuned config
        "1",
        "SEED",
        "5",
    )
    assert "validation_loss" in log
    # what repeats the run exactly (the tests' train_net runs with OMP_NUM_THREADS=1)
    assert "repeatability: SEED 5, 1 torch thread(s) per worker" in log
    # new weights: the tuned config's calibration is not theirs, and evaluation says so
    assert "MODELS: 0" in (out / "config.yaml").read_text().split("CALIBRATED_WITH:")[1]
    assert "inference: flip TTA off (from the config), 1 model, no ensemble vote; " in log
    assert "operating point not calibrated" in log
    # our own log lines reach the console and log.txt
    assert (
        "is the best so far: saved" in log and "is the best so far" in (out / "log.txt").read_text()
    )
    # the run's health: heads trained from iteration 0, the best and final weights' validation
    health = json.loads((out / "health.json").read_text())
    assert health["first_foreground_iteration"] == 0 and health["iterations"] == 6
    assert health["best_checkpoint"]["criterion"] == "val_loss"
    assert health["best_checkpoint"]["iteration"] in (2, 5)  # evaluations at 2 and 5
    assert set(health["validation"]) == {"best", "final", "evaluated"}
    assert health["validation"]["evaluated"] == health["validation"]["best"]
    assert health["verdict"] in ("ok", "no_predictions")
    assert "training health: " in (out / "log.txt").read_text()
    assert "copypaste: Task: pwml_strict" in log and "copypaste: Task: pwml_reference" in log
    # the evaluator's own table (strict / reference / 3-D / lesion-wise) too
    assert "PWML evaluation on pwml_" in (out / "log.txt").read_text()
    assert "lesion-wise, 2-D lesions per slice:" in (out / "log.txt").read_text()
    assert (out / "inference" / "pwml_val" / "pwml_slices.csv").exists()
    # log.txt reads as text: the config dump without the console's colour codes
    assert "Running with full config" in (out / "log.txt").read_text()
    assert "\x1b[" not in (out / "log.txt").read_text()
    # the console ends with where the figures and the health report are; no known noise
    csv_line = (
        f"per-slice figures of pwml_val: {out / 'inference' / 'pwml_val' / 'pwml_slices.csv'}"
    )
    assert csv_line in log and f"training health: {out / 'health.json'}" in log
    first = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert first["iteration"] == 5
    # what the weights expect, in both the final and the best checkpoint (checked on loading)
    best = torch.load(out / "model_best.pth", map_location="cpu", weights_only=True)
    for state in (first, best):
        assert state["input_form"]["INPUT.NEIGHBOR_SLICES"] is False
        assert state["input_form"]["MODEL.ROI_MASK_HEAD.NAME"] == "LRSNetHead"
        assert state["input_form"]["INPUT.CROP_TO_HEAD"] is False  # SMALL_INPUT's whole slices
    first_hooks = first["trainer"]["hooks"]
    assert first_hooks["ValidationLossHook"]["tracker"]["best"] < float("inf")

    # resume: iteration count, LR schedule and plateau state carry on
    (out / "metrics.json").unlink()
    _run_here(
        cohort_root,
        out,
        "--resume",
        "SOLVER.MAX_ITER",
        "9",
        "SOLVER.LR_SCHEDULER_NAME",
        "WarmupPlateauLR",
        "SOLVER.PLATEAU.PERIOD",
        "3",
        "SOLVER.PLATEAU.PATIENCE",
        "1",
        "SOLVER.WARMUP_ITERS",
        "0",
    )
    assert min(_iterations(out)) >= 6
    second = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert second["iteration"] == 8
    second_hooks = second["trainer"]["hooks"]
    assert second_hooks["LRScheduler"]["last_epoch"] == first_hooks["LRScheduler"]["last_epoch"] + 3
    # the heads' count of foreground iterations carries on: 9 of 9 (the ground truth is
    # among the proposals), not the resumed run's 3 of 9
    assert json.loads((out / "health.json").read_text())["foreground_share"] == 1.0
    # the tracker resumed from the first run's best instead of starting from inf
    assert (
        second_hooks["ValidationLossHook"]["tracker"]["best"]
        <= first_hooks["ValidationLossHook"]["tracker"]["best"]
    )


def test_best_checkpoint_by_validation_dice(cohort_root, tmp_path):
    """SOLVER.BEST_CHECKPOINT val_dice: the validation Dice is measured at every validation and
    picks model_best.pth (RS R-CNN+'s choice)."""
    out = tmp_path / "dice"
    _run_here(
        cohort_root,
        out,
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.PLATEAU.PERIOD",
        "2",
        "SOLVER.BEST_CHECKPOINT",
        "val_dice",
    )
    health = json.loads((out / "health.json").read_text())
    assert health["best_checkpoint"]["criterion"] == "val_dice"
    best = torch.load(out / "model_best.pth", map_location="cpu", weights_only=True)
    assert best["criterion"] == "val_dice" and best["iteration"] in (1, 3)
    assert best["score"] == pytest.approx(-health["validation"]["best"]["dice"])
    assert "validation Dice " in (out / "log.txt").read_text()  # "validation Dice x is the best"
    # the last validation's Dice reaches metrics.json (detectron2 writes the latest values)
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [r["validation_dice"] for r in records if "validation_dice" in r] == [
        pytest.approx(health["validation"]["final"]["dice"])
    ]


def test_eval_only(cohort_root, tmp_path):
    out = tmp_path / "eval"
    log = _run_here(cohort_root, out, "--eval-only", "SOLVER.MAX_ITER", "1")
    assert "copypaste: Task: pwml_strict" in log


def test_two_workers_over_gloo(cohort_root, tmp_path):
    """Periodic evaluation and validation loss at iteration 1 and at the end: both collective
    hooks run on both workers (a different order on the two ranks would hang: timeout). No
    $DETECTRON2_DATASETS cohort at all: every worker registers the --dataset-root one."""
    out = tmp_path / "ddp"
    # no OMP_NUM_THREADS of ours: the tool chooses the workers' threads
    log = _run(
        tmp_path / "empty",
        out,
        "SOLVER.MAX_ITER",
        "2",
        "TEST.EVAL_PERIOD",
        "1",
        "SOLVER.PLATEAU.PERIOD",
        "1",
        "DATASETS.TRAIN",
        "('mycohort_train',)",
        "DATASETS.VAL",
        "('mycohort_val',)",
        "DATASETS.TEST",
        "('mycohort_val',)",
        num_gpus=2,
        timeout=420,
        threads=None,
        dataset_root=f"mycohort={cohort_root / 'pwml'}",
    )
    assert (
        "Rank of current process: 0. World size: 2" in log
    )  # detectron2 default_setup, main process
    assert (out / "model_final.pth").exists()
    assert "is_fx_tracing" not in log  # a fresh interpreter's known import-time noise stays hidden
    assert log.count("copypaste: Task: pwml_strict") == 2  # at iteration 1 and at the end, gathered
    assert log.count("is the best so far") >= 1 and "validation_loss" in log
    assert json.loads((out / "health.json").read_text())["first_foreground_iteration"] == 0
    rows = (out / "inference" / "mycohort_val" / "pwml_slices.csv").read_text().strip()
    rows = rows.splitlines()
    val = json.loads((cohort_root / "pwml" / "annotations" / "instances_val.json").read_text())
    assert len(rows) - 1 == len(val["images"])
    # each worker ran with its share of the cores, not a full thread pool each
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    default = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # torch's own pool, all cores
    expected = max(1, min(len(os.sched_getaffinity(0)), int(default)) // 2)
    for name in ("log.txt", "log.txt.rank1"):
        assert f"per-worker threads: {expected}" in (out / name).read_text(), name


def _children(pid: int):
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_launcher(cohort_root, tmp_path):
    """SIGKILL of ``train_net --num-gpus 2`` while its workers train: none trains on (PPID 1)."""
    out = tmp_path / "orphans"
    env = dict(os.environ, DETECTRON2_DATASETS=str(cohort_root), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(TINY_ROWS["E"]),
           "--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{_free_port()}",
           "OUTPUT_DIR", str(out), "SOLVER.IMS_PER_BATCH", "4", "TEST.EVAL_PERIOD", "0",
           "SOLVER.MAX_ITER", "100000", *SMALL_INPUT]  # fmt: skip
    launcher = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    workers = []
    try:
        deadline = time.monotonic() + 300
        # both workers are past their setup (each writes its log) and training
        while time.monotonic() < deadline and launcher.poll() is None:
            if (out / "log.txt.rank1").exists() and (out / "log.txt").exists():
                workers = [p for p in _children(launcher.pid) if _running(p)]
                if len(workers) >= 2:
                    break
            time.sleep(0.2)
        assert launcher.poll() is None and len(workers) >= 2, "the workers never started"
        launcher.kill()  # SIGKILL: the launcher gets no chance to stop its workers
        launcher.wait()
        deadline = time.monotonic() + 30
        while any(_running(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(p) for p in workers), "a worker outlived its killed launcher"
    finally:
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


_STUCK_WORKER = """
import os, signal, sys, time
import torch.multiprocessing as mp
from types import SimpleNamespace
from rsrcnn_d2.parent_death import die_with_launcher

def worker(i, launcher, pid_file):
    # a worker a SIGINT cannot stop (torch's own parent-death signal): blocked in a collective
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_launcher(SimpleNamespace(launcher_pid=launcher))
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    mp.start_processes(worker, nprocs=1, args=(os.getpid(), sys.argv[1]), start_method="spawn")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_past_the_reach_of_sigint_dies_with_its_launcher(tmp_path):
    """torch arms SIGINT, which a worker inside a collective or a hook never acts on; ours is
    SIGTERM, which ends the process whatever Python is doing."""
    script, pid_file = tmp_path / "launch.py", tmp_path / "worker.pid"
    script.write_text(_STUCK_WORKER)
    launcher = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    pid = None
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 20
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(pid), "the worker outlived its killed launcher"
    finally:
        if pid and _running(pid):
            os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()


PLATEAU_EVERY_EVAL = [
    "SOLVER.LR_SCHEDULER_NAME",
    "WarmupPlateauLR",
    "SOLVER.PLATEAU.PERIOD",
    "4",
    "SOLVER.PLATEAU.PATIENCE",
    "1",
    "SOLVER.PLATEAU.MIN_DELTA",
    "1e9",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.MAX_ITER",
    "12",
]


def _final_schedule(out):
    """(plateau scale, LR / the group's starting LR) of the final checkpoint."""
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    group = state["trainer"]["_trainer"]["optimizer"]["param_groups"][0]
    return (
        state["trainer"]["hooks"]["ValidationLossHook"]["scale"]["scale"],
        group["lr"] / group["initial_lr"],
    )


def test_kill_and_resume_keeps_the_lr_schedule_and_best_checkpoint(cohort_root, tmp_path):
    """A run killed right after a checkpoint taken at an evaluation, then resumed, ends with the
    LR of an uninterrupted run (MIN_DELTA 1e9: every evaluation after the first halves it:
    evaluations at iterations 3, 7 and 11, the last after the resume, so two halvings)."""
    killed = tmp_path / "killed"
    env = dict(os.environ, DETECTRON2_DATASETS=str(cohort_root), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        str(TRAIN_NET),
        "--config-file",
        str(TINY_ROWS["E"]),
        "OUTPUT_DIR",
        str(killed),
        "TEST.EVAL_PERIOD",
        "0",
        "SOLVER.CHECKPOINT_PERIOD",
        "8",
        "SEED",
        "1",
        *SMALL_INPUT,
        *PLATEAU_EVERY_EVAL,
    ]
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

    _run_here(cohort_root, killed, "--resume", "SOLVER.CHECKPOINT_PERIOD", "8", *PLATEAU_EVERY_EVAL)
    # an uninterrupted run's: scale 1/4; the optimizer holds the LR its last iteration trained
    # with, one halving (the one at iteration 11 applies from the next iteration, never run)
    assert _final_schedule(killed) == pytest.approx((1 / 4, 1 / 2))
    best_after = torch.load(killed / "model_best.pth", map_location="cpu", weights_only=True)
    assert best_after["score"] <= best_before["score"]
    hooks = torch.load(killed / "model_final.pth", map_location="cpu", weights_only=False)[
        "trainer"
    ]["hooks"]
    assert hooks["ValidationLossHook"]["lowest"] == pytest.approx(best_after["score"])
    assert hooks["ValidationLossHook"]["best_iteration"] == best_after["iteration"]
    assert hooks["HeadHealthHook"]["first_foreground"] == 0


def _load_train_net():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_net_under_test", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _EveryRankHook:
    """Stands for a hook that a later detectron2 or a subclass appends on every rank."""


@pytest.mark.parametrize(
    "extra_hook", [False, True], ids=["detectron2 hooks", "one more hook on every rank"]
)
def test_hooks_in_the_same_order_on_every_rank(monkeypatch, tmp_path, extra_hook):
    """Collective hooks (PreciseBN, validation loss, evaluation) in the same order on rank 0 and on
    rank 1, which lacks the main process's checkpointer and writer; the validation hook before the
    checkpointer, so that a checkpoint at an evaluation's iteration holds its state."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import DefaultTrainer, HookBase
    from detectron2.engine import hooks as d2_hooks
    from detectron2.utils import comm

    from rsrcnn_d2.engine import ValidationLossHook
    from rsrcnn_d2.solver import PlateauScale

    from conftest import tiny_cfg

    train_net = _load_train_net()
    cfg = tiny_cfg(
        "E", "OUTPUT_DIR", str(tmp_path), "TEST.EVAL_PERIOD", "2", "TEST.PRECISE_BN.ENABLED", "True"
    )
    trainer = train_net.Trainer.__new__(train_net.Trainer)  # the hooks only, no model or data
    trainer.cfg, trainer.max_iter = cfg, 10
    # the model lives in the inner SimpleTrainer; PreciseBN needs a BN layer
    trainer._trainer = SimpleNamespace(model=torch.nn.Sequential(torch.nn.BatchNorm2d(1)))
    trainer.scheduler = type("Scheduler", (), {"plateau_scale": PlateauScale()})()
    trainer.checkpointer = DetectionCheckpointer(trainer._trainer.model, str(tmp_path))
    monkeypatch.setattr(train_net.Trainer, "build_train_loader", classmethod(lambda cls, cfg: []))
    if extra_hook:
        every_rank = type("EveryRankHook", (_EveryRankHook, HookBase), {})
        d2_build = DefaultTrainer.build_hooks
        monkeypatch.setattr(
            DefaultTrainer, "build_hooks", lambda self: d2_build(self) + [every_rank()]
        )

    from rsrcnn_d2.engine.health import HeadHealthHook

    collective = (
        d2_hooks.PreciseBN,
        ValidationLossHook,
        HeadHealthHook,
        d2_hooks.EvalHook,
        _EveryRankHook,
    )
    orders = {}
    for rank in (0, 1):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(comm, "is_main_process", lambda rank=rank: rank == 0)
        hooks = trainer.build_hooks()
        names = [type(h).__name__ for h in hooks]
        orders[rank] = [type(h).__name__ for h in hooks if isinstance(h, collective)]
        if rank == 0:
            validation, evaluation = names.index("ValidationLossHook"), names.index("EvalHook")
            health = names.index("HeadHealthHook")
            assert validation < health < names.index("PeriodicCheckpointer") < evaluation
        else:
            assert "PeriodicCheckpointer" not in names
    expected = ["PreciseBN", "ValidationLossHook", "HeadHealthHook", "EvalHook"] + (
        ["EveryRankHook"] if extra_hook else []
    )
    assert orders[0] == orders[1] == expected


def test_cpu_threads_per_worker():
    from rsrcnn_d2.engine import cpu_threads_per_worker

    assert cpu_threads_per_worker(2, cores=2, environ={}) == 1
    assert cpu_threads_per_worker(3, cores=16, environ={}) == 5
    assert cpu_threads_per_worker(1, cores=16, environ={}) == 16
    assert cpu_threads_per_worker(4, cores=2, environ={}) == 1  # never 0
    # an explicit choice of the user is kept
    assert cpu_threads_per_worker(2, cores=16, environ={"OMP_NUM_THREADS": "3"}) == 3
    assert (
        cpu_threads_per_worker(2, cores=16, environ={"OMP_NUM_THREADS": "6,2"}) == 6
    )  # nested levels
    assert cpu_threads_per_worker(2, cores=16, environ={"OMP_NUM_THREADS": ""}) == 8  # empty: unset


def test_prepare_cpu_workers_exports_the_share_and_keeps_the_users_choice():
    from rsrcnn_d2.engine import prepare_cpu_workers

    env = {}
    assert prepare_cpu_workers(3, cores=16, environ=env) == 5
    assert env == {"OMP_NUM_THREADS": "5", "MKL_NUM_THREADS": "5"}
    env = {"OMP_NUM_THREADS": "2"}
    assert prepare_cpu_workers(3, cores=16, environ=env) == 2
    assert env == {"OMP_NUM_THREADS": "2"}  # MKL follows OMP_NUM_THREADS by itself


def test_set_worker_threads(monkeypatch):
    from rsrcnn_d2.engine import set_worker_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert set_worker_threads(2, cores=4) == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_worker_threads(2, cores=4) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_training_program_is_a_module_of_the_package(tmp_path):
    """``python -m rsrcnn_d2.engine.train_net`` from outside the checkout: the same program
    as tools/train_net.py (same checks and exit codes), found through the installed package."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rsrcnn_d2.cli.train_net",
            "--config-file",
            "missing.yaml",
            "--num-gpus",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 3
    assert (
        proc.stderr.splitlines()[-1]
        == "train_net.py: error: missing.yaml: config file does not exist"
    )
    assert proc.stdout.startswith("Command Line Args: Namespace(config_file='missing.yaml'")


def test_the_tool_is_the_package_program():
    """tools/train_net.py only calls the package's command line: one Trainer, one main."""
    from rsrcnn_d2.cli import train_net

    tool = _load_train_net()
    assert (tool.Trainer, tool.main, tool.setup, tool.cli) == (
        train_net.Trainer,
        train_net.main,
        train_net.setup,
        train_net.cli,
    )
    assert "class " not in TRAIN_NET.read_text() and "def " not in TRAIN_NET.read_text()


def test_the_tool_refuses_a_missing_config_in_exactly_one_line(tmp_path):
    """Nothing but the error on stderr: the package is imported before detectron2, so the
    torch.jit deprecation noise of detectron2's import stays hidden."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(
        [sys.executable, str(TRAIN_NET), "--config-file", "missing.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 3
    assert proc.stderr == "train_net.py: error: missing.yaml: config file does not exist\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_an_explicit_cuda_device_without_cuda_is_one_line_exit_2(tmp_path, capsys):
    """nnU-Net's behaviour: asked for by name, CUDA that is not there stops the program instead
    of training for hours on the CPU (a config's own default still falls back)."""
    from rsrcnn_d2.cli.train_net import cli

    code = cli(["--config-file", str(TINY_ROWS["E"]), "MODEL.DEVICE", "cuda",
                "OUTPUT_DIR", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("train_net.py: error: MODEL.DEVICE cuda: CUDA is not available")
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_is_a_file_is_one_line_exit_2(tmp_path, capsys):
    from rsrcnn_d2.cli.train_net import cli

    taken = tmp_path / "out"
    taken.write_text("a user's file")
    code = cli(["--config-file", str(TINY_ROWS["E"]), "OUTPUT_DIR", str(taken)])
    err = capsys.readouterr().err.strip()
    assert (code, err) == (
        2,
        f"train_net.py: error: {taken}: OUTPUT_DIR is a file; it must be a folder",
    )
    assert taken.read_text() == "a user's file"


def test_a_run_folder_in_use_by_a_live_trainer_is_refused(tmp_path, capsys):
    """A second trainer on one run folder (a re-run of a sweep whose first trainer still runs)
    would mix two runs' checkpoints: refused before any worker starts."""
    import socket

    from rsrcnn_d2.cli.train_net import cli
    from rsrcnn_d2.data.output_lock import LOCK_FILE

    out = tmp_path / "run"
    out.mkdir()
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record = {"pid": first.pid, "host": socket.gethostname(), "program": "train_net.py",
                  "started": "now"}  # fmt: skip
        (out / LOCK_FILE).write_text(json.dumps(record))
        code = cli(["--config-file", str(TINY_ROWS["E"]), "OUTPUT_DIR", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and f"train_net.py: error: {out}: in use by train_net.py (pid" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    finally:
        first.kill()
        first.wait()


def test_training_on_data_without_a_lesion_is_one_line_exit_2(tmp_path, capsys):
    """detectron2 drops lesion-free slices from training; with nothing left its loader asserts.
    The user gets one line naming the dataset instead of an AssertionError's traceback."""
    from detectron2.data import DatasetCatalog

    from rsrcnn_d2.cli.train_net import cli

    name = "test_lesion_free_train"
    slice_dict = {"file_name": str(tmp_path / "s.npy"), "image_id": 0, "height": 64, "width": 64}
    DatasetCatalog.register(name, lambda: [{**slice_dict, "annotations": []}])
    try:
        code = cli([
            "--config-file", str(TINY_ROWS["E"]), "MODEL.DEVICE", "cpu",
            "DATASETS.TRAIN", f"('{name}',)", "DATASETS.VAL", "()", "DATASETS.TEST", "()",
            "OUTPUT_DIR", str(tmp_path / "out"),
        ])  # fmt: skip
    finally:
        DatasetCatalog.remove(name)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (
        f"train_net.py: error: {name}: holds no lesion to train on (every slice is lesion-free, "
        "and detectron2 drops those for training); prepare a cohort with lesions, or check "
        "DATASETS.TRAIN"
    )
    assert not any("Traceback" in line for line in err)
