"""Inference outputs: pasting through expanded boxes, rescaling, DCRF, degenerate cases."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from rsrcnn_d2.data.image_ops import to_uint8
from rsrcnn_d2.modeling import DenseCRFPostprocessor, build_dcrf_postprocessor
from rsrcnn_d2.modeling.postprocessing import paste_instance_masks, zscore_image

from conftest import synthetic_input, tiny_cfg


def test_paste_constant_mask_fills_exactly_its_box():
    probs = torch.ones(1, 1, 18, 18)
    masks, prob = paste_instance_masks(probs, torch.tensor([[10.0, 20.0, 30.0, 40.0]]), 64, 50)
    expected = torch.zeros(64, 50, dtype=torch.bool)
    expected[20:40, 10:30] = True
    assert masks.shape == (1, 64, 50)
    assert torch.equal(masks[0], expected)
    assert torch.equal(prob > 0.5, expected)


def _raw_result(in_size, boxes, expanded, probs):
    r = Instances(in_size)
    r.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    r.expanded_boxes = Boxes(torch.tensor(expanded, dtype=torch.float32))
    r.scores = torch.ones(len(boxes))
    r.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
    r.pred_masks = probs
    return r


def test_postprocess_pastes_through_expanded_box_and_rescales():
    model = build_model(tiny_cfg("D"))
    # network saw 64x64; the requested output is 128x128 (scale 2)
    raw = _raw_result((64, 64), [[10, 10, 20, 20]], [[8, 8, 22, 22]], torch.ones(1, 1, 18, 18))
    out = model._postprocess_one(
        raw, {"image": torch.zeros(3, 64, 64), "height": 128, "width": 128}
    )
    inst = out["instances"]
    assert inst.pred_boxes.tensor.tolist() == [[20.0, 20.0, 40.0, 40.0]]  # refined box, rescaled
    assert inst.expanded_boxes.tensor.tolist() == [[16.0, 16.0, 44.0, 44.0]]
    expected = torch.zeros(128, 128, dtype=torch.bool)
    expected[16:44, 16:44] = True
    assert torch.equal(out["lesion_mask"], expected)
    assert inst.pred_masks.shape == (1, 128, 128)


def test_postprocess_half_mask_lands_on_the_right_side():
    model = build_model(tiny_cfg("D"))
    probs = torch.zeros(1, 1, 20, 20)
    probs[..., :, 10:] = 1.0  # right half
    raw = _raw_result((100, 100), [[42, 42, 58, 58]], [[40, 40, 60, 60]], probs)
    out = model._postprocess_one(raw, {"image": torch.zeros(3, 100, 100)})
    ys, xs = np.nonzero(out["lesion_mask"].numpy())
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (40, 59, 50, 59)


def test_inference_on_synthetic_image_has_input_size_outputs():
    model = build_model(tiny_cfg("E", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"))
    model.eval()
    x, _ = synthetic_input(7, size=96)
    with torch.no_grad():
        out = model([{"image": x["image"], "height": 150, "width": 140}])[0]
    assert out["lesion_mask"].shape == (150, 140) and out["lesion_prob"].shape == (150, 140)
    inst = out["instances"]
    assert len(inst) > 0 and inst.pred_masks.shape == (len(inst), 150, 140)
    assert torch.equal(out["lesion_mask"], inst.pred_masks.any(0))
    assert (inst.expanded_boxes.tensor[:, 2:] >= inst.pred_boxes.tensor[:, 2:] - 1e-4).all()


def test_no_detections_gives_empty_outputs():
    model = build_model(tiny_cfg("E", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.01"))
    model.eval()
    with torch.no_grad():
        out = model([{"image": synthetic_input(8)[0]["image"]}])[0]
    assert len(out["instances"]) == 0
    assert out["lesion_mask"].shape == (128, 128) and not out["lesion_mask"].any()
    assert out["instances"].pred_masks.shape == (0, 128, 128)


def test_zero_width_boxes_are_dropped_not_crashing():
    model = build_model(tiny_cfg("E"))
    raw = _raw_result(
        (64, 64),
        [[10, 10, 10, 20], [30, 30, 31, 31]],
        [[10, 7, 10, 23], [30, 30, 31, 31]],
        torch.ones(2, 1, 18, 18),
    )
    out = model._postprocess_one(raw, {"image": torch.rand(3, 64, 64)})
    assert len(out["instances"]) == 1  # the zero-width box is dropped by detectron2
    assert out["lesion_mask"].sum() == 1  # the 1-pixel box keeps its one pixel


def test_one_pixel_lesion_trains():
    from detectron2.utils.events import EventStorage

    from rsrcnn_d2.data.instances import mask_to_instances

    mask = np.zeros((128, 128), np.uint8)
    mask[60, 70] = 1
    inst = mask_to_instances(mask)
    assert inst.gt_boxes.tensor.tolist() == [[70.0, 60.0, 71.0, 61.0]]
    model = build_model(tiny_cfg("E"))
    model.train()
    image = torch.rand(3, 128, 128)
    with EventStorage():
        losses = model([{"image": image, "instances": inst}])
    assert all(torch.isfinite(v) for v in losses.values())


def _blob_case(seed=0, size=40):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= 8**2
    image = np.where(truth, 200.0, 60.0) + rng.normal(0, 5, truth.shape)
    prob = np.clip(np.where(truth, 0.62, 0.38) + rng.normal(0, 0.2, truth.shape), 0, 1)
    return to_uint8(image), prob.astype(np.float32), truth


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_dcrf_raises_dice_of_a_noisy_blob():
    image, prob, truth = _blob_case()
    crf = DenseCRFPostprocessor(gaussian_sxy=2, bilateral_sxy=4, bilateral_srgb=6, iterations=1)
    refined = crf(image, prob)
    before, after = _dice(prob >= 0.5, truth), _dice(refined >= 0.5, truth)
    assert refined.shape == prob.shape and refined.dtype == np.float32
    assert after > before + 0.05, (before, after)
    assert after > 0.9


def test_dcrf_disabled_is_no_op():
    assert build_dcrf_postprocessor(tiny_cfg("D")) is None
    assert isinstance(build_dcrf_postprocessor(tiny_cfg("E")), DenseCRFPostprocessor)
    _, prob, _ = _blob_case()
    masks, lesion_prob = paste_instance_masks(
        torch.from_numpy(prob)[None, None], torch.tensor([[0.0, 0, 40, 40]]), 40, 40, refine=None
    )
    assert torch.allclose(lesion_prob, torch.from_numpy(prob), atol=1e-5)
    crf0 = DenseCRFPostprocessor(iterations=0)
    assert np.array_equal(crf0(np.zeros((40, 40), np.uint8), prob), prob)


def test_dcrf_in_the_model_changes_masks_only_through_refinement():
    image, prob, truth = _blob_case(1)
    probs = torch.nn.functional.interpolate(
        torch.from_numpy(prob)[None, None], size=(18, 18), mode="bilinear"
    )
    raw = lambda: _raw_result((40, 40), [[4, 4, 36, 36]], [[0, 0, 40, 40]], probs.clone())  # noqa: E731
    x = {"image": torch.from_numpy(image.astype(np.float32))[None].repeat(3, 1, 1)}
    plain = build_model(tiny_cfg("D"))._postprocess_one(raw(), x)["lesion_mask"].numpy()
    crf = build_model(tiny_cfg("E"))._postprocess_one(raw(), x)["lesion_mask"].numpy()
    assert _dice(crf, truth) > _dice(plain, truth)


def test_dcrf_rejects_bad_parameters_and_shapes():
    with pytest.raises(ValueError, match="must be > 0"):
        DenseCRFPostprocessor(gaussian_sxy=0)
    with pytest.raises(ValueError, match="differ"):
        DenseCRFPostprocessor()(np.zeros((4, 5), np.uint8), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([[0.0, np.nan]]))


def test_zscore_constant_image_is_zero_not_nan():
    out = zscore_image(torch.full((3, 8, 8), 7.0))
    assert torch.equal(out, torch.zeros(3, 8, 8))
    x = torch.arange(12.0).reshape(3, 2, 2)
    z = zscore_image(x)
    assert abs(z.mean().item()) < 1e-6 and abs(z.std().item() - 1) < 1e-6


def test_crf_runs_on_the_network_scale_patch_and_comes_back_to_the_output():
    """The reference's CRF parameters are in pixels of the network's input: the CRF sees the
    patch under the box at that scale (8-bit), and its result is resized into the output."""
    seen = []

    def identity(patch_u8, prob):
        seen.append((patch_u8.dtype, patch_u8.shape, prob.shape, int(patch_u8.max())))
        return prob

    network_image = torch.arange(16 * 16, dtype=torch.float32).reshape(16, 16)  # output is 8 x 8
    probs = torch.ones(1, 1, 5, 5)
    masks, prob = paste_instance_masks(
        probs,
        torch.tensor([[2.0, 2.0, 6.0, 6.0]]),
        8,
        8,
        image=network_image,
        refine=identity,
        refine_boxes=torch.tensor([[4.0, 4.0, 12.0, 12.0]]),
    )
    # exactly the network box 4..12 (the reference's patch): 8 x 8; 8-bit stretch of the whole
    # image (0..255 -> 0..255); the patch ends at pixel 11 * 16 + 11
    assert seen == [(np.uint8, (8, 8), (8, 8), 187)]
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2:6, 2:6] = True
    assert torch.equal(masks[0], expected)
    direct, _ = paste_instance_masks(probs, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), 8, 8)
    assert torch.equal(direct[0], expected)
    with pytest.raises(ValueError, match="refine_boxes"):
        paste_instance_masks(
            probs, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), 8, 8, image=network_image, refine=identity
        )


def test_crf_patch_is_the_rounded_expanded_box_and_nothing_around_it():
    """A 9.1 x 11.6 box at (2.3, 3.6): edges rounded to columns 2..11 and rows 4..15, so the CRF
    sees a 11 x 9 patch of the image (detectron2's paste window, floor - 1 .. ceil + 1, would
    give 14 x 12 with a ring of near-zero probability), holding the float-box paste's values."""
    seen = []

    def record(patch_u8, prob):
        seen.append((patch_u8.copy(), prob.copy()))
        return prob

    grey = torch.arange(20 * 20, dtype=torch.float32).reshape(20, 20)  # 0..399 -> 0..255
    box = torch.tensor([[2.3, 3.6, 11.4, 15.2]])
    probs = torch.linspace(0.1, 0.9, 49).reshape(1, 1, 7, 7)
    paste_instance_masks(probs, box, 20, 20, image=grey, refine=record, refine_boxes=box)
    ((patch_u8, prob),) = seen
    assert patch_u8.shape == prob.shape == (11, 9)
    expected_u8 = np.round(grey.numpy() * (255.0 / 399)).astype(np.uint8)[4:15, 2:11]
    np.testing.assert_array_equal(patch_u8, expected_u8)
    _, whole = paste_instance_masks(probs, box, 20, 20, threshold=2.0)  # the float-box paste
    np.testing.assert_allclose(prob, whole.numpy()[4:15, 2:11], rtol=0, atol=1e-6)
    assert prob.min() > 0.05  # no ring outside the box


