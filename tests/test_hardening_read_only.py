"""Read-only output folders: one line naming the folder and exit 2, before any work, never a
PermissionError traceback and never one failure per input.

Root writes into read-only folders whatever their mode: each program runs here without the
capability that allows it (CAP_DAC_OVERRIDE dropped from its bounding set before exec), so a
folder of mode 555 is read-only to it as to any user.
"""

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_ROWS

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="permissions as Linux has them"
)
_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE = 24, 1  # linux/prctl.h, linux/capability.h


def _without_override():
    """preexec_fn: no write into a folder the mode forbids, root or not."""
    if os.geteuid() == 0 and ctypes.CDLL(None).prctl(_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, 0, 0, 0):
        os._exit(99)  # cannot drop it: the caller skips


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    path = tmp_path_factory.mktemp("read_only")
    yield path
    for folder, _, _ in os.walk(path):
        os.chmod(folder, 0o755)


def _read_only(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    return folder


def _run(*args):
    """(exit status, stderr) of ``python args`` for which read-only means read-only."""
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=_without_override,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    if proc.returncode == 99:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here")
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def raw(area):
    from rsrcnn_d2.synth import write_synthetic_cohort

    write_synthetic_cohort(area / "raw", 4, size=32, depth=4, seed=0, lesion_fraction=0.5)
    return area / "raw"


def _one_line(err: str, folder: Path):
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err[-2000:]
    assert len([line for line in lines if "error" in line]) == 1, err[-2000:]
    assert str(folder) in lines[-1] and "not writable" in lines[-1], lines[-1]


def test_prepare_into_a_read_only_folder(area, raw):
    out = _read_only(area / "prep_ro")
    code, err = _run(REPO / "tools" / "prepare_pwml.py", raw, "-o", out, "--workers", "1")
    assert code == 2
    _one_line(err, out)
    assert os.listdir(out) == []


def test_prepare_into_a_new_folder_of_a_read_only_parent(area, raw):
    parent = _read_only(area / "parent_ro")
    code, err = _run(REPO / "tools" / "prepare_pwml.py", raw, "-o", parent / "pwml")
    assert code == 2
    _one_line(err, parent)


def test_evaluate_into_a_read_only_folder(area, raw):
    out = _read_only(area / "eval_ro")
    code, err = _run("-m", "rsrcnn_d2.cli.evaluate", raw / "labelsTr", raw / "labelsTr", "-o", out)
    assert code == 2
    _one_line(err, out)


@pytest.fixture(scope="module")
def weights(area):
    from detectron2.modeling import build_model

    from rsrcnn_d2.checkpoint import SafeCheckpointer, input_form

    from conftest import tiny_cfg

    cfg = tiny_cfg("B")
    SafeCheckpointer(build_model(cfg), str(area), input_form=input_form(cfg)).save("w")
    return area / "w.pth"


def test_predict_into_a_read_only_folder_is_one_error_not_one_per_input(area, raw, weights):
    out = _read_only(area / "pred_ro")
    code, err = _run(
        "-m", "rsrcnn_d2.cli.predict", raw / "imagesTr", "-o", out,
        "--config-file", TINY_ROWS["B"], "--weights", weights, "--no-progress",
    )  # fmt: skip
    assert code == 2
    _one_line(err, out)


def test_train_net_into_a_read_only_output_dir(area):
    """Refused before any worker starts (the lock, taken by train_net and run_cv alike)."""
    out = _read_only(area / "train_ro")
    code, err = _run(
        REPO / "tools" / "train_net.py", "--config-file", TINY_ROWS["B"],
        "MODEL.DEVICE", "cpu", "OUTPUT_DIR", out,
    )  # fmt: skip
    assert code == 2
    _one_line(err, out)
    assert os.listdir(out) == []
