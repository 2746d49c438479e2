"""The mapper and the paper's augmentation: aligned image and masks, no test-time augmentation."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from hypothesis import given, settings
from hypothesis import strategies as st

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.data.augmentation import RandomWidthScale, build_pwml_augmentations
from rsrcnn_d2.data.coco import lesion_annotations
from rsrcnn_d2.data.fileio import save_slice
from rsrcnn_d2.data.mapper import PWMLDatasetMapper, build_pwml_test_loader, build_pwml_train_loader
from rsrcnn_d2.data.register import register_pwml_root
from rsrcnn_d2.model_zoo import get_config_file

from test_data_fixtures import cohort, converted  # noqa: F401

TINY = get_config_file("PWML-Tiny/E_rsrcnn_R_18_FPN.yaml")  # found from any working directory


def _record(tmp_path, mask, image=None, name="s.npy"):
    """A dataset dict whose image is the mask itself (scaled): alignment is then checkable."""
    image = mask.astype(np.float32) * 100.0 if image is None else image
    save_slice(tmp_path / name, image)
    annos = lesion_annotations(mask)
    for a in annos:
        a.update(bbox_mode=0, category_id=0)
    return {
        "file_name": str(tmp_path / name),
        "height": mask.shape[0],
        "width": mask.shape[1],
        "image_id": 1,
        "subject": "x",
        "slice_index": 3,
        "annotations": annos,
    }


def _blobs(h=48, w=56):
    mask = np.zeros((h, w), np.uint8)
    mask[10:18, 6:16] = 1
    mask[30:40, 36:50] = 1
    mask[22:26, 26:30] = 1
    return mask


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_augmentation_keeps_image_and_masks_aligned(tmp_path_factory, seed):
    tmp = tmp_path_factory.mktemp("aug")
    mask = _blobs()
    mapper = PWMLDatasetMapper(True, augmentations=[RandomWidthScale(), T.RandomFlip()])
    np.random.seed(seed)  # detectron2 augmentations draw from numpy's global RNG
    out = mapper(_record(tmp, mask))
    image = out["image"][0].numpy()
    masks = out["instances"].gt_masks.tensor.numpy()
    assert image.shape == mask.shape and masks.shape[1:] == mask.shape  # crop/pad back
    union = masks.any(0)
    bright = image > 50  # the image was the mask x 100: bilinear vs nearest differ by <= 1 px
    assert (union ^ bright).sum() <= 0.15 * union.sum()
    for m, box in zip(masks, out["instances"].gt_boxes.tensor.numpy()):
        ys, xs = np.nonzero(m)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_flip_only_is_exact(tmp_path):
    mask = _blobs()
    mapper = PWMLDatasetMapper(True, augmentations=[T.RandomFlip(prob=1.0)])
    out = mapper(_record(tmp_path, mask))
    np.testing.assert_array_equal(out["instances"].gt_masks.tensor.any(0).numpy(), mask[:, ::-1])
    np.testing.assert_array_equal(out["image"][2].numpy(), mask[:, ::-1] * 100.0)


def test_width_scale_range_and_size():
    aug = RandomWidthScale((0.85, 1.15))
    widths = set()
    image = np.zeros((20, 100), np.float32)
    for seed in range(40):
        np.random.seed(seed)
        tfm = aug.get_transform(image)
        widths.add(tfm.transforms[0].new_w)
        assert tfm.apply_image(image).shape == (20, 100)
    assert min(widths) >= 85 and max(widths) <= 115 and len(widths) > 10


def test_mapper_output_no_zscore_three_channels(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.uniform(200, 1800, (40, 40)).astype(np.float32)
    rec = _record(tmp_path, _blobs(40, 40), image=raw)
    cfg = get_rsrcnn_cfg(TINY, ["INPUT.MIN_SIZE_TEST", "0"])
    out = PWMLDatasetMapper(cfg, False)(rec)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, 40, 40)
    for c in range(3):
        np.testing.assert_array_equal(out["image"][c].numpy(), raw)  # raw, not z-scored
    assert "instances" not in out and "annotations" not in out
    np.testing.assert_array_equal(out["gt_mask"].numpy(), _blobs(40, 40))
    assert (out["subject"], out["slice_index"], out["file_name"]) == ("x", 3, rec["file_name"])
    assert (out["height"], out["width"]) == (40, 40)


def test_test_mapping_is_deterministic_and_resizes_like_detectron2(tmp_path):
    rec = _record(tmp_path, _blobs(90, 100))
    cfg = get_rsrcnn_cfg(
        TINY,
        ["INPUT.CROP_TO_HEAD", "False", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"],
    )
    mapper = PWMLDatasetMapper(cfg, False)
    a, b = mapper(rec), mapper(rec)
    assert torch.equal(a["image"], b["image"])
    assert a["image"].shape == (3, 115, 128)  # short edge 90 -> 128, long edge capped at 128
    assert (a["height"], a["width"]) == (90, 100)
    augs = build_pwml_augmentations(get_rsrcnn_cfg(get_config_file("Base-RSRCNN.yaml")), False)
    assert len(augs) == 1 and augs[0].short_edge_length == (512, 512)


def test_train_augmentations_from_cfg():
    cfg = get_rsrcnn_cfg(TINY)
    names = [type(a).__name__ for a in build_pwml_augmentations(cfg, True)]
    assert names == ["RandomWidthScale", "RandomFlip", "ResizeShortestEdge"]
    cfg.INPUT.RANDOM_FLIP = "none"
    assert "RandomFlip" not in [type(a).__name__ for a in build_pwml_augmentations(cfg, True)]


def test_lesion_squeezed_out_leaves_no_empty_instance(tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[5, 0] = 1  # on the border: centre crop after widening can drop it
    mapper = PWMLDatasetMapper(True, augmentations=[RandomWidthScale((1.15, 1.15))])
    out = mapper(_record(tmp_path, mask))
    assert len(out["instances"]) == 0 and out["instances"].gt_masks.tensor.shape == (0, 20, 20)


def test_loaders_on_registered_split(converted):
    register_pwml_root(converted, "loadtest")
    cfg = get_rsrcnn_cfg(TINY, ["DATASETS.TRAIN", "('loadtest_train',)"])
    batch = next(iter(build_pwml_train_loader(cfg)))
    assert len(batch) == cfg.SOLVER.IMS_PER_BATCH
    # head crops (INPUT.CROP_TO_HEAD), short edge resized to 256, long edge capped at 256
    assert max(batch[0]["image"].shape[1:]) == 256 and len(batch[0]["instances"]) > 0
    test = list(build_pwml_test_loader(cfg, "loadtest_val"))
    assert len(test) == len(DatasetCatalog.get("loadtest_val"))
    first = test[0][0]
    x0, y0, x1, y1 = first["crop_box"]
    assert 0 <= x0 < x1 <= first["width"] and 0 <= y0 < y1 <= first["height"]
    assert max(first["image"].shape[1:]) == 256
    assert tuple(first["gt_mask"].shape) == (first["height"], first["width"])  # the full slice


def test_model_forward_on_mapped_batch(converted):
    """The mapper's dicts are what the project's model trains on."""
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    register_pwml_root(converted, "modeltest")
    cfg = get_rsrcnn_cfg(TINY, ["MODEL.DEVICE", "cpu"])
    mapper = PWMLDatasetMapper(cfg, True)
    batch = [mapper(r) for r in DatasetCatalog.get("modeltest_train")[:2]]
    model = build_model(cfg)
    model.train()
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize(
    "bad_size",
    [(10, 10), (40, 21), (41, 20), (20, 40)],
    ids=["smaller", "one-column-more", "one-row-more", "transposed"],
)
def test_size_mismatch_names_file(tmp_path, bad_size):
    from rsrcnn_d2.data.errors import PWMLDataError

    rec = _record(tmp_path, _blobs(40, 20))
    rec["height"], rec["width"] = bad_size
    with pytest.raises(PWMLDataError) as err:
        PWMLDatasetMapper(True, augmentations=[])(rec)
    assert str(err.value) == (
        f"{tmp_path / 's.npy'}: slice of size (40, 20) but the dataset says {bad_size}"
    )


def test_size_given_or_missing_is_accepted(tmp_path):
    rec = _record(tmp_path, _blobs(40, 20))
    assert PWMLDatasetMapper(True, augmentations=[])(rec)["image"].shape == (3, 40, 20)
    del rec["height"], rec["width"]
    assert PWMLDatasetMapper(True, augmentations=[])(rec)["image"].shape == (3, 40, 20)
