"""rsrcnn_d2.model_zoo: configs by name, the one row table, and configs in a built package."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rsrcnn_d2 import get_rsrcnn_cfg, model_zoo
from rsrcnn_d2.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_get_config_file_names_the_repository_file():
    path = model_zoo.get_config_file("PWML-Tiny/E_rsrcnn_R_18_FPN.yaml")
    assert Path(path) == REPO / "configs" / "PWML-Tiny" / "E_rsrcnn_R_18_FPN.yaml"
    assert get_rsrcnn_cfg(path).MODEL.DCRF.NAME == "DenseCRFPostprocessor"


def test_unknown_config_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        model_zoo.get_config_file("PWML-Tiny/F_nothing.yaml")
    assert str(e.value).startswith("PWML-Tiny/F_nothing.yaml: no such config in rsrcnn_d2; known: ")
    assert "PWML/E_rsrcnn_R_101_FPN.yaml" in str(e.value)


def test_list_configs_is_every_yaml_of_configs():
    on_disk = sorted(
        p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")
    )
    assert model_zoo.list_configs() == on_disk
    assert len(on_disk) == 12  # Base, Base-Tiny and rows B-E and "plus" twice


@pytest.mark.parametrize("family,depth", [("tiny", 18), ("r101", 101)])
def test_row_table_covers_rows_b_to_e_and_plus_of_both_families(family, depth):
    assert list(model_zoo.ROW_CONFIGS[family]) == ["B", "C", "D", "E", "plus"]
    heads = {}
    for row in ("B", "C", "D", "E", "plus"):
        cfg = get_rsrcnn_cfg(model_zoo.row_config(row, family))
        assert cfg.MODEL.RESNETS.DEPTH == depth
        heads[row] = (
            cfg.MODEL.PROPOSAL_GENERATOR.NAME,
            cfg.MODEL.ROI_MASK_HEAD.NAME,
            cfg.MODEL.DCRF.NAME,
        )
    assert heads["B"][0] == "SingleNMSRPN" and heads["C"][0] == "HRPN"
    assert heads["C"][1] != "LRSNetHead" and heads["D"][1] == "LRSNetHead"
    assert heads["D"][2] != "DenseCRFPostprocessor" and heads["E"][2] == "DenseCRFPostprocessor"
    assert heads["plus"] == heads["E"]  # RS R-CNN+ is row E's model with other inputs and TTA


@pytest.mark.parametrize("family", ["tiny", "r101"])
def test_plus_row_is_row_e_with_neighbour_slices_flip_tta_and_dice_selection(family):
    e = get_rsrcnn_cfg(model_zoo.row_config("E", family))
    plus = get_rsrcnn_cfg(model_zoo.row_config("plus", family))
    assert (e.INPUT.NEIGHBOR_SLICES, e.TEST.FLIP_TTA) == (False, False)
    assert (plus.INPUT.NEIGHBOR_SLICES, plus.TEST.FLIP_TTA) == (True, True)
    assert (e.SOLVER.BEST_CHECKPOINT, plus.SOLVER.BEST_CHECKPOINT) == ("val_loss", "val_dice")
    plus.INPUT.NEIGHBOR_SLICES, plus.TEST.FLIP_TTA = False, False
    plus.SOLVER.BEST_CHECKPOINT = "val_loss"
    assert plus.dump() == e.dump()  # nothing else differs


def test_row_config_refuses_unknown_rows_and_families():
    with pytest.raises(
        ConfigError, match=r"^tiny/A: row 'A' has no config; rows with one: B, C, D, E, plus$"
    ):
        model_zoo.row_config("A")
    with pytest.raises(
        ConfigError, match=r"^r50/E: unknown model family 'r50'; known: tiny, r101$"
    ):
        model_zoo.row_config("E", "r50")


def test_built_wheel_carries_the_configs_and_resolves_them(tmp_path):
    """A non-editable install: the wheel holds configs/ as rsrcnn_d2/configs, and the
    package run from it (not from this checkout) finds them, _BASE_ chains included."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "MANIFEST.in"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "configs", src / "configs", ignore=ignore)
    shutil.copytree(REPO / "rsrcnn_d2", src / "rsrcnn_d2", ignore=ignore)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path / "wheel"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "wheel").glob("rsrcnn_d2-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        packaged = sorted(
            n[len("rsrcnn_d2/configs/") :]
            for n in z.namelist()
            if n.startswith("rsrcnn_d2/configs/")
        )
        z.extractall(site)
    assert packaged == model_zoo.list_configs()

    code = (
        "from rsrcnn_d2 import get_rsrcnn_cfg, model_zoo\n"
        "path = model_zoo.row_config('E')\n"
        "cfg = get_rsrcnn_cfg(path)\n"
        "print(path, cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.DCRF.NAME, "
        "cfg.MODEL.RSRCNN.NORMALIZATION)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    packaged_e = site / "rsrcnn_d2" / "configs" / "PWML-Tiny" / "E_rsrcnn_R_18_FPN.yaml"
    assert run.stdout.split() == [str(packaged_e), "18", "DenseCRFPostprocessor", "zscore"]
