"""Row A, the classical detector: what it finds, its parameters file, tuning, evaluation,
NIfTI output."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from rsrcnn_d2.classical import (
    ClassicalLesionModel,
    ClassicalParams,
    DatasetSlice,
    detect_slice,
    detect_stack,
    evaluate_classical,
    load_params,
    local_contrast,
    normalize_search_point,
    objective_value,
    otsu_threshold,
    save_params,
    tissue_mask,
    tune_classical,
)
from rsrcnn_d2.cli import predict as cli
from rsrcnn_d2.data.errors import PWMLDataError

# sensible settings for the hand-made slices: no smoothing and no growing, so the
# detected mask is exactly the pixels above threshold
SHARP = ClassicalParams(
    smoothing_sigma=0.0,
    background_size=7,
    threshold=8.0,
    hysteresis=1.0,
    min_area=1,
    max_area=30,
    tissue_mask=False,
)
DOTS = {(30, 40): 2, (50, 62): 3, (62, 30): 1}  # top-left corner -> side of a square dot


def head_slice(seed=0, size=96, dots=DOTS, dot=60.0, rim=100.0, noise=2.0):
    """A grey disc (the head) with a 3-px bright rim (scalp), square dots and seeded noise."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    image = np.where(r < 40, 100.0, 0.0)
    image[(r >= 37) & (r < 40)] += rim
    truth = np.zeros((size, size), bool)
    for (y, x), side in dots.items():
        truth[y : y + side, x : x + side] = True
    image[truth] += dot
    image += np.random.default_rng(seed).normal(0, noise, image.shape)
    return image.astype(np.float32), truth


# ------------------------------------------------------------------ the detector
@pytest.mark.parametrize("tissue", [False, True])
def test_finds_the_dots_and_not_the_rim(tissue):
    image, truth = head_slice()
    det = detect_slice(image, SHARP.replace(tissue_mask=tissue, tissue_erosion=4))
    assert np.array_equal(det.mask, truth)  # 4 + 9 + 1 pixels, nothing on the rim
    # the rim is as narrow as a lesion and brighter: only its size excludes it here
    assert (
        det.contrast[(np.hypot(*np.mgrid[-48:48, -48:48]) >= 37.5)] > SHARP.threshold
    ).any() != tissue


def test_rim_is_dropped_by_its_size_and_kept_when_large_blobs_are_allowed():
    image, truth = head_slice()
    det = detect_slice(image, SHARP.replace(max_area=10_000))
    assert det.mask[truth].all() and det.mask.sum() > truth.sum() + 200  # the rim is a blob now


def test_faint_dots_are_missed_above_their_contrast():
    image, _ = head_slice(dot=5.0)  # 2.5 noise standard deviations: below threshold 8
    assert not detect_slice(image, SHARP).mask.any()


def test_contrast_by_hand_with_the_flat_tissue_fallback():
    """5x5 zeros with a centre of 10: the opening is 0, the residue is the image; its MAD is
    0, so the spread is the standard deviation sqrt(100/25 - (10/25)^2) = sqrt(3.84)."""
    image = np.zeros((5, 5), np.float32)
    image[2, 2] = 10.0
    params = ClassicalParams(smoothing_sigma=0.0, background_size=3, tissue_mask=False)
    z = local_contrast(image, params)
    assert z[2, 2] == pytest.approx(10 / np.sqrt(3.84), rel=1e-6)
    assert np.count_nonzero(z) == 1


def test_contrast_by_hand_with_a_mad():
    """Ones on the 13 pixels with i + j even (no 3x3 square fits: the opening is 0), the
    centre 9: residue values 12 x 0, 12 x 1, one 9 -> median 1; |r - 1|: 12 x 0, 12 x 1,
    one 8 -> MAD 1, spread 1.4826. z = (r - 1) / 1.4826."""
    image = (np.add.outer(np.arange(5), np.arange(5)) % 2 == 0).astype(np.float32)
    image[2, 2] = 9.0
    params = ClassicalParams(smoothing_sigma=0.0, background_size=3, tissue_mask=False)
    z = local_contrast(image, params)
    assert z[2, 2] == pytest.approx(8 / 1.4826, rel=1e-6)
    assert z[0, 0] == pytest.approx(0.0, abs=1e-7)
    assert z[0, 1] == pytest.approx(-1 / 1.4826, rel=1e-6)


