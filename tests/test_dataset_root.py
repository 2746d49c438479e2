"""--dataset-root [NAME=]DIR: registering prepared cohorts by hand, in the tools and their
workers."""

import json
import os
import shutil

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.register import parse_dataset_root, register_all_pwml, register_dataset_roots

from conftest import REPO, TINY_ROWS
from test_data_fixtures import cohort, converted  # noqa: F401


@pytest.fixture(autouse=True)
def _restore_default_registration():
    yield
    register_all_pwml()


def test_parse_name_and_default_prefix(tmp_path):
    assert parse_dataset_root(f"mine={tmp_path}") == ("mine", tmp_path)
    assert parse_dataset_root(str(tmp_path / "cohortB")) == ("cohortB", tmp_path / "cohortB")
    # a left part that is not a name: the whole spec is the folder
    assert parse_dataset_root("./x=y/cohort") == ("cohort", tmp_path.__class__("./x=y/cohort"))
    with pytest.raises(PWMLDataError, match="not usable as a dataset name prefix"):
        parse_dataset_root(str(tmp_path / "my cohort"))


def test_registers_two_roots_under_their_prefixes(converted, tmp_path):
    second = tmp_path / "cohortB"
    shutil.copytree(converted, second)
    names = register_dataset_roots([f"first={converted}", str(second)])
    splits = json.loads((converted / "splits.json").read_text())
    assert names[:4] == ["first_all", "first_train", "first_val", "first_test"]
    assert "cohortB_fold4_val" in names and len(names) == 2 * (4 + 2 * len(splits["folds"]))
    assert MetadataCatalog.get("cohortB_train").pwml_root == str(second)
    train = DatasetCatalog.get("cohortB_train")
    assert {d["file_name"].split(os.sep)[-2] for d in train} == set(splits["train"])
    # the same root again under the same prefix is harmless
    assert register_dataset_roots([f"first={converted}"])[0] == "first_all"


def test_refuses_missing_unprepared_and_clashing_roots(converted, tmp_path):
    with pytest.raises(PWMLDataError, match=r"nowhere: dataset root does not exist"):
        register_dataset_roots([str(tmp_path / "nowhere")])
    (tmp_path / "raw").mkdir()
    with pytest.raises(PWMLDataError, match=r"raw: not a prepared PWML dataset \(no splits.json\)"):
        register_dataset_roots([str(tmp_path / "raw")])
    other = tmp_path / "other"
    shutil.copytree(converted, other)
    with pytest.raises(PWMLDataError, match=r"other: dataset prefix 'x' is also given to "):
        register_dataset_roots([f"x={converted}", f"x={other}"])
    assert "x_train" not in DatasetCatalog.list()  # nothing registered by a refused call
    register_dataset_roots([f"y={converted}"])
    with pytest.raises(
        PWMLDataError,
        match=r"other: dataset name y_all is already registered for "
        r"the prepared dataset .*; choose another prefix",
    ):
        register_dataset_roots([f"y={other}"])
    with pytest.raises(
        PWMLDataError,
        match=r"dataset name coco_2017_train is already registered for "
        r"a dataset that is not PWML's",
    ):
        register_dataset_roots([f"coco_2017={other}"])


def test_takes_over_the_placeholder_pwml_names(converted, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "empty"))
    register_all_pwml()  # the import-time names, pointing nowhere
    register_dataset_roots([f"pwml={converted}"])
    assert MetadataCatalog.get("pwml_train").pwml_root == str(converted)


def test_an_explicit_root_takes_over_the_environments_prepared_pwml(
    converted, tmp_path, monkeypatch
):
    """The command line wins over $DETECTRON2_DATASETS: a driver's child registers its own
    cohort as pwml_* whatever the user's environment points to."""
    from rsrcnn_d2.data.register import DatasetRoot

    env_root = tmp_path / "env"
    shutil.copytree(converted, env_root / "pwml")
    other = tmp_path / "other"
    shutil.copytree(converted, other)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(env_root))
    register_all_pwml()
    assert MetadataCatalog.get("pwml_train").pwml_root == str(env_root / "pwml")
    root = DatasetRoot.parse(f"pwml={other}")
    assert root == DatasetRoot("pwml", other.absolute()) and root.spec == f"pwml={other}"
    root.register()
    assert MetadataCatalog.get("pwml_train").pwml_root == str(other)
    with pytest.raises(PWMLDataError, match="already registered for the prepared dataset"):
        register_dataset_roots([f"pwml={converted}"])  # another explicit root: still refused


def test_train_net_refuses_an_unprepared_root_with_exit_2(tmp_path, capsys):
    from rsrcnn_d2.cli.train_net import cli  # the program tools/train_net.py runs, in-process

    (tmp_path / "raw").mkdir()
    code = cli(
        [
            "--config-file",
            str(TINY_ROWS["B"]),
            "--dataset-root",
            str(tmp_path / "raw"),
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert err.startswith(f"train_net.py: error: {tmp_path / 'raw'}: not a prepared PWML dataset")
    assert not (tmp_path / "out").exists()  # refused before any worker started


def _tune_dcrf():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tune_dcrf_tool", REPO / "tools" / "tune_dcrf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tune_dcrf_tunes_on_a_dataset_root(converted, tmp_path, capsys):
    out = tmp_path / "tuned.yaml"
    code = _tune_dcrf().tune_dcrf_alias(
        [
            "--config-file",
            str(TINY_ROWS["E"]),
            "--dataset-root",
            f"tcohort={converted}",
            "--dataset",
            "tcohort_val",
            "--output",
            str(out),
            "--init-points",
            "1",
            "--n-iter",
            "1",
            "MODEL.DEVICE",
            "cpu",
            "INPUT.CROP_TO_HEAD",
            "False",
            "INPUT.MIN_SIZE_TEST",
            "64",
            "INPUT.MAX_SIZE_TEST",
            "64",
        ]
    )
    # the root's dataset was found and scored; a random network finds nothing to calibrate,
    # which the tool says (exit 1) instead of writing a "tuned" config
    assert code == 1 and not out.exists()
    trials = json.loads(out.with_suffix(".json").read_text())
    assert trials["dataset"] == "tcohort_val" and trials["best"] is None
    captured = capsys.readouterr()
    strict = "strict mean Dice (slices with a lesion in truth or prediction)"
    assert f"{strict} on tcohort_val" in captured.out
    assert "tcohort_val: none of 3 operating points scores above" in captured.err
    assert (
        _tune_dcrf().tune_dcrf_alias(
            [
                "--config-file",
                str(TINY_ROWS["E"]),
                "--dataset-root",
                str(tmp_path / "gone"),
                "--dataset",
                "gone_val",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == (
        f"tune_operating_point: error: {tmp_path / 'gone'}: dataset root does not exist"
    )
