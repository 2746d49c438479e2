"""Prediction tool: output geometry, voxel placement across orientations, PNG folders, safety."""

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from rsrcnn_d2.cli import predict as cli
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.nifti import volume_slice
from rsrcnn_d2.inference import LesionPredictor, case_name, find_inputs, predict_inputs
from rsrcnn_d2.inference.writers import to_input_orientation
from rsrcnn_d2.synth import write_synthetic_cohort

from conftest import TINY_ROWS

CONFIG = str(TINY_ROWS["E"])


class FakeModel:
    """Stand-in for RSRCNN: lesion where ``rule(image, call)`` says, probability 0.75 there."""

    def __init__(self, rule):
        self.rule, self.inputs = rule, []

    def __call__(self, batch):
        out = []
        for x in batch:
            assert x["image"].shape[0] == 3 and x["image"].dtype == torch.float32
            mask = self.rule(x["image"][0], len(self.inputs))
            self.inputs.append(x)
            out.append({"lesion_mask": mask, "lesion_prob": mask.float() * 0.75})
        return out


def bright(image, call):
    return image > 500


def fake_predictor(rule=bright):
    # no resizing: the fake model's mask is already at the slice's size
    return LesionPredictor(FakeModel(rule), augmentations=[], batch_size=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    write_synthetic_cohort(root, num_subjects=2, size=64, depth=4, seed=0)
    return root / "imagesTr"


@pytest.fixture
def volumes(cohort, tmp_path):
    """A private copy of the cohort's images (tests may add bad files to it)."""
    return Path(shutil.copytree(cohort, tmp_path / "volumes"))


def checksums(folder: Path) -> dict:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_cli(monkeypatch, *argv, predictor=None):
    if predictor is not None:
        monkeypatch.setattr(cli, "build_predictor", lambda args: predictor)
    return cli.main([*map(str, argv), "--config-file", CONFIG, "--no-progress"])


# ------------------------------------------------------------------ geometry
def test_tiny_model_writes_mask_and_prob_with_the_input_geometry(volumes, tmp_path, monkeypatch):
    from detectron2.modeling import build_model

    from rsrcnn_d2 import get_rsrcnn_cfg

    torch.manual_seed(0)  # random weights, saved as a checkpoint the CLI loads
    model = build_model(get_rsrcnn_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]))
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    out = tmp_path / "out"
    # the point is geometry: one view, a few boxes per slice (each gets a CRF)
    code = run_cli(
        monkeypatch,
        volumes / "PWML_000_0000.nii.gz",
        "-o",
        out,
        "--weights",
        weights,
        "--save-prob",
        "--disable-tta",
        "MODEL.DEVICE",
        "cpu",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.0",
        "TEST.DETECTIONS_PER_IMAGE",
        "5",
    )
    assert code == 0
    source = nib.load(volumes / "PWML_000_0000.nii.gz")
    mask, prob = nib.load(out / "PWML_000.nii.gz"), nib.load(out / "PWML_000_prob.nii.gz")
    for img in (mask, prob):
        assert img.shape == source.shape
        assert np.array_equal(img.affine, source.affine)
        assert img.header.get_zooms() == source.header.get_zooms()
    assert mask.get_data_dtype() == np.uint8 and prob.get_data_dtype() == np.float32
    m, p = np.asanyarray(mask.dataobj), np.asanyarray(prob.dataobj)
    assert set(np.unique(m)) <= {0, 1} and m.any()  # threshold 0: random weights find "lesions"
    assert p.min() >= 0.0 and p.max() <= 1.0 and p.max() > 0


def test_missing_weights_is_a_clear_error(volumes, tmp_path, monkeypatch, capsys):
    code = run_cli(monkeypatch, volumes, "-o", tmp_path / "out", "--weights", tmp_path / "nope.pth")
    assert code == 4
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"rsrcnn-predict: error: {tmp_path / 'nope.pth'}: weights file does not exist"
    )
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ bad config / weights files
def _predict(volumes, out, config, *extra):
    return cli.main(
        [
            str(volumes / "PWML_000_0000.nii.gz"),
            "-o",
            str(out),
            "--config-file",
            str(config),
            "--no-progress",
            *map(str, extra),
            "MODEL.DEVICE",
            "cpu",
        ]
    )


