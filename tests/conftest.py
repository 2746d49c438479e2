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


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Tools called in-process (train_net's setup, tune_dcrf's main) attach handlers to the
    project's and detectron2's loggers with the test's captured stdout; drop them after
    each test so that no later test logs into a closed stream."""
    yield
    import logging

    from detectron2.utils.logger import setup_logger

    for name in ("rsrcnn_d2", "detectron2", "fvcore", "d2"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    setup_logger.cache_clear()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