@pytest.mark.parametrize(
    "box, rows, cols",
    [
        ((2.3, 3.6, 11.4, 15.2), (4, 15), (2, 11)),
        ((2.5, 3.5, 4.5, 5.5), (4, 6), (2, 4)),  # halves to even, as numpy's round
        ((5.2, 5.2, 5.3, 5.3), (5, 6), (5, 6)),  # a sub-pixel box keeps one pixel
        ((-1.0, 17.8, 25.0, 30.0), (18, 20), (0, 20)),  # clipped to the 20 x 20 image
        ((20.0, 20.0, 20.0, 20.0), (19, 20), (19, 20)),  # on the far edge: its last pixel
    ],
)
def test_pixel_window_hand_computed(box, rows, cols):
    from rsrcnn_d2.box_ops import pixel_window

    ys, xs = pixel_window(torch.tensor(box), 20, 20)
    assert (ys.start, ys.stop) == rows and (xs.start, xs.stop) == cols


# ------------------------------------------------------- prediction never writes through a symlink
class _BrightModel:
    """Stand-in for RSRCNN: lesion wherever the slice is brighter than 200."""

    def __call__(self, batch):
        return [
            {"lesion_mask": x["image"][0] > 200, "lesion_prob": (x["image"][0] > 200).float()}
            for x in batch
        ]


