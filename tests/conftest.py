"""Shared fixtures: repository paths, tiny configs and synthetic inputs.

Configs are named through `rsrcnn_d2.model_zoo` (the one row table), so the
tests run from any directory. Third-party warnings are filtered in pytest.ini,
not here: a global filter would hide warnings of our own code too.
"""

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # `make test` runs pytest-xdist workers, one per core: each worker, and the programs its
    # tests start, gets its share of the cores, since torch threads contending for the same
    # cores run many times slower, not just slower. Set before torch is imported.
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = max(1, (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))

import numpy as np
import pytest
import torch

from rsrcnn_d2.model_zoo import ROW_CONFIGS, configs_dir, get_config_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = configs_dir()
TINY = CONFIGS / "PWML-Tiny"
# the reference slices (datasets/README.md): $PWML_REFERENCE_SLICES, else the CI checkout's copy
# beside the repository; tests that need them skip when neither exists
SHARED_SLICES = Path(
    os.environ.get("PWML_REFERENCE_SLICES")
    or REPO.parent / "shared" / "data" / "pwml_reference_slices"
)
TINY_ROWS = {row: Path(get_config_file(name)) for row, name in ROW_CONFIGS["tiny"].items()}
FULL_ROWS = {row: Path(get_config_file(name)) for row, name in ROW_CONFIGS["r101"].items()}


def whole_slices_at(size: int):
    """Overrides for whole slices (no head crop) at ``size`` px: tests of mechanics, not scale."""
    return ["INPUT.CROP_TO_HEAD", "False", "INPUT.MIN_SIZE_TRAIN", f"({size},)",
            "INPUT.MAX_SIZE_TRAIN", str(size), "INPUT.MIN_SIZE_TEST", str(size),
            "INPUT.MAX_SIZE_TEST", str(size)]  # fmt: skip


def tiny_cfg(row: str = "E", *opts):
    from rsrcnn_d2 import get_rsrcnn_cfg

    return get_rsrcnn_cfg(str(TINY_ROWS[row]), ["MODEL.DEVICE", "cpu", *opts])


def synthetic_input(seed: int = 0, size: int = 128, num_lesions=(2, 6)):
    """A training dict for detectron2 models, plus the source mask."""
    from rsrcnn_d2.data.instances import mask_to_instances
    from rsrcnn_d2.synth.phantom import synthetic_slice

    image, mask = synthetic_slice(size, num_lesions=num_lesions, seed=seed)
    tensor = torch.from_numpy(np.repeat(image[None], 3, axis=0))
    return {"image": tensor, "instances": mask_to_instances(mask)}, mask


@pytest.fixture(scope="session", autouse=True)
def _datasets_root():
    """$DETECTRON2_DATASETS defaults to the repository's datasets/ whatever the working
    directory (tools run by tests inherit it); the caller's environment is restored after."""
    with pytest.MonkeyPatch.context() as mp:
        if "DETECTRON2_DATASETS" not in os.environ:
            mp.setenv("DETECTRON2_DATASETS", str(REPO / "datasets"))
        yield


