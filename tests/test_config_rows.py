"""Rows B-E differ from one another only in what Table 1 changes, and RS R-CNN+ ("plus") from
row E only in its 2.5-D input, flip TTA and checkpoint selection, for both config families."""

import pytest

import rsrcnn_d2

from conftest import CONFIGS, FULL_ROWS, TINY_ROWS

# what each row changes with respect to the previous one
INTENDED = {
    ("B", "C"): {
        "MODEL.PROPOSAL_GENERATOR.NAME",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN",
        "MODEL.RPN.POST_NMS_TOPK_TEST",
        "MODEL.ROI_HEADS.NAME",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
        "MODEL.ROI_MASK_HEAD.EXPANSION_K",
    },
    ("C", "D"): {"MODEL.ROI_MASK_HEAD.NAME"},
    ("D", "E"): {"MODEL.DCRF.NAME"},
    ("E", "plus"): {"INPUT.NEIGHBOR_SLICES", "TEST.FLIP_TTA", "SOLVER.BEST_CHECKPOINT"},
}
# what the CPU twins change with respect to the R-101 rows: size, and from-scratch training
TWIN_KEYS = {
    "MODEL.PIXEL_MEAN",
    "MODEL.RSRCNN.NORMALIZATION",
    "MODEL.RESNETS.DEPTH",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "MODEL.RESNETS.NORM",
    "MODEL.FPN.OUT_CHANNELS",
    "MODEL.FPN.NORM",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "MODEL.ROI_MASK_HEAD.CONV_DIM",
    "INPUT.MIN_SIZE_TRAIN",
    "INPUT.MAX_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TEST",
    "INPUT.MAX_SIZE_TEST",
    "SOLVER.BASE_LR",
    "SOLVER.MAX_ITER",
    "SOLVER.WARMUP_ITERS",
    "SOLVER.CHECKPOINT_PERIOD",
    "DATALOADER.NUM_WORKERS",
}