def _predict_cli(monkeypatch, *argv):
    from rsrcnn_d2.cli import predict as cli
    from rsrcnn_d2.inference import LesionPredictor

    monkeypatch.setattr(
        cli, "build_predictor", lambda args: LesionPredictor(_BrightModel(), batch_size=1)
    )
    return cli.main([*map(str, argv), "--config-file", "unused.yaml", "--no-progress"])


def _bright_volume(path, seed):
    import nibabel as nib

    data = np.random.default_rng(seed).uniform(0, 100, (6, 5, 4)).astype(np.float32)
    data[2, 2, 1] = data[3, 1, 2] = 1000.0
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def _files(folder):
    """Every file under ``folder`` but the completion markers (``.<mask>.done``); temporary
    files would show."""
    done = [p for p in folder.rglob(".*.done")]
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p not in done)


def test_a_symlinked_overlay_folder_is_refused_and_the_other_cases_predicted(
    tmp_path, monkeypatch, capsys
):
    import nibabel as nib

    (tmp_path / "in").mkdir()
    _bright_volume(tmp_path / "in" / "a.nii.gz", 0)
    _bright_volume(tmp_path / "in" / "b.nii.gz", 1)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "a_overlays").symlink_to(elsewhere, target_is_directory=True)
    victim = tmp_path / "victim.nii.gz"
    victim.write_bytes(b"not yours")
    (out / "b.nii.gz").symlink_to(victim)  # a link as a file name: replaced, not followed
    code = _predict_cli(monkeypatch, tmp_path / "in", "-o", out, "--overlays")
    err = capsys.readouterr().err
    assert code == 1
    assert _files(elsewhere) == [] and victim.read_bytes() == b"not yours"
    assert "1 failed" in err
    line = next(line for line in err.splitlines() if "a_overlays" in line)
    assert line.strip().startswith(str(out / "a_overlays" / "axial_001.png"))
    assert "outside the output folder" in line and "symlink" in line
    assert not (out / "b.nii.gz").is_symlink()
    assert int(np.asanyarray(nib.load(out / "b.nii.gz").dataobj).sum()) == 2
    assert _files(out / "b_overlays") == ["axial_001.png", "axial_002.png"]


