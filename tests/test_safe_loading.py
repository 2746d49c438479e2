"""No code runs from a config or weights file, and weights that do not fit the model are refused."""
import logging
import pickle
import sys

import numpy as np
import pytest
import torch

from conftest import TINY, TINY_ROWS
from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.errors import ConfigError, WeightsError


def _payload(marker):
    """A YAML value that, loaded unsafely, creates ``marker``."""
    return f'!!python/object/apply:os.system ["touch {marker}"]'


# ------------------------------------------------------------------ configs (item 6)
def test_python_tag_in_a_base_config_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    base = tmp_path / "base.yaml"
    base.write_text(f"_BASE_: {TINY_ROWS['B']}\nMODEL:\n  WEIGHTS: {_payload(marker)}\n")
    top = tmp_path / "top.yaml"
    top.write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 3\n")
    with pytest.raises(ConfigError) as info:
        get_rsrcnn_cfg(str(top))
    message = str(info.value)
    assert message.startswith(f"{base}: YAML tag tag:yaml.org,2002:python/object/apply:os.system")
    assert "(line 3)" in message and "safe loader" in message
    assert not marker.exists()


def test_python_tag_in_the_top_config_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    top = tmp_path / "top.yaml"
    top.write_text(f"_BASE_: {TINY_ROWS['B']}\nOUTPUT_DIR: !!python/object/new:os.system [\"touch {marker}\"]\n")
    with pytest.raises(ConfigError, match=f"^{top}: YAML tag .*python/object/new:os.system"):
        get_rsrcnn_cfg(str(top))
    assert not marker.exists()


def test_a_safe_config_chain_still_loads():
    cfg = get_rsrcnn_cfg(str(TINY_ROWS["E"]), ["SOLVER.MAX_ITER", "7"])
    assert cfg.MODEL.DCRF.NAME == "DenseCRFPostprocessor" and cfg.SOLVER.MAX_ITER == 7


@pytest.mark.parametrize("body, problem", [
    ("MODEL:\n  NO_SUCH_KEY: 1\n", "unknown config key MODEL.NO_SUCH_KEY"),
    ("MODEL: [1, 2\n", "not valid YAML"),
    ("SOLVER:\n  MAX_ITER: many\n", "cannot merge this config: Type mismatch"),
    ("_BASE_: missing_base.yaml\n", "cannot read config file"),
])
def test_bad_config_files_are_config_errors_naming_the_file(tmp_path, body, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        get_rsrcnn_cfg(str(path))
    expected = tmp_path / "missing_base.yaml" if "_BASE_" in body else path
    assert str(info.value).startswith(f"{expected}: {problem}")
    assert "\n" not in str(info.value)


def test_missing_config_and_unknown_override_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'nope.yaml'}: config file does not exist$"):
        get_rsrcnn_cfg(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r": override MODEL\.NOPE 1: unknown config key MODEL\.NOPE$"):
        get_rsrcnn_cfg(str(TINY_ROWS["B"]), ["MODEL.NOPE", "1"])
    with pytest.raises(ConfigError, match="override SOLVER.MAX_ITER: .*odd length"):
        get_rsrcnn_cfg(str(TINY_ROWS["B"]), ["SOLVER.MAX_ITER"])
