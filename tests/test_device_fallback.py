"""fall_back_to_cpu: configs say "cuda"; a machine without CUDA runs them on the CPU."""

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