def test_probability_is_half_or_more_exactly_on_the_mask():
    image, _ = head_slice(seed=3)
    det = detect_slice(image, SHARP.replace(hysteresis=0.5))
    assert det.mask.any()
    assert np.array_equal(det.prob >= 0.5, det.mask)
    assert det.prob.dtype == np.float32 and det.prob.min() >= 0 and det.prob.max() <= 1


def test_size_limits_are_inclusive():
    image, truth = head_slice()
    sizes = {(30, 40): 4, (50, 62): 9, (62, 30): 1}
    det = detect_slice(image, SHARP.replace(min_area=4, max_area=4))
    kept = {k for k, n in sizes.items() if det.mask[k]}
    assert kept == {(30, 40)}


def test_constant_slice_gives_nothing():
    det = detect_slice(np.full((8, 8), 7.0), SHARP)
    assert not det.mask.any() and not det.prob.any()


def test_otsu_and_tissue_mask_by_hand():
    image = np.zeros((20, 20), np.float32)
    image[4:16, 4:16] = 50.0
    image[7:13, 7:13] = 10.0  # a dark interior (white matter) inside the bright square
    assert 10.0 <= otsu_threshold(image) < 50.0
    tissue = tissue_mask(image)
    assert np.array_equal(tissue, image > 0)  # the dark interior is a hole, filled
    eroded = tissue_mask(image, erosion=2)
    assert eroded.sum() == 8 * 8 and eroded[6:14, 6:14].all()


def test_3d_mode_treats_brightness_persisting_across_slices_as_background():
    """A dot in one slice only is a lesion; one present in the next slice too is not (3-D)."""
    stack = [head_slice(seed=s, dots={})[0] for s in range(3)]
    stack[1][30:32, 40:42] += 60  # lesion: this slice only
    stack[1][50:52, 60:62] += 60  # tube: this slice and the next
    stack[2][50:52, 60:62] += 60
    two_d = detect_stack(stack, SHARP)
    three_d = detect_stack(stack, SHARP.replace(mode="3d"))
    assert two_d[1].mask[30:32, 40:42].all() and two_d[1].mask[50:52, 60:62].all()
    assert three_d[1].mask[30:32, 40:42].all() and not three_d[1].mask[50:52, 60:62].any()
    half = detect_stack(stack, SHARP.replace(mode="3d", through_plane_weight=0.0))
    assert np.array_equal(half[1].mask, two_d[1].mask)  # weight 0 is 2-D


def test_model_interface_honours_height_and_width():
    image, truth = head_slice()
    model = ClassicalLesionModel(SHARP)
    small = torch.from_numpy(image)[None].repeat(3, 1, 1)
    out = model([{"image": small}, {"image": small, "height": 192, "width": 192}])
    assert out[0]["lesion_mask"].dtype == torch.bool and out[0]["lesion_mask"].shape == (96, 96)
    assert torch.equal(out[0]["lesion_mask"], torch.from_numpy(truth))
    assert out[1]["lesion_mask"].shape == (192, 192) and out[1]["lesion_prob"].shape == (192, 192)
    assert out[1]["lesion_mask"].sum() == 4 * truth.sum()  # nearest-neighbour upsampling


# ------------------------------------------------------------------ the parameters file
@pytest.mark.parametrize("name", ["p.yaml", "p.json"])
def test_params_file_round_trip(tmp_path, name):
    params = SHARP.replace(mode="3d", through_plane_weight=0.5)
    path = save_params(tmp_path / name, params, ["tuned on x"])
    assert load_params(path) == params
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_params_file_subset_uses_defaults_and_ints_are_floats(tmp_path):
    (tmp_path / "p.yaml").write_text("threshold: 5\nmin_area: 2\n")
    assert load_params(tmp_path / "p.yaml") == ClassicalParams(threshold=5.0, min_area=2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("treshold: 3\n", "unknown parameter(s) treshold"),
        ("threshold: -1\n", "threshold must be in (0, 100]"),
        ("background_size: 8\n", "background_size must be an odd integer"),
        ("min_area: 5\nmax_area: 2\n", "max_area must be >= min_area (5)"),
        ("min_area: 2.5\n", "min_area must be an integer"),
        ("tissue_mask: maybe\n", "tissue_mask must be true or false"),
        ("mode: 4d\n", "mode must be one of 2d, 3d"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("threshold: [1\n", "not valid YAML/JSON"),
        ("!!python/object/apply:os.system ['touch pwned']\n", "not valid YAML/JSON"),
    ],
)
def test_bad_params_file_is_a_clear_error_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PWMLDataError) as e:
        load_params(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value)
    assert not (tmp_path / "pwned").exists()