@pytest.fixture(scope="module")
def row_e_checkpoint(tmp_path_factory):
    from detectron2.modeling import build_model

    from rsrcnn_d2 import get_rsrcnn_cfg

    torch.manual_seed(0)
    model = build_model(get_rsrcnn_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]))
    path = tmp_path_factory.mktemp("rowE") / "model_final.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def test_weights_of_another_row_are_refused_with_exit_4(
    volumes, tmp_path, row_e_checkpoint, capsys
):
    code = _predict(volumes, tmp_path / "out", TINY_ROWS["B"], "--weights", row_e_checkpoint)
    err = capsys.readouterr().err
    assert code == 4 and not (tmp_path / "out").exists()
    assert err.startswith(
        f"rsrcnn-predict: error: {row_e_checkpoint}: leaves 8 of the model's 110 "
        "weight tensors uninitialised (proposal_generator.rpn_head.objectness_logits"
    )
    assert err.count("\n") == 1 and "Traceback" not in err
    # the explicit flag loads what fits and predicts
    code = _predict(
        volumes,
        tmp_path / "out",
        TINY_ROWS["B"],
        "--weights",
        row_e_checkpoint,
        "--allow-partial-weights",
        "--disable-tta",
    )
    assert code == 0 and (tmp_path / "out" / "PWML_000.nii.gz").is_file()


def test_truncated_and_unsafe_weights_exit_4_and_run_nothing(
    volumes, tmp_path, row_e_checkpoint, capsys
):
    import pickle

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(row_e_checkpoint.read_bytes()[:5000])
    assert _predict(volumes, tmp_path / "out", CONFIG, "--weights", truncated) == 4
    err = capsys.readouterr().err
    assert (
        err.startswith(f"rsrcnn-predict: error: {truncated}: cannot load weights")
        and err.count("\n") == 1
    )

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"x": Payload()}, "__author__": "zoo"}))
    assert _predict(volumes, tmp_path / "out", CONFIG, "--weights", evil) == 4
    assert capsys.readouterr().err.startswith(
        f"rsrcnn-predict: error: {evil}: unsafe or corrupt pickle"
    )
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_bad_config_exits_3_in_one_line(volumes, tmp_path, capsys):
    assert (
        _predict(volumes, tmp_path / "out", CONFIG, "--weights", "w.pth", "MODEL.NO_SUCH", "1") == 3
    )
    assert capsys.readouterr().err == (
        f"rsrcnn-predict: error: {CONFIG}: config override: unknown config key MODEL.NO_SUCH\n"
    )
    evil = tmp_path / "evil.yaml"
    evil.write_text(
        f"_BASE_: {CONFIG}\nMODEL:\n  WEIGHTS: !!python/object/apply:os.system "
        f'["touch {tmp_path / "pwned"}"]\n'
    )
    assert _predict(volumes, tmp_path / "out", evil) == 3
    assert capsys.readouterr().err.startswith(f"rsrcnn-predict: error: {evil}: YAML tag ")
    assert not (tmp_path / "pwned").exists()
    assert _predict(volumes, tmp_path / "out", tmp_path / "none.yaml") == 3
    assert "none.yaml: config file does not exist" in capsys.readouterr().err


