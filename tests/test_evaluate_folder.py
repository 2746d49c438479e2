"""rsrcnn-evaluate: a folder of predicted NIfTI masks against reference labels, by hand."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from rsrcnn_d2.cli.evaluate import main
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.evaluation.folder import evaluate_folder, pair_cases

AFFINE = np.diag([0.5, 0.5, 2.0, 1.0])  # RAS+ already: axial slices are [:, :, z]


def _save(path, volume, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume.astype(np.uint8), affine), str(path))


def _case():
    """Truth: lesion A over z=1,2 (2x2 voxels each), lesion B one voxel at z=3.

    Prediction: A on z=1 only, plus a false-positive voxel on z=0.
    """
    truth = np.zeros((6, 8, 4), np.uint8)
    truth[1:3, 1:3, 1:3] = 1
    truth[5, 6, 3] = 1
    pred = np.zeros_like(truth)
    pred[1:3, 1:3, 1] = 1
    pred[0, 7, 0] = 1
    return pred, truth


@pytest.fixture
def folders(tmp_path):
    pred, truth = _case()
    _save(tmp_path / "ref" / "sub01.nii.gz", truth)
    _save(tmp_path / "pred" / "sub01_lesion.nii.gz", pred)  # rsrcnn-predict's name
    _save(tmp_path / "pred" / "sub01_prob.nii.gz", pred)  # --save-prob output: not a mask
    return tmp_path / "pred", tmp_path / "ref"


def test_hand_computed_figures_over_whole_volumes(folders, tmp_path):
    summary = evaluate_folder(*folders, tmp_path / "out", workers=1, progress=False)
    strict = summary["pwml_strict"]
    # slices z0..z3 strict Dice: FP only 0, exact 1, missed 0, missed 0
    assert strict["n_slices"] == 4 and strict["Dice"] == pytest.approx(0.25)
    # one subject in 3-D: tp 4, fp 1, fn 5
    assert summary["pwml_subject3d"]["Dice"] == pytest.approx(8 / 14)
    # 2-D lesions: A at z1 (found), A at z2, B at z3 (missed); the z0 blob is false
    assert summary["pwml_lesion"] == {
        "true_lesions": 3.0,
        "found": 1.0,
        "predicted": 2.0,
        "false_positives": 1.0,
    }
    # 3-D lesions: A (found), B (missed); two predicted components, one false
    lesion3d = summary["pwml_lesion3d"]
    assert (
        lesion3d["true_lesions"],
        lesion3d["found"],
        lesion3d["predicted"],
        lesion3d["false_positives"],
    ) == (2, 1, 2, 1)
    assert lesion3d["F1"] == pytest.approx(2 / (2 + 1 + 1))
    # the headline: the whole volume's Dice (tp 4, fp 1, fn 5) and the 3-D lesion F1
    head = summary["headline"]
    assert head["case_dice"] == pytest.approx(8 / 14) and head["n_cases_scored"] == 1
    assert head["n_cases_empty_both"] == 0 and head["lesion_f1_3d"] == pytest.approx(0.5)
    assert summary["slices"].startswith("all slices; slice figures over slices with a lesion")
    rows = list(csv.DictReader(open(tmp_path / "out" / "slices.csv")))
    assert [int(r["slice_index"]) for r in rows] == [0, 1, 2, 3]
    assert {r["subject"] for r in rows} == {"sub01"}
    assert float(rows[1]["spacing_row"]) == 0.5
    case = next(csv.DictReader(open(tmp_path / "out" / "cases.csv")))
    assert (case["true_lesions_3d"], case["found_3d"]) == ("2", "1")
    assert json.load(open(tmp_path / "out" / "summary.json"))["cases"] == ["sub01"]


def test_lesion_slices_only_is_the_papers_selection(folders):
    summary = evaluate_folder(*folders, None, lesion_slices_only=True, workers=1, progress=False)
    assert summary["pwml_strict"]["n_slices"] == 3
    assert summary["pwml_strict"]["Dice"] == pytest.approx(1 / 3)
    assert summary["slices"].startswith("lesion slices only")


def test_nnunet_names_pair_and_two_workers_agree(tmp_path):
    pred, truth = _case()
    for case in ("a", "b", "c"):
        _save(tmp_path / "ref" / f"{case}.nii.gz", truth)
        _save(tmp_path / "pred" / f"{case}.nii.gz", pred)  # nnU-Net's name
    one = evaluate_folder(tmp_path / "pred", tmp_path / "ref", workers=1, progress=False)
    two = evaluate_folder(tmp_path / "pred", tmp_path / "ref", workers=2, progress=False)
    assert one["cases"] == ["a", "b", "c"] and one["pwml_strict"]["n_slices"] == 12
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_geometry_mismatch_names_both_files(folders):
    pred_dir, ref_dir = folders
    pred, _ = _case()
    _save(pred_dir / "sub01_lesion.nii.gz", pred, affine=np.diag([0.5, 0.5, 3.0, 1.0]))
    with pytest.raises(PWMLDataError, match="affine differs") as e:
        evaluate_folder(pred_dir, ref_dir, workers=1, progress=False)
    assert "sub01_lesion.nii.gz" in str(e.value) and "sub01.nii.gz" in str(e.value)
    assert "\n" not in str(e.value)  # one line, with what differs
    assert str(e.value).endswith(
        "(by up to 1; voxel sizes (0.5, 0.5, 3.0) vs (0.5, 0.5, 2.0) mm, "
        "origins (0.0, 0.0, 0.0) vs (0.0, 0.0, 0.0) mm)"
    )
    _save(pred_dir / "sub01_lesion.nii.gz", pred[:, :, :3])
    with pytest.raises(PWMLDataError, match=r"shape \(6, 8, 3\) differs"):
        evaluate_folder(pred_dir, ref_dir, workers=1, progress=False)


def test_unpaired_cases(folders):
    pred_dir, ref_dir = folders
    pred, truth = _case()
    _save(ref_dir / "sub02.nii.gz", truth)
    with pytest.raises(PWMLDataError, match="no prediction for 1 reference case.*sub02"):
        pair_cases(pred_dir, ref_dir)
    assert [p.case for p in pair_cases(pred_dir, ref_dir, allow_missing=True)] == ["sub01"]
    _save(pred_dir / "sub03.nii.gz", pred)
    with pytest.raises(PWMLDataError, match="no reference label for 1 predicted case.*sub03"):
        pair_cases(pred_dir, ref_dir, allow_missing=True)


def test_non_binary_mask_refused_unless_binarized(folders):
    pred_dir, ref_dir = folders
    _, truth = _case()
    _save(ref_dir / "sub01.nii.gz", truth * 2)
    with pytest.raises(PWMLDataError, match="not binary"):
        evaluate_folder(pred_dir, ref_dir, workers=1, progress=False)
    summary = evaluate_folder(pred_dir, ref_dir, binarize=True, workers=1, progress=False)
    assert summary["pwml_strict"]["Dice"] == pytest.approx(0.25)


def test_cli_table_default_output_and_exit_codes(folders, capsys):
    pred_dir, ref_dir = folders
    assert main([str(ref_dir), str(pred_dir), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("HEADLINE  Dice per case (3-D) 0.5714 over 1 cases")
    assert "lesion F1 (3-D lesions) 0.5000: 1/2 lesions found" in out and "all slices" in out
    assert (pred_dir / "evaluation" / "summary.json").is_file()
    assert (pred_dir / "evaluation" / "log.txt").read_text().startswith("HEADLINE")  # as printed
    assert main([str(ref_dir), str(pred_dir / "missing"), "--no-progress"]) == 2
    assert "prediction folder does not exist" in capsys.readouterr().err


def test_spacing_follows_the_canonical_axes_whatever_the_stored_order(tmp_path):
    # stored axes (S, A, R) with voxel sizes (3, 1, 1) mm: canonical (R, A, S) sizes (1, 1, 3),
    # so an axial slice has 1 x 1 mm pixels and 3 mm between slices
    pred, truth = _case()  # canonical (x, y, z) = (R, A, S)
    affine = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [3, 0, 0, 0], [0, 0, 0, 1]], float)
    stored = lambda v: np.ascontiguousarray(np.transpose(v, (2, 1, 0)))  # noqa: E731
    _save(tmp_path / "ref" / "c.nii.gz", stored(truth), affine)
    _save(tmp_path / "pred" / "c.nii.gz", stored(pred), affine)
    out = tmp_path / "out"
    evaluate_folder(tmp_path / "pred", tmp_path / "ref", out, workers=1, progress=False)
    rows = list(csv.DictReader(open(out / "slices.csv")))
    assert (float(rows[0]["spacing_row"]), float(rows[0]["spacing_col"])) == (1.0, 1.0)
    assert len(rows) == 4  # the 4 axial slices, as for the canonically stored case


def test_a_model_that_finds_nothing_scores_zero_on_whole_volumes(tmp_path, capsys):
    """The issue's case: empty predictions on whole volumes, most slices empty in both, never
    score a headline (or slice) Dice above 0; a lesion-free case predicted empty is left out
    of the per-case Dice and counted, and summary.json stays valid JSON (null, not NaN)."""
    _, truth = _case()
    empty = np.zeros_like(truth)
    big = np.zeros((6, 8, 12), np.uint8)  # 12 slices, a lesion on one: 11 empty in both
    big[2, 2, 5] = 1
    for case, ref in (("sub01", truth), ("sub02", big), ("healthy", empty)):
        _save(tmp_path / "ref" / f"{case}.nii.gz", ref)
        _save(tmp_path / "pred" / f"{case}.nii.gz", np.zeros_like(ref))
    out = tmp_path / "eval"
    summary = evaluate_folder(tmp_path / "pred", tmp_path / "ref", out, workers=1, progress=False)
    head, strict = summary["headline"], summary["pwml_strict"]
    assert head["case_dice"] == 0.0 and head["n_cases_scored"] == 2
    assert head["n_cases_empty_both"] == 1 and head["lesion_f1_3d"] == 0.0
    assert strict["Dice"] == 0.0 and strict["n_scored"] == 4  # 3 + 1 lesion slices
    assert strict["n_both_empty"] == 4 + 11 + 1 + 0 and strict["n_slices"] == 20
    text = (out / "summary.json").read_text()
    assert "NaN" not in text
    written = json.loads(text)
    assert written["pwml_strict"]["HD"] is None  # undefined: null
    assert written["headline"]["case_dice"] == 0.0
    rows = list(csv.DictReader(open(out / "slices.csv")))
    both_empty = [r for r in rows if r["truth_pixels"] == "0" and r["pred_pixels"] == "0"]
    assert len(both_empty) == 16 and all(r["dice"] == "" and r["hd95_mm"] == "" for r in both_empty)
    assert main([str(tmp_path / "ref"), str(tmp_path / "pred"), "-o", str(out), "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith(
        "HEADLINE  Dice per case (3-D) 0.0000 over 2 cases; 1 cases empty in truth and "
        "prediction left out (no Dice)"
    )


def test_a_lesion_free_case_is_fine_with_lesion_slices_only(folders):
    pred_dir, ref_dir = folders
    empty = np.zeros((6, 8, 4), np.uint8)
    _save(ref_dir / "healthy.nii.gz", empty)
    _save(pred_dir / "healthy.nii.gz", empty)
    summary = evaluate_folder(*folders, None, lesion_slices_only=True, workers=1, progress=False)
    assert summary["cases"] == ["healthy", "sub01"] and summary["pwml_strict"]["n_slices"] == 3


def test_a_reference_case_named_like_a_probability_map_is_not_dropped(tmp_path, capsys):
    """A reference b_prob.nii.gz is a case: scored, or named as an error, never skipped from
    both folders (the prediction folder's _prob files are rsrcnn-predict's maps)."""
    pred, truth = _case()
    for case in ("a", "b_prob"):
        _save(tmp_path / "ref" / f"{case}.nii.gz", truth)
    _save(tmp_path / "pred" / "a.nii.gz", pred)
    _save(tmp_path / "pred" / "b_prob.nii.gz", pred)  # its prediction: taken as a map
    with pytest.raises(PWMLDataError, match="no prediction for 1 reference case.*b_prob"):
        pair_cases(tmp_path / "pred", tmp_path / "ref")
    _save(tmp_path / "pred" / "b_prob_lesion.nii.gz", pred)  # named unambiguously
    assert [p.case for p in pair_cases(tmp_path / "pred", tmp_path / "ref")] == ["a", "b_prob"]


def test_an_output_that_is_a_file_is_one_line_exit_2(folders, tmp_path, capsys):
    pred_dir, ref_dir = folders
    taken = tmp_path / "eval.txt"
    taken.write_text("a user's file")
    assert main([str(ref_dir), str(pred_dir), "-o", str(taken), "--no-progress"]) == 2
    err = capsys.readouterr().err
    expected = f"{taken}: is a file; -o takes the folder to write the figures into"
    assert err == f"rsrcnn-evaluate: error: {expected}\n"
    assert taken.read_text() == "a user's file"


def test_a_users_file_in_the_output_folder_is_never_replaced(folders, tmp_path, capsys):
    pred_dir, ref_dir = folders
    out = tmp_path / "eval"
    out.mkdir()
    (out / "summary.json").write_text('{"mine": true}')
    assert main([str(ref_dir), str(pred_dir), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"rsrcnn-evaluate: error: {out / 'summary.json'}: exists and was not written by "
        "rsrcnn-evaluate: it is not replaced; choose another output folder or move the file"
    )
    assert (out / "summary.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    # its own outputs, from an earlier run, are replaced as before
    other = tmp_path / "eval2"
    assert main([str(ref_dir), str(pred_dir), "-o", str(other), "--no-progress"]) == 0
    assert main([str(ref_dir), str(pred_dir), "-o", str(other), "--no-progress"]) == 0