def test_a_symlinked_subject_folder_of_slice_outputs_is_refused(tmp_path, monkeypatch, capsys):
    from PIL import Image

    for subject in ("s1", "s2"):
        (tmp_path / "in" / "input" / subject).mkdir(parents=True)
        image = np.full((12, 10), 40, np.uint8)
        image[3:5, 4:6] = 255
        Image.fromarray(image, mode="L").save(tmp_path / "in" / "input" / subject / "3.png")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "s1").symlink_to(elsewhere, target_is_directory=True)
    code = _predict_cli(monkeypatch, tmp_path / "in", "-o", out, "--save-prob", "--overlays")
    err = capsys.readouterr().err
    assert code == 1 and _files(elsewhere) == []
    assert f"{out / 's1' / '3.png'}: lies outside the output folder" in err
    assert _files(out / "s2") == ["3.png", "3_overlay.png", "3_prob.npy"]


def test_inside_output_follows_links_but_not_a_final_link(tmp_path):
    from rsrcnn_d2.data.errors import PWMLDataError
    from rsrcnn_d2.data.fileio import check_inside_output

    out = tmp_path / "out"
    (out / "real").mkdir(parents=True)
    (out / "inner").symlink_to(out / "real", target_is_directory=True)  # stays inside: fine
    (out / "outer").symlink_to(tmp_path, target_is_directory=True)
    (out / "file").symlink_to(tmp_path / "x")  # the rename replaces the link itself
    assert check_inside_output(out / "inner" / "m.png", out) == out.resolve() / "real" / "m.png"
    assert check_inside_output(out / "file", out) == out.resolve() / "file"
    assert check_inside_output(out / "outer" / "out" / "m.png", out) == out.resolve() / "m.png"
    for bad in (out / "outer" / "m.png", out / ".." / "m.png", out / "real" / ".."):
        with pytest.raises(PWMLDataError, match="outside the output folder"):
            check_inside_output(bad, out)


def test_the_predictor_and_the_test_mapper_feed_the_model_alike(tmp_path):
    """One helper makes the network's input: head crop, resize, raw intensities x 3 channels."""
    from detectron2.data import transforms as T

    from rsrcnn_d2.data.mapper import PWMLDatasetMapper, slice_model_input
    from rsrcnn_d2.inference import LesionPredictor

    image = np.zeros((10, 12), np.float32)
    image[3:7, 4:9] = np.arange(20, dtype=np.float32).reshape(4, 5) + 100  # the "head"
    resize = [T.Resize((8, 14))]
    fields, transforms = slice_model_input(image, T.AugmentationList(resize), head_crop_margin=1)
    assert fields["crop_box"] == [3, 2, 10, 8]
    assert fields["image"].shape == (3, 8, 14) and fields["image"].dtype == torch.float32
    assert torch.equal(fields["image"][0], fields["image"][2])
    expected = T.ResizeTransform(6, 7, 8, 14).apply_image(image[2:8, 3:10])
    assert np.array_equal(fields["image"][1].numpy(), expected)
    assert np.array_equal(transforms.apply_coords(np.array([[3.0, 2.0]])), [[0.0, 0.0]])
    np.save(tmp_path / "s.npy", image)
    mapped = PWMLDatasetMapper(False, augmentations=resize, head_crop_margin=1)(
        {"file_name": str(tmp_path / "s.npy"), "image_id": 0}
    )
    predicted = LesionPredictor(None, resize, head_crop_margin=1)._model_input(image)
    for given in (mapped, predicted):
        assert torch.equal(given["image"], fields["image"]) and given["crop_box"] == [3, 2, 10, 8]
        assert (given["height"], given["width"]) == (10, 12)