ORIENTATIONS = {  # affine columns: where each stored voxel axis points in RAS mm
    "RAS": np.diag([0.8, 0.9, 2.0, 1.0]),
    "LPS": np.diag([-0.8, -0.9, 2.0, 1.0]),
    "flipped_S": np.diag([0.8, 0.9, -2.0, 1.0]),
    "SLA": np.array([[0, -0.8, 0, 10], [0, 0, 0.9, -5], [2.0, 0, 0, 3], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_fake_model_output_lands_on_the_input_voxels(orientation, tmp_path):
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 100, (7, 6, 5)).astype(np.float32)
    for voxel in [(0, 0, 0), (6, 2, 1), (3, 5, 4), (1, 4, 2)]:
        data[voxel] = 1000.0
    source = nib.Nifti1Image(data, ORIENTATIONS[orientation])
    (tmp_path / "in").mkdir()
    nib.save(source, tmp_path / "in" / "case.nii.gz")
    predictor = fake_predictor()
    report = predict_inputs(
        predictor, find_inputs(tmp_path / "in"), tmp_path / "out", save_prob=True, progress=False
    )
    assert report.failures == []
    mask = nib.load(tmp_path / "out" / "case.nii.gz")
    assert np.array_equal(mask.affine, nib.load(tmp_path / "in" / "case.nii.gz").affine)
    assert np.array_equal(np.asanyarray(mask.dataobj), (data > 500).astype(np.uint8))
    prob = np.asanyarray(nib.load(tmp_path / "out" / "case_prob.nii.gz").dataobj)
    assert np.array_equal(prob, np.where(data > 500, 0.75, 0).astype(np.float32))
    # the model saw the converter's axial slices, in order
    canonical = np.asanyarray(
        nib.as_closest_canonical(nib.load(tmp_path / "in" / "case.nii.gz")).dataobj
    )
    seen = [x["image"][0].numpy() for x in predictor.model.inputs]
    assert len(seen) == canonical.shape[2]
    for k, image in enumerate(seen):
        assert np.array_equal(image, volume_slice(canonical, 2, k))


def test_hand_computed_voxel_for_an_lps_input(tmp_path):
    """Display pixel (0, 0) of axial slice 1 is the canonical voxel (X-1, Y-1, 1): in LPS,
    (0, 0, 1)."""
    data = np.random.default_rng(2).uniform(1, 2, (5, 4, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0])), tmp_path / "lps.nii")

    def corner_of_second_slice(image, call):
        mask = torch.zeros(image.shape, dtype=torch.bool)
        mask[0, 0] = call == 1
        return mask

    predict_inputs(
        fake_predictor(corner_of_second_slice),
        find_inputs(tmp_path / "lps.nii"),
        tmp_path / "out",
        progress=False,
    )
    mask = np.asanyarray(nib.load(tmp_path / "out" / "lps.nii.gz").dataobj)
    assert list(zip(*np.nonzero(mask))) == [(0, 0, 1)]


def test_to_input_orientation_inverts_as_closest_canonical():
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    for affine in ORIENTATIONS.values():
        img = nib.Nifti1Image(data, affine)
        canonical = np.asanyarray(nib.as_closest_canonical(img).dataobj)
        assert np.array_equal(to_input_orientation(canonical, affine), data)