def _flat(node, prefix=""):
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def _diff(a, b):
    fa, fb = _flat(a), _flat(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


@pytest.mark.parametrize("family", [FULL_ROWS, TINY_ROWS], ids=["R-101", "CPU twins"])
@pytest.mark.parametrize("pair", sorted(INTENDED), ids=lambda p: "->".join(p))
def test_consecutive_rows_differ_only_in_intended_keys(family, pair):
    a, b = (rsrcnn_d2.get_rsrcnn_cfg(str(family[r])) for r in pair)
    assert _diff(a, b) == INTENDED[pair]


def test_both_families_have_the_same_rows():
    assert list(FULL_ROWS) == list(TINY_ROWS) == ["B", "C", "D", "E", "plus"]


@pytest.mark.parametrize("row", ["B", "C", "D", "E", "plus"])
def test_cpu_twin_differs_from_its_row_only_in_size_and_from_scratch_keys(row):
    full = rsrcnn_d2.get_rsrcnn_cfg(str(FULL_ROWS[row]))
    twin = rsrcnn_d2.get_rsrcnn_cfg(str(TINY_ROWS[row]))
    assert _diff(full, twin) <= TWIN_KEYS


def test_row_b_has_the_references_base_settings():
    b = rsrcnn_d2.get_rsrcnn_cfg(str(FULL_ROWS["B"]))
    assert b.MODEL.RPN.NMS_THRESH == 0.7 and b.MODEL.PROPOSAL_GENERATOR.NAME == "SingleNMSRPN"
    assert (b.MODEL.RPN.POST_NMS_TOPK_TRAIN, b.MODEL.RPN.POST_NMS_TOPK_TEST) == (2000, 1000)
    assert b.MODEL.RPN.CONV_DIMS == [512]
    h = b.MODEL.ROI_HEADS
    assert (h.BATCH_SIZE_PER_IMAGE, h.POSITIVE_FRACTION, h.CAP_NEGATIVES, h.PROPOSAL_APPEND_GT) == (
        200,
        0.33,
        True,
        False,
    )
    assert (h.NMS_THRESH_TEST, h.SCORE_THRESH_TEST) == (0.3, 0.7)
    clip = b.SOLVER.CLIP_GRADIENTS
    assert (clip.ENABLED, clip.CLIP_TYPE, clip.CLIP_VALUE) == (True, "global_norm", 5.0)
    assert b.MODEL.BACKBONE.FREEZE_AT == 0
    assert (b.SOLVER.MAX_ITER, b.SOLVER.IMS_PER_BATCH, b.SOLVER.BASE_LR) == (5000, 2, 0.001)
    p = b.SOLVER.PLATEAU
    assert (p.PERIOD, p.PATIENCE, p.FACTOR, p.MIN_DELTA, p.MONITOR) == (
        50,
        10,
        0.5,
        1e-4,
        "loss_rpn_cls",
    )
    assert b.MODEL.RSRCNN.NORMALIZATION == "minmax_uint8" and b.MODEL.PIXEL_MEAN == [56.49] * 3
    assert b.INPUT.CROP_TO_HEAD


@pytest.mark.parametrize(
    "config", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.relative_to(CONFIGS).as_posix()
)
def test_the_config_reader_gives_detectron2s_config(config):
    """Our reader of the _BASE_ chain (libyaml, one pass) against detectron2's own
    merge_from_file on every shipped config."""
    from detectron2.config import get_cfg

    from rsrcnn_d2.config import add_rsrcnn_config

    theirs = get_cfg()
    add_rsrcnn_config(theirs)
    theirs.merge_from_file(str(config), allow_unsafe=False)
    assert rsrcnn_d2.get_rsrcnn_cfg(str(config)).dump() == theirs.dump()


def test_a_chain_merges_mappings_key_by_key_and_resolves_bases_where_they_are_named(tmp_path):
    from rsrcnn_d2.config import load_config_chain

    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yaml").write_text("A: {X: 1, Y: 2}\nB: 1\n")
    (tmp_path / "sub" / "mid.yaml").write_text("_BASE_: ../root.yaml\nA: {Y: 3, Z: 4}\n")
    top = tmp_path / "top.yaml"
    top.write_text(f"_BASE_: {tmp_path / 'sub' / 'mid.yaml'}\nA: {{Z: 5}}\nC: [1, 2]\n")
    assert load_config_chain(str(top)) == {"A": {"X": 1, "Y": 3, "Z": 5}, "B": 1, "C": [1, 2]}
    (tmp_path / "remote.yaml").write_text("_BASE_: https://example.org/base.yaml\n")
    assert load_config_chain(str(tmp_path / "remote.yaml")) is None  # left to detectron2


def _detectron2s(config):
    from detectron2.config import get_cfg

    from rsrcnn_d2.config import add_rsrcnn_config

    cfg = get_cfg()
    add_rsrcnn_config(cfg)
    cfg.merge_from_file(str(config), allow_unsafe=False)
    return cfg


def test_bases_named_through_a_link_or_as_a_list_read_as_detectron2_reads_them(tmp_path):
    """A relative base is relative to the config as named (a link's own folder, not its
    target's); a list of bases is left to detectron2. Both as its merge_from_file."""
    for folder, lr in (("real", 0.1), ("other", 0.9)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "b.yaml").write_text(
            f"_BASE_: {TINY_ROWS['B']}\nSOLVER:\n  BASE_LR: {lr}\n"
        )
    (tmp_path / "real" / "top.yaml").write_text("_BASE_: b.yaml\nSEED: 3\n")
    (tmp_path / "other" / "link.yaml").symlink_to(tmp_path / "real" / "top.yaml")
    linked = rsrcnn_d2.get_rsrcnn_cfg(str(tmp_path / "other" / "link.yaml"))
    assert linked.SOLVER.BASE_LR == 0.9 and linked.SEED == 3
    assert linked.dump() == _detectron2s(tmp_path / "other" / "link.yaml").dump()
    (tmp_path / "c.yaml").write_text("SEED: 4\n")
    both = tmp_path / "both.yaml"
    both.write_text("_BASE_: [real/b.yaml, c.yaml]\nINPUT:\n  MIN_SIZE_TEST: 96\n")
    assert rsrcnn_d2.get_rsrcnn_cfg(str(both)).dump() == _detectron2s(both).dump()


def test_a_yaml_error_is_told_as_pyyamls_own_parser_tells_it(tmp_path):
    from rsrcnn_d2.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_BASE_: {TINY_ROWS['B']}\nSOLVER: a: b\n")
    with pytest.raises(ConfigError) as e:
        rsrcnn_d2.get_rsrcnn_cfg(str(bad))
    assert str(e.value) == f"{bad}: not valid YAML (line 2): mapping values are not allowed here"
