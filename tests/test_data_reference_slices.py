"""The reference implementation's PNG slice folders (real data, read in place; skipped if
absent)."""

import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from PIL import Image

from rsrcnn_d2.data.convert import convert_pwml
from rsrcnn_d2.data.mapper import PWMLDatasetMapper
from rsrcnn_d2.data.register import register_pwml_root

from test_data_fixtures import SHARED_SLICES

pytestmark = pytest.mark.skipif(
    not (SHARED_SLICES / "input").is_dir(), reason=f"reference slices not found at {SHARED_SLICES}"
)


def test_reference_slices_round_trip(tmp_path):
    summary = convert_pwml(SHARED_SLICES, tmp_path / "ref", workers=1)
    assert summary["num_subjects"] == 5 and summary["num_images"] == 10
    assert summary["axis"] is None
    splits = json.loads((tmp_path / "ref" / "splits.json").read_text())
    assert len(splits["folds"]) == 5 and all(len(f["val"]) == 1 for f in splits["folds"])
    register_pwml_root(tmp_path / "ref", "reftest")
    mapper = PWMLDatasetMapper(True, augmentations=[])
    for record in DatasetCatalog.get("reftest_all"):
        out = mapper(record)
        src = SHARED_SLICES / "gt" / record["subject"] / f"{record['slice_index']}.png"
        gt = np.asarray(Image.open(src)) > 0
        np.testing.assert_array_equal(out["instances"].gt_masks.tensor.any(0).numpy(), gt)
        img = np.asarray(Image.open(record["source_file"]), dtype=np.float32)
        np.testing.assert_array_equal(out["image"][0].numpy(), img)  # 8-bit values as stored
        assert record["spacing"] is None