# ------------------------------------------------------------------ PNG folders
def _write_png(path: Path, array: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


@pytest.mark.parametrize("layout", ["reference", "flat"])
def test_png_folder_gives_mask_pngs_of_the_same_names_and_sizes(layout, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    base = tmp_path / "ref" / "input" if layout == "reference" else tmp_path / "ref"
    names = ["s1/3.png", "s1/12.png", "s2/5.png"] if layout == "reference" else ["3.png", "x.png"]
    arrays = {}
    for i, name in enumerate(names):
        a = rng.integers(0, 150, (40 + 5 * i, 30 + 3 * i))
        a[5:9, 6:8] = 255
        arrays[name] = a
        _write_png(base / name, a)
    if layout == "reference":  # ground truth beside input/ is not an input
        _write_png(tmp_path / "ref" / "gt" / "s1" / "3.png", np.zeros((40, 30)))
    out = tmp_path / "out"
    code = run_cli(
        monkeypatch,
        tmp_path / "ref",
        "-o",
        out,
        "--overlays",
        "--save-prob",
        predictor=fake_predictor(lambda image, call: image > 200),
    )
    assert code == 0
    masks = sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*.png") if "_overlay" not in p.name
    )
    assert masks == sorted(names)
    for name, a in arrays.items():
        with Image.open(out / name) as im:
            assert im.mode == "L" and im.size == (a.shape[1], a.shape[0])
            assert np.array_equal(np.asarray(im), np.where(a > 200, 255, 0))
        stem = name[:-4]
        assert (out / f"{stem}_overlay.png").is_file()
        assert np.load(out / f"{stem}_prob.npy").dtype == np.float32


# ------------------------------------------------------------------ safety
def test_refuses_output_inside_the_input_folder(volumes, monkeypatch, capsys):
    code = run_cli(monkeypatch, volumes, "-o", volumes / "pred", predictor=fake_predictor())
    assert code == 2 and "--allow-output-in-input" in capsys.readouterr().err
    assert not (volumes / "pred").exists()
    assert (
        run_cli(
            monkeypatch,
            volumes / "PWML_000_0000.nii.gz",
            "-o",
            volumes / "PWML_000_0000.nii.gz",
            predictor=fake_predictor(),
        )
        == 2
    )


def test_never_modifies_inputs(volumes, monkeypatch):
    before = checksums(volumes)
    code = run_cli(
        monkeypatch,
        volumes,
        "-o",
        volumes,
        "--allow-output-in-input",
        "--save-prob",
        "--overlays",
        predictor=fake_predictor(lambda image, call: image > image.mean()),
    )
    assert code == 0
    after = checksums(volumes)
    assert {p: after[p] for p in before} == before
    assert (volumes / "PWML_000.nii.gz").is_file()


def test_an_output_name_equal_to_an_input_is_refused(volumes, tmp_path, monkeypatch, capsys):
    # with the earlier names, case "PWML_000"'s mask would be the input file "PWML_000.nii.gz"
    shutil.copy(volumes / "PWML_001_0000.nii.gz", volumes / "PWML_000_lesion.nii.gz")
    before = checksums(volumes)
    code = run_cli(
        monkeypatch,
        volumes,
        "-o",
        volumes,
        "--allow-output-in-input",
        "--mask-suffix",
        "_lesion",
        predictor=fake_predictor(),
    )
    assert code == 1 and "refusing to overwrite an input file" in capsys.readouterr().err
    after = checksums(volumes)
    assert {p: after[p] for p in before} == before


def test_one_bad_file_does_not_lose_the_others(volumes, tmp_path, monkeypatch, capsys):
    good = (volumes / "PWML_000_0000.nii.gz").read_bytes()
    (volumes / "broken_0000.nii.gz").write_bytes(good[: len(good) // 2])
    nib.save(
        nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.float32), np.eye(4)), volumes / "series.nii.gz"
    )
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), volumes / "flat.nii.gz")
    out = tmp_path / "out"
    code = run_cli(monkeypatch, volumes, "-o", out, predictor=fake_predictor())
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "PWML_000.nii.gz",
        "PWML_001.nii.gz",
    ]
    assert "3 failed" in captured.err
    for name in ("broken_0000.nii.gz", "series.nii.gz", "flat.nii.gz"):
        assert str(volumes / name) in captured.err
    lines = captured.err.splitlines()
    assert any("series.nii.gz" in line and "3-D" in line and "4-D" in line for line in lines)
    assert any("flat.nii.gz" in line and "2-D" in line for line in lines)
    assert "truncated or corrupt" in captured.err or "cannot read" in captured.err
    assert f"2 of 5 input(s) predicted, outputs in {out.resolve()}" in captured.out


def test_four_d_input_error_names_the_file(tmp_path):
    path = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), path)
    report = predict_inputs(fake_predictor(), find_inputs(path), tmp_path / "out", progress=False)
    assert [str(p) for p, _ in report.failures] == [str(path)]
    assert report.failures[0][1].startswith(f"{path}: expected a 3-D volume")


