"""The package registers its components on first use and every YAML in configs/ loads."""

import subprocess
import sys

import pytest
from detectron2.modeling import META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY

import rsrcnn_d2
from rsrcnn_d2.errors import ConfigError
from rsrcnn_d2.model_zoo import row_config

from conftest import CONFIGS


def test_first_use_registers_components():
    # the first access to a name of the package registers everything (import alone: nothing)
    assert rsrcnn_d2.DCRF_REGISTRY.get("DenseCRFPostprocessor").__name__ == "DenseCRFPostprocessor"
    assert META_ARCH_REGISTRY.get("RSRCNN").__name__ == "RSRCNN"
    assert PROPOSAL_GENERATOR_REGISTRY.get("HRPN").__name__ == "HRPN"
    assert RPN_HEAD_REGISTRY.get("HRPNHead").__name__ == "HRPNHead"
    assert ROI_HEADS_REGISTRY.get("ExpandedROIHeads").__name__ == "ExpandedROIHeads"
    assert (
        ROI_HEADS_REGISTRY.get("ReferenceSamplingROIHeads").__name__ == "ReferenceSamplingROIHeads"
    )
    assert PROPOSAL_GENERATOR_REGISTRY.get("SingleNMSRPN").__name__ == "SingleNMSRPN"
    assert ROI_MASK_HEAD_REGISTRY.get("LRSNetHead").__name__ == "LRSNetHead"


_FRESH = """
import sys
import rsrcnn_d2
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "detectron2"}))
from rsrcnn_d2.config import get_rsrcnn_cfg
cfg = get_rsrcnn_cfg()
from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY
print(META_ARCH_REGISTRY.get("RSRCNN").__name__, "pwml_train" in DatasetCatalog.list())
"""


def test_import_is_light_and_a_config_registers_the_components():
    """``import rsrcnn_d2`` loads neither torch nor detectron2 (the programs' fast --help); a
    config from rsrcnn_d2.config registers the components and datasets it may name, without
    the package's other names, and without detectron2's import-time warnings."""
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", _FRESH], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["[]", "RSRCNN True"]
    assert "torch.jit.script" not in proc.stderr


def test_add_config_defaults():
    cfg = rsrcnn_d2.get_rsrcnn_cfg()
    assert cfg.MODEL.ROI_MASK_HEAD.EXPANSION_K == 1.3
    assert "POST_NMS_TOPK_TRAIN" not in cfg.MODEL.HRPN  # MODEL.RPN's keys count, as everywhere
    assert cfg.MODEL.ROI_HEADS.CAP_NEGATIVES and cfg.MODEL.ROI_BOX_HEAD.EXPAND_PROPOSALS
    assert cfg.MODEL.RSRCNN.NORMALIZATION == "zscore" and not cfg.INPUT.CROP_TO_HEAD
    assert (
        cfg.MODEL.DCRF.GAUSSIAN_SXY,
        cfg.MODEL.DCRF.BILATERAL_SXY,
        cfg.MODEL.DCRF.BILATERAL_SRGB,
        cfg.MODEL.DCRF.ITERATIONS,
    ) == (2.0, 4.0, 6.0, 1)
    assert cfg.MODEL.DCRF.NAME == ""


ALL_YAMLS = sorted(CONFIGS.rglob("*.yaml"))


def test_there_are_configs():
    assert len(ALL_YAMLS) >= 10


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_loads(path):
    cfg = rsrcnn_d2.get_rsrcnn_cfg(str(path))
    assert cfg.MODEL.META_ARCHITECTURE == "RSRCNN"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1


def _flat(node, prefix=""):
    out = {}
    for key, value in node.items():
        out.update(
            _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
        )
    return out


# the keys Table 1's rows B-E set differently; every other key is the same in all four
COMPONENT_KEYS = {
    "MODEL.PROPOSAL_GENERATOR.NAME",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "MODEL.ROI_MASK_HEAD.EXPANSION_K",
    "MODEL.ROI_MASK_HEAD.NAME",
    "MODEL.DCRF.NAME",
}


@pytest.mark.parametrize("family", ["r101", "tiny"])
def test_rows_differ_only_in_components(family):
    rows = {row: rsrcnn_d2.get_rsrcnn_cfg(row_config(row, family)) for row in "BCDE"}
    flat = {row: _flat(cfg) for row, cfg in rows.items()}
    keys = set().union(*flat.values())
    assert all(set(f) == keys for f in flat.values())  # no row adds a key
    differing = {k for k in keys if len({repr(f[k]) for f in flat.values()}) > 1}
    assert differing == COMPONENT_KEYS
    b, c, d, e = rows["B"], rows["C"], rows["D"], rows["E"]
    assert (b.MODEL.PROPOSAL_GENERATOR.NAME, b.MODEL.ROI_HEADS.NAME) == (
        "SingleNMSRPN",
        "ReferenceSamplingROIHeads",
    )
    assert (c.MODEL.PROPOSAL_GENERATOR.NAME, c.MODEL.ROI_HEADS.NAME) == ("HRPN", "ExpandedROIHeads")
    assert c.MODEL.ROI_MASK_HEAD.EXPANSION_K == 1.3
    assert d.MODEL.ROI_MASK_HEAD.NAME == "LRSNetHead" and c.MODEL.ROI_MASK_HEAD.NAME != "LRSNetHead"
    assert e.MODEL.DCRF.NAME == "DenseCRFPostprocessor" and d.MODEL.DCRF.NAME == ""
    assert b.MODEL.RESNETS.DEPTH == e.MODEL.RESNETS.DEPTH == {"r101": 101, "tiny": 18}[family]


def test_unknown_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{CONFIGS / "Base-RSRCNN.yaml"}"\nMODEL:\n  DCRF:\n    NOT_A_KEY: 1\n')
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key MODEL\.DCRF\.NOT_A_KEY"):
        rsrcnn_d2.get_rsrcnn_cfg(str(bad))


def test_unknown_override_is_rejected():
    with pytest.raises(ConfigError, match="MODEL.ROI_MASK_HEAD.EXPANSION_Q"):
        rsrcnn_d2.get_rsrcnn_cfg("", ["MODEL.ROI_MASK_HEAD.EXPANSION_Q", "2"])
