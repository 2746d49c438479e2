"""Conversion: NIfTI / slice folders -> COCO JSON + slice files, and back through the mapper."""

import json

import nibabel as nib
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog

from rsrcnn_d2.data.coco import lesion_annotations
from rsrcnn_d2.data.convert import convert_pwml, resplit_pwml
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.mapper import PWMLDatasetMapper
from rsrcnn_d2.data.nifti import put_slice, volume_slice
from rsrcnn_d2.data.register import register_pwml_root
from rsrcnn_d2.data.sources import discover_subjects

from test_data_fixtures import cohort, converted, nnunet_case, save_nifti  # noqa: F401


def _coco(root, split="all"):
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def test_round_trip_volume_to_mapper_masks(tmp_path):
    """A non-canonical (LAS) volume: every lesion voxel comes back, in canonical orientation."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 3000, (20, 24, 5)).astype(np.int16)
    mask = np.zeros((20, 24, 5), np.uint8)
    mask[3:6, 4:6, 1] = 1
    mask[10, 10, 1] = mask[11, 11, 1] = 1  # diagonal pair: one lesion
    mask[15:18, 2, 3] = 1
    affine = np.diag([-0.8, 0.9, 2.0, 1.0])  # x flipped: as_closest_canonical must act
    nnunet_case(tmp_path / "raw", "s1", image, mask, affine)
    nnunet_case(tmp_path / "raw", "s2", image, mask, affine)
    summary = convert_pwml(tmp_path / "raw", tmp_path / "out", workers=1, num_folds=0)
    assert summary["num_images"] == 4 and summary["num_annotations"] == 6

    canon_img = nib.as_closest_canonical(nib.Nifti1Image(image, affine))
    canon_msk = nib.as_closest_canonical(nib.Nifti1Image(mask, affine))
    register_pwml_root(tmp_path / "out", "rt", num_folds=0)
    records = DatasetCatalog.get("rt_all")
    mapper = PWMLDatasetMapper(True, augmentations=[])
    rebuilt = np.zeros(canon_msk.shape, np.uint8)
    for r in records:
        out = mapper(r)
        k = r["slice_index"]
        expected = volume_slice(np.asanyarray(canon_msk.dataobj), 2, k)
        union = out["instances"].gt_masks.tensor.any(0).numpy().astype(np.uint8)
        np.testing.assert_array_equal(union, expected)
        raw = volume_slice(np.asanyarray(canon_img.dataobj), 2, k).astype(np.float32)
        assert out["image"].shape == (3, *raw.shape)
        np.testing.assert_array_equal(out["image"][1].numpy(), raw)  # raw: no z-scoring
        if r["subject"] == "s1":
            put_slice(rebuilt, 2, k, union)
        assert r["spacing"] == [0.9, 0.8, 2.0]
    np.testing.assert_array_equal(rebuilt, np.asanyarray(canon_msk.dataobj))


def test_lesion_annotations_connectivity():
    mask = np.zeros((8, 8), np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # corner-touching: one lesion (8-connectivity)
    mask[5, 5] = 1  # isolated single pixel
    mask[1, 5:7] = 1
    annos = lesion_annotations(mask)
    assert len(annos) == 3
    assert sorted(a["area"] for a in annos) == [1, 2, 2]
    decoded = sum(mask_util.decode(a["segmentation"]) for a in annos)
    np.testing.assert_array_equal(decoded, mask)
    diag = next(a for a in annos if a["bbox"][:2] == [1.0, 1.0])
    assert diag["bbox"] == [1.0, 1.0, 2.0, 2.0] and diag["iscrowd"] == 0
    assert lesion_annotations(np.zeros((4, 4), np.uint8)) == []


def test_output_layout_and_counts(converted, cohort):
    summary = json.loads((converted / "conversion.json").read_text())
    coco = _coco(converted)
    assert summary["num_images"] == len(coco["images"]) > 0
    assert all(
        len([a for a in coco["annotations"] if a["image_id"] == im["id"]]) > 0
        for im in coco["images"]
    )  # lesion slices only
    im = coco["images"][0]
    assert {"subject", "slice_index", "source_file", "spacing", "height", "width"} <= set(im)
    assert (converted / "images" / im["file_name"]).exists()
    assert coco["categories"] == [{"id": 1, "name": "lesion", "supercategory": "lesion"}]
    # lesion count = 2-D components of the source masks
    total = 0
    for s in discover_subjects(cohort):
        m = np.asanyarray(nib.load(str(s.mask)).dataobj)
        total += sum(len(lesion_annotations(m[:, :, k])) for k in range(m.shape[2]))
    assert total == len(coco["annotations"])


def test_all_slices_and_workers_give_same_output(cohort, tmp_path):
    a = convert_pwml(cohort, tmp_path / "a", lesion_slices_only=False, workers=1)
    b = convert_pwml(cohort, tmp_path / "b", lesion_slices_only=False, workers=2)
    assert a == b and a["num_images"] == 6 * 6
    assert _coco(tmp_path / "a") == _coco(tmp_path / "b")
    assert (tmp_path / "a" / "splits.json").read_text() == (
        tmp_path / "b" / "splits.json"
    ).read_text()


def test_rerun_replaces_output_and_refuses_foreign_folder(cohort, tmp_path):
    out = tmp_path / "out"
    convert_pwml(cohort, out, workers=1, seed=0)
    (out / "images" / "stale.npy").write_bytes(b"x")  # not the converter's: kept (issue 11)
    convert_pwml(cohort, out, workers=1, seed=1)
    assert (out / "images" / "stale.npy").read_bytes() == b"x"
    assert json.loads((out / "splits.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging / old folders left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(PWMLDataError, match="mine"):
        convert_pwml(cohort, foreign, workers=1)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_split_files_partition_the_images(converted):
    splits = json.loads((converted / "splits.json").read_text())
    all_ids = {im["id"] for im in _coco(converted)["images"]}
    parts = [{im["id"] for im in _coco(converted, s)["images"]} for s in ("train", "val", "test")]
    assert set().union(*parts) == all_ids and sum(map(len, parts)) == len(all_ids)
    for i in range(len(splits["folds"])):
        val = {im["subject"] for im in _coco(converted, f"fold{i}_val")["images"]}
        train = {im["subject"] for im in _coco(converted, f"fold{i}_train")["images"]}
        assert val == set(splits["folds"][i]["val"]) and not val & train


def test_the_split_names_written_are_the_names_registered(converted, tmp_path):
    """One list of split names: the converter's files, its summary and the registered names."""
    import shutil

    from rsrcnn_d2.data.register import pwml_split_names
    from rsrcnn_d2.data.splits import split_names

    assert split_names(2) == [
        "all",
        "train",
        "val",
        "test",
        "fold0_train",
        "fold0_val",
        "fold1_train",
        "fold1_val",
    ]
    root = tmp_path / "copy"
    shutil.copytree(converted, root)
    summary = json.loads((root / "conversion.json").read_text())
    written = sorted(
        p.name[len("instances_") : -len(".json")] for p in (root / "annotations").iterdir()
    )
    assert summary["splits"] == pwml_split_names(root) == split_names(5)
    assert written == sorted(split_names(5))
    resplit_pwml(root, seed=7, num_folds=2)
    written = sorted(
        p.name[len("instances_") : -len(".json")] for p in (root / "annotations").iterdir()
    )
    assert (
        json.loads((root / "conversion.json").read_text())["splits"]
        == pwml_split_names(root)
        == split_names(2)
    )
    assert written == sorted(split_names(2))