def _drop_tool_log_handlers():
    """Remove the handlers that tools run in-process attached to the project's and
    detectron2's loggers (bound to a stream or log file that is about to close)."""
    import logging

    from detectron2.utils.logger import setup_logger

    for name in ("rsrcnn_d2", "detectron2", "fvcore", "d2"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            if isinstance(handler, logging.FileHandler):
                handler.close()
    setup_logger.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Tools called in-process (train_net's setup, tune_dcrf's main) attach handlers to the
    project's and detectron2's loggers with the test's captured stdout; drop them after
    each test so that no later test logs into a closed stream."""
    yield
    _drop_tool_log_handlers()


_TOOL_LOGGERS = ("rsrcnn_d2", "detectron2", "fvcore", "d2")


def _train_net_here(cmd, stdout=None, stderr=None, threads=None):
    """``python -m rsrcnn_d2.cli.train_net ARGS`` run as train_net's command line in this
    process: the same program without a fresh interpreter's imports (seconds per training).

    ``threads``: the OMP_NUM_THREADS the run sees, as a child's environment would set it.
    The process state it changes is put back afterwards: the loggers' handlers (log.txt
    streams closed), levels and propagation, detectron2's logger caches, torch threads, the
    environment and warning filters."""
    import contextlib
    import logging
    import subprocess
    import traceback
    import warnings

    from detectron2.utils import logger as d2_logger

    from rsrcnn_d2.cli.train_net import cli

    saved_threads, environ = torch.get_num_threads(), dict(os.environ)
    loggers = {name: logging.getLogger(name) for name in _TOOL_LOGGERS}
    saved = {n: (lg.level, lg.propagate, list(lg.handlers)) for n, lg in loggers.items()}
    err = stdout if stderr == subprocess.STDOUT else stderr
    to_out = contextlib.redirect_stdout(stdout) if stdout else contextlib.nullcontext()
    to_err = contextlib.redirect_stderr(err) if err else contextlib.nullcontext()
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        with warnings.catch_warnings(), to_out, to_err:
            try:
                code = cli(list(map(str, cmd[3:])), prog="train_net")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # a child would print it and exit 1
                traceback.print_exc()
                code = 1
    finally:
        for name, lg in loggers.items():
            level, propagate, handlers = saved[name]
            for handler in [h for h in lg.handlers if h not in handlers]:
                lg.removeHandler(handler)
                stream = getattr(handler, "stream", None)
                if isinstance(handler, logging.FileHandler):
                    handler.close()
                elif str(getattr(stream, "name", "")).rsplit("/", 1)[-1].startswith("log.txt"):
                    stream.close()  # detectron2's cached log.txt stream
            lg.setLevel(level)
            lg.propagate = propagate
        d2_logger.setup_logger.cache_clear()
        d2_logger._cached_log_stream.cache_clear()  # a re-run into the same folder reopens it
        torch.set_num_threads(saved_threads)
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(cmd, code)


@pytest.fixture
def trainings_in_process(monkeypatch):
    """The experiment drivers' trainings (`runner.train`, the one child process they start)
    run in the test's process. End-to-end driver tests use it to save a Python start and
    torch/detectron2 imports per training; the child process itself is tested in
    test_child_process.py and test_experiments.py."""
    in_process(monkeypatch)


def in_process(monkeypatch):
    """`trainings_in_process` for a fixture of wider scope (a `pytest.MonkeyPatch`)."""
    from rsrcnn_d2.experiments import runner

    child = runner.run_child

    def run(cmd, **kwargs):
        if list(cmd[1:3]) != ["-m", runner.TRAIN_NET_MODULE]:
            return child(cmd, **kwargs)
        return _train_net_here(cmd, kwargs.get("stdout"), kwargs.get("stderr"))

    monkeypatch.setattr(runner, "run_child", run)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# The slowest tests (pytest --durations on 2 quiet cores), longest first. They run before the
# rest so that under pytest-xdist no worker is left running one of them while the other has
# nothing to do: the workers share out the quick tests as they go (--dist worksteal). A test
# whose cost is a module fixture its neighbours share stays with them.
SLOWEST_FIRST = (
    "test_two_workers_over_gloo",
    "test_ablation_runs_then_resumes_without_retraining",
    "test_pretrain.py",  # its module fixture, the shared pre-training: the module together
    "test_loso_holds_out_each_subject_once",
    "test_two_folds_resume_after_fold_0_and_pool_all_subjects",
    "test_workers_die_with_a_killed_launcher",
    "test_kill_and_resume_keeps_the_lr_schedule_and_best_checkpoint",
    "test_train_evaluate_and_resume",
    "test_a_worker_past_the_reach_of_sigint_dies_with_its_launcher",
    "test_built_wheel_carries_the_configs_and_resolves_them",
    "test_overfits_one_synthetic_image",
    "test_sigterm_ends_the_run_and_removes_its_staging",
    "test_import_is_light_and_a_config_registers_the_components",
    "test_train_net_into_a_read_only_output_dir",
    "test_sigkill_leaves_no_workers_and_next_run_cleans_staging",
    "test_a_killed_driver_leaves_no_child_running",
)


def pytest_collection_modifyitems(items):
    """`SLOWEST_FIRST` (test names, or test files for all their tests) at the front, in its
    order; every other test keeps its place."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}

    def place(item):
        name = getattr(item, "originalname", item.name)  # a doctest or a plugin's item has none
        return rank.get(name, rank.get(item.path.name, len(rank)))

    items.sort(key=place)
