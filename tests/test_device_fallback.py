"""fall_back_to_cpu: configs say "cuda"; a machine without CUDA runs them on the CPU. A device
the user names (-device cuda, MODEL.DEVICE cuda) must exist: exit 2 and one line otherwise."""

import pytest
import torch

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.config import fall_back_to_cpu


@pytest.mark.parametrize(
    "device, cuda, after, changed",
    [
        ("cuda", False, "cpu", True),
        ("cuda:1", False, "cpu", True),
        ("cpu", False, "cpu", False),
        ("cuda", True, "cuda", False),
        ("cuda:1", True, "cuda:1", False),
    ],
)
@pytest.mark.parametrize("frozen", [False, True])
def test_fall_back_to_cpu(monkeypatch, device, cuda, after, changed, frozen):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = get_rsrcnn_cfg("", ["MODEL.DEVICE", device])
    if frozen:
        cfg.freeze()
    assert fall_back_to_cpu(cfg) is changed
    assert cfg.MODEL.DEVICE == after
    assert cfg.is_frozen() is frozen  # a frozen config stays frozen


# ------------------------------------------------ issue 23: a device asked for by name
def test_the_device_an_override_list_sets():
    from rsrcnn_d2.config import device_override

    assert device_override([]) == "" and device_override(None) == ""
    assert device_override(["MODEL.DEVICE", "cuda", "TEST.FLIP_TTA", "True"]) == "cuda"
    assert device_override(["MODEL.DEVICE", "cuda", "MODEL.DEVICE", "cpu"]) == "cpu"  # the last
    assert device_override(["MODEL.WEIGHTS", "MODEL.DEVICE"]) == ""  # a value, not a key


@pytest.mark.parametrize(
    "device, cuda, count, problem",
    [
        ("cpu", False, 0, None),
        ("cuda", True, 1, None),
        ("cuda:0", True, 1, None),
        ("cuda", False, 0, "CUDA is not available on this machine; use -device cpu"),
        ("cuda:1", False, 0, "CUDA is not available on this machine; use -device cpu"),
        ("cuda:1", True, 1, "this machine has 1 CUDA device(s), no cuda:1"),
    ],
)
def test_a_requested_cuda_device_must_exist(monkeypatch, device, cuda, count, problem):
    from rsrcnn_d2.config import check_requested_device
    from rsrcnn_d2.errors import EXIT_DATA, PWMLDataError, exit_code_of

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if problem is None:
        check_requested_device(device, "-device")
        return
    with pytest.raises(PWMLDataError) as error:
        check_requested_device(device, "-device")
    assert str(error.value).startswith(f"-device {device}: {problem}")
    assert exit_code_of(error.value) == EXIT_DATA


def _tiny_volume(path):
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.arange(64, dtype=np.float32).reshape(4, 4, 4), np.eye(4)), path)
    return path


@pytest.mark.parametrize(
    "asked, named",
    [(["-device", "cuda"], "-device"), (["MODEL.DEVICE", "cuda"], "MODEL.DEVICE")],
)
def test_predict_stops_when_the_cuda_it_was_asked_for_is_missing(
    tmp_path, monkeypatch, capsys, asked, named
):
    """nnU-Net's behaviour: exit 2 and one line, nothing written, no quiet CPU run."""
    from rsrcnn_d2.cli.predict import main

    from conftest import TINY_ROWS

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    volume = _tiny_volume(tmp_path / "case_0000.nii.gz")
    out = tmp_path / "out"
    argv = [str(volume), "-o", str(out), "--config-file", str(TINY_ROWS["E"])]
    assert main([*argv, "--weights", str(tmp_path / "never_read.pth"), *asked]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"rsrcnn-predict: error: {named} cuda: CUDA is not available on this machine; use "
        f"{named} cpu"
    ]
    assert not (out / "case.nii.gz").exists()


def test_predict_falls_back_to_the_cpu_when_only_the_config_says_cuda(tmp_path, monkeypatch):
    from rsrcnn_d2.cli import predict as cli

    from conftest import TINY_ROWS

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["x.nii.gz", "-o", str(tmp_path), "--config-file", str(TINY_ROWS["E"])]
    args = cli.parse_args([*argv, "--weights", "w.pth"])
    assert cli.setup_cfg(args).MODEL.DEVICE == "cpu"  # the configs' "cuda" is a default


def test_the_tuner_stops_when_the_cuda_it_was_asked_for_is_missing(monkeypatch, capsys):
    from rsrcnn_d2.cli.tune_operating_point import main

    from conftest import TINY_ROWS

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--config-file", str(TINY_ROWS["E"]), "--dataset", "op_val", "MODEL.DEVICE", "cuda"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tune_operating_point: error: MODEL.DEVICE cuda: CUDA is not available on this "
        "machine; use MODEL.DEVICE cpu"
    ]
