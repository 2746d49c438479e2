"""2.5-D input (INPUT.NEIGHBOR_SLICES): slices z-1, z, z+1 as the three channels, from the
converter through the mapper, the predictor and flip TTA, with exact values."""

import logging

import numpy as np
import pytest
import torch

from rsrcnn_d2.data.coco import load_pwml_coco
from rsrcnn_d2.data.convert import convert_pwml
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.mapper import PWMLDatasetMapper, slice_model_input
from rsrcnn_d2.data.nifti import volume_slice

from conftest import tiny_cfg, whole_slices_at
from test_data_fixtures import nnunet_case, save_nifti

DEPTH = 5  # slices along the converted (axial) axis
LESION_SLICES = (0, 2, DEPTH - 1)  # the first and the last slice among them


def _index_volume(shape=(16, 14, DEPTH)) -> np.ndarray:
    """Slice k (axial) has intensity k everywhere."""
    return np.broadcast_to(np.arange(shape[2], dtype=np.float32), shape).copy()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Two subjects of `_index_volume` with a 2x2 lesion on LESION_SLICES, converted."""
    root = tmp_path_factory.mktemp("neighbours")
    mask = np.zeros((16, 14, DEPTH), np.uint8)
    for k in LESION_SLICES:
        mask[5:7, 4:6, k] = 1
    for case in ("s1", "s2"):
        nnunet_case(root / "raw", case, _index_volume(), mask)
    convert_pwml(root / "raw", root / "out", workers=1, num_folds=0)
    out = root / "out"
    records = load_pwml_coco(out / "annotations" / "instances_all.json", out / "images")
    return {(r["subject"], r["slice_index"]): r for r in records}


def _cfg(*opts):
    """No resizing (MIN_SIZE_TEST 0): the mapper's output is the slices' raw values."""
    return tiny_cfg("E", "INPUT.MIN_SIZE_TEST", "0", *opts)


# ----------------------------------------------------------------------------- conversion
def test_converter_writes_slices_k_minus_1_and_k_plus_1_with_edges_repeating(converted):
    assert sorted(k for s, k in converted if s == "s1") == list(LESION_SLICES)
    for (_, k), record in converted.items():
        assert record["neighbor_file"].endswith(f"_{k:04d}_neighbors.npy")
        near = np.load(record["neighbor_file"])
        assert near.dtype == np.float32 and near.shape == (2, 14, 16)
        below, above = max(k - 1, 0), min(k + 1, DEPTH - 1)
        np.testing.assert_array_equal(near[0], np.full((14, 16), below, np.float32))
        np.testing.assert_array_equal(near[1], np.full((14, 16), above, np.float32))
    # the edges repeat themselves: slice 0 -> (0, 1), slice 4 -> (3, 4)
    assert np.load(converted[("s1", 0)]["neighbor_file"])[:, 0, 0].tolist() == [0.0, 1.0]
    assert np.load(converted[("s1", 4)]["neighbor_file"])[:, 0, 0].tolist() == [3.0, 4.0]


# ----------------------------------------------------------------------------- mapper
@pytest.mark.parametrize("crop", ["False", "True"], ids=["whole", "head crop"])
@pytest.mark.parametrize("is_train", [False, True], ids=["test", "train"])
def test_mapper_feeds_z_minus_1_z_z_plus_1(converted, crop, is_train):
    # training: flip and width scale move constant slices to constant slices (no scale: no pad)
    cfg = _cfg(
        "INPUT.NEIGHBOR_SLICES", "True", "INPUT.CROP_TO_HEAD", crop,
        "INPUT.MIN_SIZE_TRAIN", "(0,)", "INPUT.WIDTH_SCALE_RANGE", "(1.0, 1.0)",
    )  # fmt: skip
    mapper = PWMLDatasetMapper(cfg, is_train)
    for k, expected in [(2, [1.0, 2.0, 3.0]), (0, [0.0, 0.0, 1.0]), (4, [3.0, 4.0, 4.0])]:
        image = mapper(converted[("s1", k)])["image"]
        assert image.shape == (3, 14, 16) and image.dtype == torch.float32
        assert torch.equal(image, torch.tensor(expected)[:, None, None].expand(3, 14, 16))


def test_key_off_gives_three_copies_of_the_slice(converted):
    out = PWMLDatasetMapper(_cfg(), False)(converted[("s1", 2)])
    assert torch.equal(out["image"], torch.full((3, 14, 16), 2.0))


def test_head_crop_is_found_on_the_centre_slice_and_cuts_all_three(tmp_path):
    centre = np.zeros((12, 10), np.float32)
    centre[3:8, 2:6] = 50.0  # the head: box (x0, y0, x1, y1) = (1, 2, 7, 9) with margin 1
    near = np.stack([np.arange(120.0).reshape(12, 10), -np.arange(120.0).reshape(12, 10)])
    near = near.astype(np.float32)  # bright everywhere: a box found on them would be the slice
    np.save(tmp_path / "s.npy", centre)
    np.save(tmp_path / "s_neighbors.npy", near)
    record = {
        "file_name": str(tmp_path / "s.npy"),
        "neighbor_file": str(tmp_path / "s_neighbors.npy"),
        "image_id": 0,
    }
    out = PWMLDatasetMapper(False, augmentations=[], head_crop_margin=1, neighbor_slices=True)(
        record
    )
    assert out["crop_box"] == [1, 2, 7, 9]
    expected = np.stack([near[0, 2:9, 1:7], centre[2:9, 1:7], near[1, 2:9, 1:7]])
    assert torch.equal(out["image"], torch.from_numpy(expected))


def test_augmentations_move_the_three_channels_identically():
    """Width scale (bilinear resize + pad), flip and resize on the (H, W, 3) image give, per
    channel, what the same transforms give each slice alone, to float32 rounding (the resize
    kernel sums in another order for 3 channels than for 1 with one thread: 2e-7 relative)."""
    from detectron2.data import transforms as T

    from rsrcnn_d2.data.augmentation import build_pwml_augmentations

    cfg = tiny_cfg("E", "INPUT.WIDTH_SCALE_RANGE", "(0.7, 0.8)", "INPUT.RANDOM_FLIP", "horizontal")
    rng = np.random.default_rng(0)
    slices = rng.random((3, 20, 24)).astype(np.float32) * 100
    augs = T.AugmentationList(build_pwml_augmentations(cfg, is_train=True))
    torch.manual_seed(0)
    np.random.seed(0)
    fields, transforms = slice_model_input(slices[1], augs, neighbors=slices[[0, 2]])
    assert fields["image"].shape[0] == 3
    for c in range(3):
        alone = transforms.apply_image(slices[c])
        np.testing.assert_allclose(fields["image"][c].numpy(), alone, rtol=1e-6, atol=0)
    assert torch.count_nonzero(fields["image"][:, :, 0]) == 0  # shrunk: zero-padded columns


def test_a_dataset_converted_before_2_5_d_is_told_to_convert_again(converted):
    old = {k: v for k, v in converted[("s1", 2)].items() if k != "neighbor_file"}
    mapper = PWMLDatasetMapper(_cfg("INPUT.NEIGHBOR_SLICES", "True"), False)
    with pytest.raises(PWMLDataError) as e:
        mapper(old)
    message = str(e.value)
    assert message.startswith(old["file_name"])
    assert "neighbor_file" in message and "convert it again with tools/prepare_pwml.py" in message


def test_neighbours_of_another_size_are_an_error_naming_their_file(tmp_path):
    np.save(tmp_path / "s.npy", np.ones((6, 5), np.float32))
    np.save(tmp_path / "n.npy", np.ones((2, 6, 4), np.float32))
    record = {"file_name": str(tmp_path / "s.npy"), "neighbor_file": str(tmp_path / "n.npy")}
    mapper = PWMLDatasetMapper(False, augmentations=[], neighbor_slices=True)
    with pytest.raises(PWMLDataError, match=r"n\.npy: neighbour slices of shape \(2, 6, 4\); "):
        mapper(record)


# ----------------------------------------------------------------------------- prediction
def _recording(model, seen):
    def forward(batched_inputs):
        seen.extend(x["image"].clone() for x in batched_inputs)
        return model(batched_inputs)

    return forward


def test_predictor_feeds_each_volume_slice_with_its_neighbours(tmp_path):
    from rsrcnn_d2.inference import LesionPredictor
    from rsrcnn_d2.inference.inputs import PredictionInput
    from rsrcnn_d2.inference.predictor import predict_inputs

    # slice k: 10 k plus an in-plane ramp (a constant slice would not be shown to the model)
    ramp = np.add.outer(np.arange(64.0), np.arange(64.0)).astype(np.float32)
    volume = np.stack([10.0 * k + ramp for k in range(4)], axis=2).astype(np.float32)
    path = save_nifti(tmp_path / "case.nii.gz", volume)
    cfg = tiny_cfg("E", *whole_slices_at(64), "INPUT.NEIGHBOR_SLICES", "True")
    torch.manual_seed(0)
    predictor = LesionPredictor.from_config(cfg, batch_size=3)
    seen = []
    predictor.model = _recording(predictor.model, seen)
    report = predict_inputs(
        predictor, [PredictionInput("nifti", path, "case")], tmp_path / "out", progress=False
    )
    assert not report.failures and len(seen) == 4
    for k, image in enumerate(seen):
        below, above = max(k - 1, 0), min(k + 1, 3)
        expected = torch.from_numpy(
            np.stack([volume_slice(volume, 2, j) for j in (below, k, above)])
        )
        assert torch.equal(image, expected), k  # a 64 px slice at 64 px: no resampling


def test_two_d_inputs_are_repeated_and_that_is_logged_once(caplog):
    from rsrcnn_d2.inference import LesionPredictor

    seen = []

    def model(batched_inputs):
        seen.extend(x["image"] for x in batched_inputs)
        return [
            {"lesion_mask": torch.zeros(8, 8, dtype=torch.bool), "lesion_prob": torch.zeros(8, 8)}
            for _ in batched_inputs
        ]

    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    predictor = LesionPredictor(model, neighbor_slices=True)
    with caplog.at_level(logging.INFO, logger="rsrcnn_d2"):
        predictor(image)
        predictor(image + 1)
    for given, fed in zip(seen, (image, image + 1)):
        assert torch.equal(given, torch.from_numpy(np.stack([fed] * 3)))
    said = [r for r in caplog.records if "no neighbouring slices" in r.getMessage()]
    assert len(said) == 1


def test_flip_tta_mirrors_only_the_width_of_the_three_channels():
    from detectron2.modeling import build_model

    from rsrcnn_d2.inference.ensemble import LesionEnsemble

    torch.manual_seed(0)
    cfg = tiny_cfg("E", "MODEL.DCRF.NAME", "", "INPUT.CROP_TO_HEAD", "False")
    model = build_model(cfg).eval()
    seen = []
    preprocess = model.preprocess_image
    model.preprocess_image = lambda inputs: seen.append(inputs[0]["image"]) or preprocess(inputs)
    image = torch.arange(3 * 32 * 40, dtype=torch.float32).reshape(3, 32, 40)
    LesionEnsemble.from_config(cfg, [model], flip=True)([{"image": image}])
    plain, mirrored = seen[:2]
    assert torch.equal(plain, image)
    for c in range(3):  # channel order kept (z-1, z, z+1), rows kept, columns reversed
        assert torch.equal(mirrored[c], image[c][:, torch.arange(39, -1, -1)])


def test_the_crf_reads_the_centre_channel():
    """The dense CRF's pairwise term gets slice z (channel 1), not channel 0 nor the mean."""
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances

    from rsrcnn_d2.data.image_ops import to_uint8

    model = build_model(tiny_cfg("D"))
    patches = []
    model.dcrf = lambda patch, prob: patches.append(patch.copy()) or prob
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    image = torch.from_numpy(np.stack([y, 2 * x + 1, (x + y) % 2 * 50]))
    raw = Instances((64, 64))
    raw.pred_boxes = Boxes(torch.tensor([[10.0, 10.0, 20.0, 20.0]]))
    raw.expanded_boxes = Boxes(torch.tensor([[8.0, 8.0, 22.0, 22.0]]))
    raw.scores, raw.pred_classes = torch.ones(1), torch.zeros(1, dtype=torch.int64)
    raw.pred_masks = torch.full((1, 1, 18, 18), 0.9)
    model._postprocess_one(raw, {"image": image})
    (patch,) = patches
    centre = to_uint8(image[1].numpy())
    x0 = int(np.flatnonzero(centre[0] == patch[0, 0])[0])
    y0 = 7  # detectron2 pastes from one pixel before the box
    h, w = patch.shape
    assert np.array_equal(patch, centre[y0 : y0 + h, x0 : x0 + w])


def test_slice_folders_use_their_neighbour_files_where_present(tmp_path):
    """A PNG slice folder (the reference's layout) with slices 3, 4 and 6 of one subject:
    slice 3 has no 2 but a 4: (3, 4); slice 4 has a 3 but no 5: (3, 4); 6 has neither: (6, 6)."""
    from PIL import Image

    for k in (3, 4, 6):
        image = np.full((12, 10), 10 * k, np.uint8)
        image[-1, -1] = 0  # not a blank slice (refused): one dark corner pixel
        mask = np.zeros((12, 10), np.uint8)
        mask[4:6, 4:6] = 255
        for part, array in (("input", image), ("gt", mask)):
            (tmp_path / "slices" / part / "s").mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(tmp_path / "slices" / part / "s" / f"{k}.png")
    convert_pwml(tmp_path / "slices", tmp_path / "out", workers=1, num_folds=0)
    records = load_pwml_coco(
        tmp_path / "out" / "annotations" / "instances_all.json", tmp_path / "out" / "images"
    )
    near = {r["slice_index"]: np.load(r["neighbor_file"])[:, 0, 0].tolist() for r in records}
    assert near == {3: [30.0, 40.0], 4: [30.0, 40.0], 6: [60.0, 60.0]}