# ------------------------------------------------------------------ naming
def test_case_names():
    assert case_name("a/PWML_000_0000.nii.gz") == "PWML_000"
    assert case_name("infant01.nii") == "infant01"
    assert case_name("scan_0001.nii.gz") == "scan_0001"  # only the T1w channel suffix is dropped
    assert case_name("_0000.nii.gz") == "_0000"


# ------------------------------------------------------------------ nnU-Net habits, ensembles
def test_continue_skips_cases_whose_outputs_exist(volumes, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert run_cli(monkeypatch, "-i", volumes, "-o", out, predictor=fake_predictor()) == 0
    first = out / "PWML_000.nii.gz"
    first.write_bytes(b"kept")  # a finished output (its content is not checked)
    (out / "PWML_001.nii.gz").unlink()
    assert (
        run_cli(monkeypatch, "-i", volumes, "-o", out, "--continue", predictor=fake_predictor())
        == 0
    )
    assert first.read_bytes() == b"kept" and (out / "PWML_001.nii.gz").is_file()
    assert "1 of 2 input(s) predicted (1 skipped: outputs exist)" in capsys.readouterr().out
    # without --continue both are predicted again
    assert run_cli(monkeypatch, "-i", volumes, "-o", out, predictor=fake_predictor()) == 0
    assert first.read_bytes() != b"kept"


def test_an_input_named_like_its_mask_is_never_overwritten(volumes, monkeypatch, capsys):
    # nnU-Net's names: the mask of case.nii.gz is case.nii.gz; predicting into the input folder
    shutil.copy(volumes / "PWML_000_0000.nii.gz", volumes / "plain.nii.gz")
    before = checksums(volumes)
    code = run_cli(
        monkeypatch, volumes, "-o", volumes, "--allow-output-in-input", predictor=fake_predictor()
    )
    assert (
        code == 1 and "plain.nii.gz: refusing to overwrite an input file" in capsys.readouterr().err
    )
    after = checksums(volumes)
    assert {p: after[p] for p in before} == before


def _checkpoint(path, seed):
    from detectron2.modeling import build_model

    from rsrcnn_d2 import get_rsrcnn_cfg

    torch.manual_seed(seed)
    model = build_model(get_rsrcnn_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


def args_of(*weights, out="o"):
    return ["-i", "x.nii.gz", "-o", out, "--config-file", CONFIG, "--weights", *map(str, weights)]


def test_several_checkpoints_and_tta_make_one_ensemble(tmp_path, monkeypatch):
    from rsrcnn_d2.inference.ensemble import LesionEnsemble

    built = {}

    def spy(cfg, **kwargs):
        built.update(kwargs, device=cfg.MODEL.DEVICE)
        return fake_predictor()

    from rsrcnn_d2.inference import predictor as predictor_module

    monkeypatch.setattr(predictor_module.LesionPredictor, "from_config", staticmethod(spy))
    a, b = _checkpoint(tmp_path / "a.pth", 0), _checkpoint(tmp_path / "b.pth", 1)
    args = cli.parse_args(
        [
            "-i",
            "x.nii.gz",
            "-o",
            str(tmp_path / "o"),
            "--config-file",
            str(CONFIG),
            "--weights",
            str(a),
            str(b),
            "MODEL.DEVICE",
            "cpu",
        ]
    )
    cli.build_predictor(args)
    # no --tta / --disable-tta: the predictor takes the config's TEST.FLIP_TTA (issue 23)
    assert (
        built["weights"] == [str(a), str(b)] and built["tta"] is None and built["device"] == "cpu"
    )
    cli.build_predictor(cli.parse_args([*args_of(a, b), "--tta"]))
    assert built["tta"] is True
    args = cli.parse_args(
        [
            "-i",
            "x.nii.gz",
            "-o",
            str(tmp_path / "o"),
            "--config-file",
            str(CONFIG),
            "--weights",
            str(a),
            "--disable-tta",
            "-device",
            "cpu",
        ]
    )
    cli.build_predictor(args)
    assert built["weights"] == [str(a)] and built["tta"] is False
    # the real thing: two checkpoints + flip are one LesionEnsemble of 4 members
    from rsrcnn_d2 import get_rsrcnn_cfg

    monkeypatch.undo()

    cfg = get_rsrcnn_cfg(CONFIG, ["MODEL.DEVICE", "cpu"])
    predictor = LesionPredictor.from_config(cfg, weights=[str(a), str(b)], tta=True)
    assert isinstance(predictor.model, LesionEnsemble) and predictor.model.members == 4
    assert not torch.equal(
        predictor.model.models[0].roi_heads.mask_head.predictor.weight,
        predictor.model.models[1].roi_heads.mask_head.predictor.weight,
    )


def test_model_folder_ensembles_the_folds_with_their_config(tmp_path, monkeypatch):
    import yaml

    cv = tmp_path / "cv"
    for fold in (0, 1):
        _checkpoint(cv / f"fold_{fold}" / "model_best.pth", fold)
        (cv / f"fold_{fold}" / "config.yaml").write_text(yaml.safe_dump({"_BASE_": str(CONFIG)}))
    seen = {}

    def spy(cfg, **kwargs):
        seen.update(kwargs)
        return fake_predictor()

    from rsrcnn_d2.inference import predictor as predictor_module

    monkeypatch.setattr(predictor_module.LesionPredictor, "from_config", staticmethod(spy))
    args = cli.parse_args(
        ["-i", "x.nii.gz", "-o", str(tmp_path / "o"), "-m", str(cv), "-device", "cpu"]
    )
    cli.build_predictor(args)
    assert seen["weights"] == [
        str(cv / "fold_0" / "model_best.pth"),
        str(cv / "fold_1" / "model_best.pth"),
    ]
    args = cli.parse_args(
        ["-i", "x.nii.gz", "-o", str(tmp_path / "o"), "-m", str(cv), "-f", "1", "-device", "cpu"]
    )
    cli.build_predictor(args)
    assert seen["weights"] == [str(cv / "fold_1" / "model_best.pth")]
    with pytest.raises(PWMLDataError, match="fold_3: no model_best.pth or model_final.pth"):
        cli.build_predictor(cli.parse_args(["-i", "x", "-o", "o", "-m", str(cv), "-f", "3"]))


def test_axis_names_come_from_one_table():
    from rsrcnn_d2.cli import evaluate as evaluate_cli
    from rsrcnn_d2.data.nifti import AXES, axis_name

    for parser in (cli.build_parser(), evaluate_cli.build_parser()):
        axis = next(a for a in parser._actions if a.dest == "axis")
        assert (
            axis.choices == list(AXES) == ["sagittal", "coronal", "axial"]
            and axis.default == "axial"
        )
    assert [axis_name(i) for i in (0, 1, 2)] == list(AXES) and axis_name("Coronal") == "coronal"
    with pytest.raises(ValueError, match="unknown slice axis 'top'"):
        axis_name("top")


def test_continue_never_takes_an_input_file_for_a_finished_output(volumes, monkeypatch, capsys):
    # nnU-Net's names, predicting into the input folder: case "plain"'s mask would be the input
    shutil.copy(volumes / "PWML_000_0000.nii.gz", volumes / "plain.nii.gz")
    code = run_cli(
        monkeypatch,
        volumes,
        "-o",
        volumes,
        "--allow-output-in-input",
        "--continue",
        predictor=fake_predictor(),
    )
    err = capsys.readouterr().err
    assert code == 1 and "plain.nii.gz: refusing to overwrite an input file" in err


# ------------------------------------------------- issue 23: the inference calibrated with
def _tuned_config(tmp_path, flip_tta: bool, votes: int) -> Path:
    """Row E's config as tools/tune_operating_point.py writes it after calibrating with
    ``flip_tta`` (one checkpoint, ``votes`` members agreeing)."""
    from rsrcnn_d2 import get_rsrcnn_cfg
    from rsrcnn_d2.inference.calibration import InferenceSettings, calibration_record
    from rsrcnn_d2.tuning import write_tuned_config

    record = calibration_record(get_rsrcnn_cfg(CONFIG), InferenceSettings(flip_tta, 1, votes))
    return write_tuned_config(
        tmp_path / "E_tuned.yaml", CONFIG, None, score_threshold=0.35, inference=record
    )


@pytest.mark.parametrize(
    "flag, running, warned",
    [
        ([], "flip TTA on (from the config), 1 model, ensemble votes 2 of 2 members", False),
        (["--tta"], "flip TTA on (from --tta), 1 model, ensemble votes 2 of 2 members", False),
        (
            ["--disable-tta"],
            "flip TTA off (from --disable-tta), 1 model, no ensemble vote",
            True,
        ),
    ],
)
def test_predict_runs_the_inference_its_config_was_calibrated_with(
    tmp_path, capsys, flag, running, warned
):
    """Row E calibrated with flip TTA: predict runs it so unless told otherwise, says what
    runs in one line, and warns when the user's choice is not what was calibrated."""
    from rsrcnn_d2.tool_setup import setup_tool_logging

    tuned = _tuned_config(tmp_path, flip_tta=True, votes=2)
    weights = _checkpoint(tmp_path / "e.pth", 0)
    setup_tool_logging()
    args = ["-i", "x.nii.gz", "-o", str(tmp_path / "o"), "--config-file", str(tuned)]
    predictor = cli.build_predictor(cli.parse_args([*args, "--weights", str(weights), *flag]))
    assert predictor.inference.flip_tta is (flag != ["--disable-tta"])
    out = capsys.readouterr().out.splitlines()
    lines = [ln.split("]: ", 1)[1] for ln in out if " rsrcnn_d2.inference.calibration " in ln]
    verdict = "NOT as the operating point was calibrated" if warned else "as the operating point"
    assert lines[0].startswith(f"inference: {running}; {verdict}")
    if warned:
        assert lines[1] == (
            "the operating point (MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.35) was calibrated with "
            "flip TTA on, 1 model, ensemble votes 2 of 2 members, this run uses flip TTA off, "
            "1 model, no ensemble vote: the threshold was chosen for other scores (calibrate "
            "again with tools/tune_operating_point.py and the same settings, or run as "
            "calibrated)"
        )
    assert len(lines) == 1 + warned


def test_predict_warns_when_an_ensemble_replaces_the_calibrated_single_model(tmp_path, capsys):
    from rsrcnn_d2.tool_setup import setup_tool_logging

    tuned = _tuned_config(tmp_path, flip_tta=False, votes=1)
    a, b = _checkpoint(tmp_path / "a.pth", 0), _checkpoint(tmp_path / "b.pth", 1)
    setup_tool_logging()
    args = ["-i", "x.nii.gz", "-o", str(tmp_path / "o"), "--config-file", str(tuned)]
    predictor = cli.build_predictor(cli.parse_args([*args, "--weights", str(a), str(b)]))
    assert (predictor.inference.models, predictor.inference.flip_tta) == (2, False)
    out = capsys.readouterr().out
    assert "inference: flip TTA off (from the config), 2 models, ensemble votes 2 of 2" in out
    assert "was calibrated with flip TTA off, 1 model, no ensemble vote, this run uses" in out


def test_an_uncalibrated_config_says_so_and_tta_follows_it(tmp_path, capsys):
    from rsrcnn_d2.tool_setup import setup_tool_logging

    weights = _checkpoint(tmp_path / "e.pth", 0)
    setup_tool_logging()
    predictor = cli.build_predictor(cli.parse_args(args_of(weights, out=str(tmp_path / "o"))))
    assert predictor.inference.flip_tta is False  # row E's TEST.FLIP_TTA, no longer forced on
    out = capsys.readouterr().out
    assert (
        "inference: flip TTA off (from the config), 1 model, no ensemble vote; operating point "
        "not calibrated (no TEST.CALIBRATED_WITH)" in out
    )
    assert "WARNING" not in out


def test_two_inputs_with_one_output_name_are_refused_before_anything_is_written(
    volumes, tmp_path, monkeypatch, capsys
):
    """a + a_prob with probabilities: a's map would be a_prob's mask (exit 2, both named,
    nothing written); 43.png + 43_overlay.png with overlays likewise."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(volumes / "PWML_000_0000.nii.gz", inputs / "a.nii.gz")
    shutil.copy(volumes / "PWML_001_0000.nii.gz", inputs / "a_prob.nii.gz")
    out = tmp_path / "out"
    code = run_cli(
        monkeypatch, inputs, "-o", out, "--save-probabilities", predictor=fake_predictor()
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err == (
        f"rsrcnn-predict: error: {inputs / 'a_prob.nii.gz'}: its output a_prob.nii.gz is also "
        "a.nii.gz's; rename one of the two inputs (or predict them into different folders)"
    )
    assert not out.exists() or list(out.iterdir()) == []
    assert run_cli(monkeypatch, inputs, "-o", out, predictor=fake_predictor()) == 0  # no maps
    slices = tmp_path / "slices"
    slices.mkdir()
    for name in ("43", "43_overlay"):
        Image.fromarray(np.full((16, 16), 9, np.uint8)).save(slices / f"{name}.png")
    code = run_cli(
        monkeypatch, slices, "-o", tmp_path / "o2", "--overlays", predictor=fake_predictor()
    )
    assert code == 2 and "its output 43_overlay.png is also 43.png's" in capsys.readouterr().err


def test_a_second_run_into_a_busy_output_folder_is_refused(volumes, tmp_path, monkeypatch, capsys):
    import json
    import socket
    import subprocess
    import sys

    from rsrcnn_d2.data.output_lock import LOCK_FILE

    out = tmp_path / "out"
    out.mkdir()
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record = {"pid": first.pid, "host": socket.gethostname(), "program": "rsrcnn-predict",
                  "started": "now"}  # fmt: skip
        (out / LOCK_FILE).write_text(json.dumps(record))
        code = run_cli(monkeypatch, volumes, "-o", out, predictor=fake_predictor())
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(f"rsrcnn-predict: error: {out}: in use by rsrcnn-")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written
    finally:
        first.kill()
        first.wait()
    assert run_cli(monkeypatch, volumes, "-o", out, predictor=fake_predictor()) == 0  # stale
    assert not (out / LOCK_FILE).exists() and (out / "PWML_000.nii.gz").is_file()


def test_continue_redoes_a_case_killed_before_all_its_outputs(volumes, tmp_path, monkeypatch):
    """A kill during overlays leaves the mask but not every overlay; --continue trusts only the
    completion marker written after a case's last output."""
    out = tmp_path / "out"
    assert run_cli(monkeypatch, volumes, "-o", out, predictor=fake_predictor()) == 0
    mask = out / "PWML_000.nii.gz"
    mask.write_bytes(b"from the first run")
    # asked for overlays now: the first run made none, so the case is not finished
    args = [volumes, "-o", out, "--continue", "--overlays"]
    assert run_cli(monkeypatch, *args, predictor=fake_predictor()) == 0
    overlays = sorted((out / "PWML_000_overlays").iterdir())
    assert mask.read_bytes() != b"from the first run" and overlays
    # killed during the overlays: some missing, no marker
    mask.write_bytes(b"interrupted")
    overlays[-1].unlink()
    (out / ".PWML_000.nii.gz.done").unlink()
    assert run_cli(monkeypatch, *args, predictor=fake_predictor()) == 0
    assert mask.read_bytes() != b"interrupted" and overlays[-1].is_file()
    # finished: left alone
    mask.write_bytes(b"finished")
    assert run_cli(monkeypatch, *args, predictor=fake_predictor()) == 0
    assert mask.read_bytes() == b"finished"