def test_missing_params_file_names_it(tmp_path):
    with pytest.raises(PWMLDataError, match="nope.yaml: cannot read"):
        load_params(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ tuning and evaluation
def _slices(n=6, seed=0):
    """Hand-made lesion slices: dots of 1-3 px at seeded places and contrasts."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        dots = {
            (int(rng.integers(25, 65)), int(rng.integers(25, 65))): int(rng.integers(1, 4))
            for _ in range(3)
        }
        image, truth = head_slice(seed=i, dots=dots, dot=float(rng.uniform(8, 30)))
        out.append(
            DatasetSlice(
                {"file_name": f"s{i}", "image_id": i, "subject": f"p{i % 2}", "slice_index": i},
                image,
                truth,
            )
        )
    return out


def test_search_point_rounding_by_hand():
    assert normalize_search_point(
        {
            "background_size": 6.4,
            "min_area": 2.5,
            "max_area": 1.2,
            "threshold": 3.14159,
            "tissue_erosion": 0.49,
        }
    ) == {
        "background_size": 7,
        "min_area": 3,
        "max_area": 3,
        "threshold": 3.142,
        "tissue_erosion": 0,
    }


@pytest.mark.parametrize("objective", ["dice", "lesion_f1"])
def test_tuning_starts_from_its_start_and_is_never_worse(objective):
    slices = _slices()
    start = ClassicalParams(threshold=30.0)  # finds almost nothing on these contrasts
    result = tune_classical(
        slices, start, objective=objective, init_points=3, n_iter=2, seed=0, progress=False
    )
    assert result.trials[0][0] == start
    assert result.start_value == pytest.approx(objective_value(slices, start, objective))
    assert result.best_value >= result.start_value
    assert result.best_value == max(v for _, v in result.trials)
    assert objective_value(slices, result.best_params, objective) == pytest.approx(
        result.best_value
    )
    assert result.best_params.mode == start.mode and result.best_params.tissue_mask


def test_tuning_is_seeded_and_a_start_outside_the_box_is_scored_first():
    slices = _slices(4)
    start = ClassicalParams(threshold=50.0)  # outside the default box (1.5, 12)
    a = tune_classical(slices, start, init_points=2, n_iter=1, seed=3, progress=False)
    b = tune_classical(slices, start, init_points=2, n_iter=1, seed=3, progress=False)
    assert a.trials[0][0] == start and a.best_value >= a.start_value
    assert [p for p, _ in a.trials] == [p for p, _ in b.trials]
    with pytest.raises(ValueError, match="cannot search mode"):
        tune_classical(slices, start, bounds={"mode": (0, 1)}, progress=False)


def test_through_plane_weight_is_searched_in_3d_mode_only():
    slices = _slices(3)
    for s in slices:
        s.neighbours = (s.image, None)  # any neighbour: only what is searched matters here
    two_d = tune_classical(slices, ClassicalParams(), init_points=2, n_iter=0, progress=False)
    three_d = tune_classical(
        slices, ClassicalParams(mode="3d"), init_points=2, n_iter=0, progress=False
    )
    assert {p.through_plane_weight for p, _ in two_d.trials} == {1.0}
    assert len({p.through_plane_weight for p, _ in three_d.trials}) == 3
    assert {p.mode for p, _ in three_d.trials} == {"3d"}


def test_evaluator_protocols_on_a_found_and_a_missed_slice():
    """Slice 0: every dot found exactly (Dice 1); slice 1: a dot too faint, empty prediction
    (Dice 0). Strict: mean 0.5; reference: the empty prediction skipped, Dice 1."""
    found, truth0 = head_slice(seed=0)
    faint, truth1 = head_slice(seed=1, dot=4.0)
    slices = [
        DatasetSlice(
            {"file_name": "a", "image_id": 0, "subject": "s", "slice_index": 0}, found, truth0
        ),
        DatasetSlice(
            {"file_name": "b", "image_id": 1, "subject": "s", "slice_index": 1}, faint, truth1
        ),
    ]
    results = evaluate_classical(slices, SHARP, progress=False)
    assert results["pwml_strict"]["Dice"] == pytest.approx(0.5)
    assert results["pwml_reference"]["Dice"] == pytest.approx(1.0)
    assert results["pwml_reference"]["skipped_fraction"] == pytest.approx(0.5)
    assert results["pwml_lesion"]["found"] == 3 and results["pwml_lesion"]["true_lesions"] == 6
    assert results["pwml_strict"]["lesion_F1"] == pytest.approx(2 * 3 / (2 * 3 + 3 + 0))


# ------------------------------------------------------------------ rsrcnn-predict --classical
@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_predict_writes_nifti_with_the_input_affine(tmp_path, mode):
    rng = np.random.default_rng(0)
    data = (100 + rng.normal(0, 2, (48, 40, 5))).astype(np.float32)  # stored voxel order
    data[20:22, 10:12, 2] += 60  # a lesion in axial slice 2 only
    affine = np.array([[-0.8, 0, 0, 30], [0, -0.9, 0, 20], [0, 0, 2.0, -4], [0, 0, 0, 1]])  # LPS
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "in" / "case_0000.nii.gz")
    params = save_params(tmp_path / "params.yaml", SHARP.replace(mode=mode))
    code = cli.main(
        [
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--classical",
            str(params),
            "--save-prob",
            "--no-progress",
        ]
    )
    assert code == 0
    mask = nib.load(tmp_path / "out" / "case.nii.gz")
    source = nib.load(tmp_path / "in" / "case_0000.nii.gz")  # the affine as stored (float32)
    assert np.allclose(source.affine, affine, atol=1e-6)
    assert np.array_equal(mask.affine, source.affine) and mask.shape == data.shape
    assert mask.header.get_zooms() == source.header.get_zooms()
    expected = np.zeros(data.shape, np.uint8)
    expected[20:22, 10:12, 2] = 1
    assert np.array_equal(np.asanyarray(mask.dataobj), expected)
    prob = np.asanyarray(nib.load(tmp_path / "out" / "case_prob.nii.gz").dataobj)
    assert np.array_equal(prob >= 0.5, expected.astype(bool))


def test_predict_with_a_bad_params_file_names_it_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.float32), np.eye(4)), tmp_path / "in" / "c.nii")
    (tmp_path / "bad.yaml").write_text("threshold: 0\n")
    code = cli.main(
        [
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--classical",
            str(tmp_path / "bad.yaml"),
            "--no-progress",
        ]
    )
    assert code == 2 and "bad.yaml: threshold must be in (0, 100]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_classical_and_a_config_are_exclusive(tmp_path):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(
            ["x", "-o", "y", "--classical", "p.yaml", "--config-file", "c.yaml"]
        )


# -------------------------------------------------------------- the tools on a registered dataset
def _tool_main(name):
    """The program behind tools/<name>.py (the script only calls its ``main``)."""
    import importlib

    return importlib.import_module(f"rsrcnn_d2.cli.{name}").main


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    from rsrcnn_d2.data import convert_pwml, register_pwml_root
    from rsrcnn_d2.synth import write_synthetic_cohort

    base = tmp_path_factory.mktemp("classical_toy")
    write_synthetic_cohort(
        base / "raw", num_subjects=5, size=64, depth=4, seed=0, lesion_fraction=0.5
    )
    convert_pwml(base / "raw", base / "pwml", workers=1)
    register_pwml_root(base / "pwml", prefix="classical_toy")
    return "classical_toy"


def test_tune_then_evaluate_tools_write_only_their_outputs(toy_dataset, tmp_path, capsys):
    from rsrcnn_d2.classical import load_dataset_slices

    out = tmp_path / "A"
    code = _tool_main("tune_classical")(
        [
            "--dataset",
            f"{toy_dataset}_val",
            "--output",
            str(out / "params.yaml"),
            "--init-points",
            "1",
            "--n-iter",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["params.yaml", "params_trials.json"]
    trials = json.loads((out / "params_trials.json").read_text())
    params = load_params(out / "params.yaml")
    assert trials["best"]["value"] >= trials["start"]["value"]
    assert trials["trials"][0] == {**ClassicalParams().to_dict(), "value": trials["start"]["value"]}
    val = load_dataset_slices(f"{toy_dataset}_val", progress=False)
    assert objective_value(val, params) == pytest.approx(trials["best"]["value"])

    code = _tool_main("eval_classical")(
        [
            "--params",
            str(out / "params.yaml"),
            "--dataset",
            f"{toy_dataset}_test",
            "--output",
            str(out / "test"),
            "--no-progress",
        ]
    )
    assert code == 0 and "| Dice" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "test").iterdir()) == [
        "pwml_slices.csv",
        "pwml_subjects.csv",
        "results.json",
    ]
    recorded = json.loads((out / "test" / "results.json").read_text())["results"]
    test = load_dataset_slices(f"{toy_dataset}_test", progress=False)
    expected = evaluate_classical(test, params, progress=False)
    assert recorded["pwml_strict/Dice"] == pytest.approx(expected["pwml_strict"]["Dice"])
    assert recorded["pwml_reference/Dice"] == pytest.approx(expected["pwml_reference"]["Dice"])


def test_3d_neighbours_are_cut_from_the_source_volume_as_the_converter_cut(toy_dataset):
    from rsrcnn_d2.classical import load_dataset_slices
    from rsrcnn_d2.data.nifti import read_volume, volume_slice

    cut = load_dataset_slices(f"{toy_dataset}_all", progress=False, from_volumes=True)
    own = load_dataset_slices(f"{toy_dataset}_all", progress=False)
    assert len(cut) == len(own) > 0
    checked = 0
    for a, b in zip(cut, own):
        volume = read_volume(a.record["source_file"]).canonical
        k, depth = a.record["slice_index"], volume.shape[2]
        assert np.array_equal(a.image, volume_slice(volume, 2, k))  # the converter's cut
        for side, j in enumerate((k - 1, k + 1)):
            if 0 <= j < depth:
                assert np.array_equal(a.neighbours[side], volume_slice(volume, 2, j))
            else:
                assert a.neighbours[side] is None
            if b.neighbours[side] is not None:  # the dataset holds that slice too: the same
                assert np.array_equal(b.neighbours[side], a.neighbours[side])
                checked += 1
    assert checked > 0


def test_tools_name_a_bad_params_file(toy_dataset, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("smoothing: 1\n")
    code = _tool_main("eval_classical")(
        [
            "--params",
            str(tmp_path / "p.yaml"),
            "--dataset",
            f"{toy_dataset}_test",
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "p.yaml: unknown parameter(s) smoothing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ablation_plan_has_row_a_without_a_config():
    from rsrcnn_d2.experiments.ablation import ROW_LABELS, planned_runs

    runs = planned_runs(["A", "B"], [])
    assert list(runs) == ["A", "B"] and runs["A"] == (None, [], ROW_LABELS["A"])


def test_row_a_run_is_recorded_once_and_then_skipped(toy_dataset, tmp_path):
    from rsrcnn_d2.data.fileio import json_safe
    from rsrcnn_d2.experiments.row_a import run_row_a

    run_dir = tmp_path / "runs" / "A" / "seed0"
    first = run_row_a(
        f"{toy_dataset}_val",
        f"{toy_dataset}_test",
        run_dir,
        init_points=1,
        n_iter=0,
        progress=False,
    )
    result = run_dir / "result.json"
    assert json.loads(result.read_text()) == json_safe(first)  # undefined figures: null
    assert first["config"] == str(run_dir / "params.yaml") and first["opts"] == []
    assert (run_dir / "inference" / f"{toy_dataset}_test" / "pwml_slices.csv").exists()
    assert {"pwml_strict/Dice", "pwml_reference/Dice", "pwml_strict/lesion_F1"} <= set(
        first["results"]
    )
    stamp = result.stat().st_mtime_ns
    again = run_row_a(f"{toy_dataset}_val", f"{toy_dataset}_test", run_dir)
    assert json_safe(again) == json_safe(first)
    assert result.stat().st_mtime_ns == stamp


def test_run_ablation_records_and_tabulates_row_a(toy_dataset, tmp_path):
    import shutil

    from detectron2.data import MetadataCatalog

    from rsrcnn_d2.data import register_all_pwml
    from rsrcnn_d2.experiments import ablation as run_ablation

    out = tmp_path / "abl"
    root = MetadataCatalog.get(f"{toy_dataset}_val").pwml_root
    shutil.copytree(root, out / "pwml")  # the cohort run_ablation would have made
    try:
        run_ablation.classical_run(out, seed=0, init_points=1, n_iter=0)
    finally:
        register_all_pwml()  # classical_run re-points pwml_*; leave the import-time state
    record = json.loads((out / "runs" / "A" / "seed0" / "result.json").read_text())
    summary = run_ablation.write_summary(out, run_ablation.planned_runs(["A"], []), [0], 0)
    dice = record["results"]["pwml_strict/Dice"]
    assert f"| A  classical (local contrast, tuned on val) | 0 | {dice:.3f} |" in summary
    assert "| A  classical (local contrast, tuned on val) | 1 |" in summary