def test_resplit_rewrites_splits(converted, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(converted, root)
    resplit_pwml(root, seed=7, num_folds=2)
    assert json.loads((root / "splits.json").read_text())["seed"] == 7
    assert not (root / "annotations" / "instances_fold4_val.json").exists()
    assert (root / "annotations" / "instances_fold1_val.json").exists()


def test_pair_lists_and_coronal_axis(tmp_path):
    image = np.arange(10 * 12 * 4, dtype=np.float32).reshape(10, 12, 4)
    mask = np.zeros((10, 12, 4), np.uint8)
    mask[2, 3, 1] = mask[7, 5, 2] = 1
    save_nifti(tmp_path / "a_t1.nii", image)
    save_nifti(tmp_path / "a_mask.nii", mask)
    (tmp_path / "pairs.csv").write_text("subject,image,mask\nA,a_t1.nii,a_mask.nii\n")
    (tmp_path / "pairs.json").write_text(
        json.dumps([{"subject": "A", "image": "a_t1.nii", "mask": "a_mask.nii"}])
    )
    s1 = convert_pwml(tmp_path / "pairs.csv", tmp_path / "o1", workers=1)
    s2 = convert_pwml(tmp_path / "pairs.json", tmp_path / "o2", workers=1, axis="coronal")
    assert s1["num_images"] == 2 and s1["axis"] == "axial"
    coco = _coco(tmp_path / "o2")
    assert s2["axis"] == "coronal" and {im["slice_index"] for im in coco["images"]} == {3, 5}
    assert (coco["images"][0]["height"], coco["images"][0]["width"]) == (4, 10)


def test_resplit_keeps_the_fold_count_and_a_small_cohort_has_none(tmp_path):
    """Without num_folds, resplit keeps the dataset's folds; a 3-subject cohort converted
    without folds is re-split without any (it used to ask for 5 folds of 3 subjects)."""
    from test_data_fixtures import small_cohort

    convert_pwml(small_cohort(tmp_path / "raw", n=3), tmp_path / "pwml", seed=0)
    root = tmp_path / "pwml"
    assert json.loads((root / "splits.json").read_text())["folds"] == []
    splits = resplit_pwml(root, seed=3)
    assert splits["folds"] == [] and json.loads((root / "splits.json").read_text())["seed"] == 3
    resplit_pwml(root, seed=4, num_folds=3)
    assert len(resplit_pwml(root, seed=5)["folds"]) == 3  # the dataset's number of folds


def test_pair_list_problems_name_the_csv_line(tmp_path):
    """A CSV row is named by its line (the header is line 1), a JSON item by its entry."""
    from rsrcnn_d2.data.sources import pair_list_subjects

    (tmp_path / "pairs.csv").write_text("subject,image,mask\nA,a.nii,a_m.nii\nB,b.nii\n")
    problems = []
    assert pair_list_subjects(tmp_path / "pairs.csv", problems) == []
    messages = [str(p) for p in problems]
    assert any("listed in" in m and "(line 2) but missing" in m for m in messages), messages
    assert any("line 3 needs keys subject, image, mask" in m for m in messages), messages
    (tmp_path / "pairs.json").write_text(json.dumps([{"subject": "A"}]))
    problems = []
    pair_list_subjects(tmp_path / "pairs.json", problems)
    assert "entry 0 needs keys" in str(problems[0])
