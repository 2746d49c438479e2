"""Registration: import-time names, lazy loading, metadata, configs that name the splits."""

import json

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.register import (
    PWML_METADATA,
    pwml_split_names,
    register_all_pwml,
    register_pwml_root,
    register_pwml_split,
)
from rsrcnn_d2.model_zoo import get_config_file

from test_data_fixtures import cohort, converted  # noqa: F401


@pytest.fixture(autouse=True)
def _restore_default_registration():
    yield
    register_all_pwml()  # tests below re-point pwml_*; leave the import-time state behind


def test_import_registers_default_names():
    import rsrcnn_d2.data  # noqa: F401

    for name in ["pwml_train", "pwml_val", "pwml_test"] + [
        f"pwml_fold{i}_{p}" for i in range(5) for p in ("train", "val")
    ]:
        assert name in DatasetCatalog.list()
        assert MetadataCatalog.get(name).thing_classes == ["lesion"]
        assert MetadataCatalog.get(name).evaluator_type == "pwml"


def test_missing_root_registers_and_fails_only_on_use(tmp_path):
    names = register_all_pwml(tmp_path / "nowhere" / "pwml")
    assert "pwml_train" in names
    with pytest.raises(PWMLDataError, match="prepare_pwml"):
        DatasetCatalog.get("pwml_train")


def test_register_converted_root(converted):
    names = register_pwml_root(converted, "regtest")
    assert names == [f"regtest_{s}" for s in pwml_split_names(converted)]
    splits = json.loads((converted / "splits.json").read_text())
    train = DatasetCatalog.get("regtest_train")
    assert {r["subject"] for r in train} == set(splits["train"])
    r = train[0]
    assert {
        "file_name",
        "height",
        "width",
        "image_id",
        "subject",
        "slice_index",
        "annotations",
    } <= set(r)
    assert all(a["category_id"] == 0 for a in r["annotations"])
    meta = MetadataCatalog.get("regtest_fold2_val")
    assert meta.thing_classes == PWML_METADATA["thing_classes"] and meta.split == "fold2_val"
    # registering again (e.g. a re-converted root) replaces, never raises
    register_pwml_split("regtest_train", converted, "val")
    assert {r["subject"] for r in DatasetCatalog.get("regtest_train")} == set(splits["val"])
    with pytest.raises(ValueError, match="already"):
        register_pwml_split("regtest_train", converted, "val", overwrite=False)


def test_env_root_is_registered_by_import(converted, monkeypatch):
    """$DETECTRON2_DATASETS/pwml: the layout prepare_pwml.py writes by default."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(converted.parent))
    names = register_all_pwml()
    num_images = json.loads((converted / "conversion.json").read_text())["num_images"]
    assert len(DatasetCatalog.get("pwml_all")) == num_images
    assert names == [f"pwml_{s}" for s in pwml_split_names(converted)]
    assert register_all_pwml() == names  # idempotent: the same names, the same data
    assert len(DatasetCatalog.get("pwml_all")) == num_images


@pytest.mark.parametrize(
    "content",
    ['{"folds": [["PWML_0', "{}", "[]", '{"folds": 3}'],
    ids=["truncated", "no-folds", "a-list", "folds-not-a-list"],
)
def test_damaged_splits_json_registers_default_names(tmp_path, content):
    """A damaged splits.json under $DETECTRON2_DATASETS must not break ``import rsrcnn_d2``:
    the default names are registered and the splits that exist still load."""
    root = tmp_path / "pwml"
    (root / "annotations").mkdir(parents=True)
    (root / "splits.json").write_text(content)
    names = register_all_pwml(root)
    assert names == [f"pwml_{s}" for s in pwml_split_names(None)] and "pwml_fold4_val" in names
    with pytest.raises(PWMLDataError, match="instances_train.json: no prepared PWML split"):
        DatasetCatalog.get("pwml_train")
    # named by hand, the same file is an error that names it
    with pytest.raises(PWMLDataError, match=r"splits\.json"):
        register_pwml_root(root, "damaged")


def test_yaml_selects_splits(converted):
    from detectron2.data import get_detection_dataset_dicts

    from rsrcnn_d2 import get_rsrcnn_cfg

    register_pwml_root(converted, "yamltest")
    cfg = get_rsrcnn_cfg(
        get_config_file("PWML-Tiny/E_rsrcnn_R_18_FPN.yaml"),
        ["DATASETS.TRAIN", "('yamltest_fold0_train',)", "DATASETS.TEST", "('yamltest_fold0_val',)"],
    )
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN)
    val = {r["subject"] for r in get_detection_dataset_dicts(cfg.DATASETS.TEST)}
    assert dicts and not {r["subject"] for r in dicts} & val
