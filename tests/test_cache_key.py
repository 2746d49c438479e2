"""The DCRF prediction cache is keyed on what the outputs depend on: data and weights content."""

import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.tuning import load_prediction_cache, prediction_cache_key, save_prediction_cache

NAME = "cache_key_test_val"


def _slices(folder, values):
    """Slice files with the given constant values, and records pointing at them."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, v in enumerate(values):
        path = folder / f"s{i}.npy"
        np.save(path, np.full((4, 4), v, np.float32))
        records.append(
            {
                "file_name": str(path),
                "image_id": i,
                "height": 4,
                "width": 4,
                "annotations": [
                    {
                        "bbox": [0, 0, 1, 1],
                        "area": 1.0,
                        "segmentation": {"size": [4, 4], "counts": b"04"},
                    }
                ],
            }
        )
    return records


def _register(records):
    if NAME in DatasetCatalog.list():
        DatasetCatalog.remove(NAME)
    DatasetCatalog.register(NAME, lambda: [dict(r) for r in records])


@pytest.fixture
def cfg():
    return get_rsrcnn_cfg()


@pytest.fixture(autouse=True)
def _unregister():
    yield
    if NAME in DatasetCatalog.list():
        DatasetCatalog.remove(NAME)


def test_same_name_registered_with_other_files_is_a_mismatch(cfg, tmp_path):
    _register(_slices(tmp_path / "val", [1.0, 2.0]))
    key = prediction_cache_key(cfg, NAME, "")
    assert prediction_cache_key(cfg, NAME, "") == key  # deterministic
    cache = tmp_path / "probs.pt"
    save_prediction_cache(cache, [], key)
    assert load_prediction_cache(cache, prediction_cache_key(cfg, NAME, "")) == []

    _register(_slices(tmp_path / "test", [1.0, 2.0, 3.0]))  # another split, the same name
    other = prediction_cache_key(cfg, NAME, "")
    assert other["dataset"] == key["dataset"] and other != key
    with pytest.raises(PWMLDataError, match=r"probs\.pt: .*different dataset_sha256"):
        load_prediction_cache(cache, other)


def test_annotations_and_image_rewrites_change_the_key(cfg, tmp_path):
    records = _slices(tmp_path / "val", [1.0, 2.0])
    _register(records)
    key = prediction_cache_key(cfg, NAME, "")
    records[1]["annotations"] = []  # the same images, other truth
    assert prediction_cache_key(cfg, NAME, "")["dataset_sha256"] != key["dataset_sha256"]
    records[1]["annotations"] = _slices(tmp_path / "again", [0.0])[0]["annotations"]
    assert prediction_cache_key(cfg, NAME, "") == key
    st = os.stat(records[0]["file_name"])
    np.save(records[0]["file_name"], np.zeros((4, 4), np.float32))  # an image rewritten
    os.utime(records[0]["file_name"], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert prediction_cache_key(cfg, NAME, "")["dataset_sha256"] != key["dataset_sha256"]


def test_a_rewritten_neighbour_file_changes_the_key(cfg, tmp_path):
    """A 2.5-D model reads slices z-1, z+1 from the record's neighbor_file: those are inputs."""
    records = _slices(tmp_path / "val", [1.0])
    neighbours = tmp_path / "val" / "s0_neighbors.npy"
    np.save(neighbours, np.zeros((2, 4, 4), np.float32))
    records[0]["neighbor_file"] = str(neighbours)
    _register(records)
    key = prediction_cache_key(cfg, NAME, "")
    st = os.stat(neighbours)
    np.save(neighbours, np.ones((2, 4, 4), np.float32))
    os.utime(neighbours, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert prediction_cache_key(cfg, NAME, "")["dataset_sha256"] != key["dataset_sha256"]


def test_weights_overwritten_with_the_same_size_and_mtime_is_a_mismatch(cfg, tmp_path):
    _register(_slices(tmp_path / "val", [1.0]))
    weights = tmp_path / "model_final.pth"
    weights.write_bytes(b"A" * 1000)
    st = os.stat(weights)
    key = prediction_cache_key(cfg, NAME, str(weights))
    cache = tmp_path / "probs.pt"
    save_prediction_cache(cache, [], key)

    weights.write_bytes(b"B" * 1000)  # retrained into the same file
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(weights).st_size == st.st_size and os.stat(weights).st_mtime_ns == st.st_mtime_ns
    other = prediction_cache_key(cfg, NAME, str(weights))
    with pytest.raises(PWMLDataError, match=r"probs\.pt: .*different weights_sha256"):
        load_prediction_cache(cache, other)
    import hashlib

    assert other["weights_sha256"] == hashlib.sha256(b"B" * 1000).hexdigest()


def test_config_still_counts_but_not_the_crf(cfg, tmp_path):
    _register(_slices(tmp_path / "val", [1.0]))
    key = prediction_cache_key(cfg, NAME, "")
    crf = cfg.clone()
    crf.MODEL.DCRF.ITERATIONS = 7
    assert prediction_cache_key(crf, NAME, "") == key
    thr = cfg.clone()
    thr.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.123
    assert prediction_cache_key(thr, NAME, "")["config_sha256"] != key["config_sha256"]


def test_unregistered_dataset_and_old_or_broken_caches_are_clear_errors(cfg, tmp_path):
    with pytest.raises(PWMLDataError, match="no_such_split: no dataset registered"):
        prediction_cache_key(cfg, "no_such_split", "")
    import torch

    old = tmp_path / "old.pt"
    torch.save({"version": 2, "key": {}, "slices": []}, old)
    with pytest.raises(
        PWMLDataError, match=r"old\.pt: .*older cache format \(version 2, this is 4\)"
    ):
        load_prediction_cache(old, {})
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(PWMLDataError, match=r"broken\.pt: cannot read"):
        load_prediction_cache(broken, {})


class _Payload:
    """Would create ``path`` if unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_cache_holding_code_is_refused_and_never_runs(tmp_path):
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"version": 4, "key": {}, "slices": [_Payload(tmp_path / "pwned")]}, evil)
    with pytest.raises(PWMLDataError, match=r"evil\.pt: cannot read the DCRF prediction cache"):
        load_prediction_cache(evil, {})
    assert not (tmp_path / "pwned").exists()
