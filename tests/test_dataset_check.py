"""The dataset check (issue 23): every problem of a cohort in one pass, the fingerprint, and the
conversion that runs the same check first and writes nothing when it fails."""

import json

import numpy as np
import pytest
from PIL import Image

from rsrcnn_d2.cli import make_cohort as cohort_cli
from rsrcnn_d2.cli import prepare as prepare_cli
from rsrcnn_d2.data.check import DatasetCheckError, check_dataset
from rsrcnn_d2.data.convert import convert_pwml
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.nifti import read_nifti_pair
from rsrcnn_d2.data.sources import discover_subjects
from rsrcnn_d2.data.splits import make_splits

from test_data_fixtures import nnunet_case, save_nifti

SHAPE = (16, 16, 4)
RGB = [("R", "u1"), ("G", "u1"), ("B", "u1")]


def _image(shape=SHAPE):
    return (np.arange(np.prod(shape)) % 200 + 100).astype(np.int16).reshape(shape)


def _mask(*voxels, shape=SHAPE):
    mask = np.zeros(shape, np.uint8)
    for v in voxels:
        mask[v] = 1
    return mask


def _case(root, case, mask, image=None, affine=None):
    return nnunet_case(root, case, _image(mask.shape) if image is None else image, mask, affine)


def _hand_counted(root):
    """a: slice 1 holds a 2x2 lesion and a lone voxel, slice 3 a 1x3 line; b: a diagonal pair
    on slice 0 (one lesion, 8-connected); free: no lesion. Every volume has 4 axial slices."""
    a = _mask(*[(x, y, 1) for x in (2, 3) for y in (2, 3)], (10, 10, 1), (5, 7, 3), (6, 7, 3))
    a[7, 7, 3] = 1
    _case(root, "a", a)
    _case(root, "b", _mask((4, 4, 0), (5, 5, 0)))
    _case(root, "free", _mask())
    return root


def _kinds(report):
    return sorted((p.file, p.severity) for p in report.problems)


def test_fingerprint_of_a_hand_counted_cohort(tmp_path):
    raw = _hand_counted(tmp_path / "raw")
    report = check_dataset(raw)
    assert report.ok
    drawn = "(seed 0, fractions 0.7 0.15 0.15) is empty: 2 subjects give it none, so"
    assert [str(p) for p in report.problems] == [
        f"{raw / 'labelsTr' / 'free.nii.gz'}: warning: subject 'free' has no lesion: no lesion "
        "slice to convert, so it is left out (--all-slices keeps it)",
        f"{raw}: warning: the val split {drawn} the validation loss and model selection would "
        "see no lesion",
        f"{raw}: warning: the test split {drawn} every figure on it would be undefined",
    ]
    assert [s.subject for s in report.kept] == ["a", "b"]
    fp = report.fingerprint
    assert (fp["subjects"], fp["subjects_readable"], fp["subjects_lesion_free"]) == (3, 3, 1)
    assert (fp["slices"], fp["lesion_slices"], fp["lesions"]) == (12, 3, 4)
    assert fp["lesions_per_subject"] == {"min": 0.0, "median": 1.0, "max": 3.0}
    # areas 4, 1, 3 (a) and 2 (b): numpy's linear percentiles of [1, 2, 3, 4]
    assert fp["lesion_size_px"] == pytest.approx(
        {"p5": 1.15, "p25": 1.75, "p50": 2.5, "p75": 3.25, "p95": 3.85}
    )
    assert fp["spacing_mm"]["through_plane"] == {"min": 2.0, "median": 2.0, "max": 2.0}
    assert fp["spacing_mm"]["row"] == {"min": 0.8, "median": 0.8, "max": 0.8}
    assert fp["converted"] == {"subjects": 2, "slices": 3, "lesions": 4}

    every = check_dataset(raw, lesion_slices_only=False, fractions=(1.0, 0.0, 0.0))
    assert every.problems == [] and [s.subject for s in every.kept] == ["a", "b", "free"]
    assert every.fingerprint["converted"] == {"subjects": 3, "slices": 12, "lesions": 4}


def test_conversion_writes_what_the_fingerprint_says_and_names_who_was_left_out(tmp_path):
    raw = _hand_counted(tmp_path / "raw")
    summary = convert_pwml(raw, tmp_path / "out", workers=1)
    assert (summary["num_subjects"], summary["num_images"], summary["num_annotations"]) == (2, 3, 4)
    assert summary["left_out_lesion_free"] == ["free"]
    assert summary["fingerprint"]["converted"] == {"subjects": 2, "slices": 3, "lesions": 4}
    written = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert written["fingerprint"] == summary["fingerprint"]
    assert json.loads((tmp_path / "out" / "splits.json").read_text())["subjects"] == ["a", "b"]


def test_every_problem_of_a_cohort_in_one_pass(tmp_path):
    raw = tmp_path / "raw"
    images, labels = raw / "imagesTr", raw / "labelsTr"
    _case(raw, "good", _mask((3, 3, 1)))
    _case(raw, "shape", _mask((3, 3, 1), shape=(16, 16, 3)), image=_image())
    nonbinary = _mask((3, 3, 1))
    nonbinary[4, 4, 2] = 2
    nan_image = _image().astype(np.float32)
    nan_image[0, 0, 0] = np.nan
    _case(raw, "both", nonbinary, image=nan_image)  # two problems of one subject: both listed
    _case(raw, "empty", _mask((3, 3, 1)), image=np.zeros((0, 32, 4), np.int16))
    _case(raw, "rgb", np.zeros(SHAPE, RGB))
    save_nifti(images / "nochannel.nii.gz", _image())
    save_nifti(images / "t2only_0001.nii.gz", _image())
    save_nifti(labels / "t2only.nii.gz", _mask((3, 3, 1)))
    save_nifti(images / "nomask_0000.nii.gz", _image())
    save_nifti(labels / "orphan.nii.gz", _mask((3, 3, 1)))
    report = check_dataset(raw)
    assert not report.ok and report.warnings == []
    assert {p.file: p.message for p in report.errors} == {
        str(images / "nochannel.nii.gz"): "no nnU-Net channel suffix; name the T1w image "
        "nochannel_0000.nii.gz",
        str(images / "t2only_0001.nii.gz"): "channel 0001 of case 't2only' without its T1w "
        "image t2only_0000 (the only channel used)",
        str(images / "nomask_0000.nii.gz"): f"no lesion mask {labels / 'nomask.nii.gz'}",
        str(labels / "orphan.nii.gz"): "lesion mask without its image "
        f"{images / 'orphan_0000.nii.gz'}",
        str(images / "both_0000.nii.gz"): "image contains NaN or infinite intensities",
        str(labels / "both.nii.gz"): "mask is not binary (values such as [2] besides 0 and 1); "
        "pass binarize=True / --binarize to treat every non-zero voxel as lesion",
        str(images / "empty_0000.nii.gz"): "volume of shape (0, 32, 4) has no voxels",
        str(labels / "rgb.nii.gz"): "unsupported mask voxel type RGB colour; expected integer "
        "or float labels",
        str(labels / "shape.nii.gz"): "mask shape (16, 16, 3) differs from image shape "
        f"(16, 16, 4) of {images / 'shape_0000.nii.gz'}",
    }
    assert report.splits is None  # a split of subjects still to be repaired would change
    assert report.fingerprint["subjects"] == 5 and report.fingerprint["subjects_readable"] == 1


def test_conversion_refuses_listing_every_error_before_writing(tmp_path, capsys):
    raw = tmp_path / "raw"
    _case(raw, "good", _mask((3, 3, 1)))
    _, shape = _case(raw, "shape", _mask((3, 3, 1), shape=(16, 16, 3)), image=_image())
    rgb, _ = _case(raw, "rgb", _mask((3, 3, 1)), image=np.zeros(SHAPE, RGB))
    out = tmp_path / "out"
    with pytest.raises(DatasetCheckError) as err:
        convert_pwml(raw, out, workers=1)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{raw}: 2 errors, nothing was written:"
    assert sorted(lines[1:]) == sorted(
        [
            f"  {rgb}: unsupported voxel type RGB colour",
            f"  {shape}: mask shape (16, 16, 3) differs from image shape (16, 16, 4) of "
            f"{raw / 'imagesTr' / 'shape_0000.nii.gz'}",
        ]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no output, no staging
    assert prepare_cli.main([str(raw), "-o", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"prepare_pwml.py: error: {raw}: 2 errors, nothing was written:" in err
    assert f"  {rgb}: unsupported voxel type RGB colour" in err.splitlines()
    assert not out.exists()


def test_colour_mask_and_zero_sized_volumes_are_data_errors_not_tracebacks(tmp_path, capsys):
    """Hardening: an RGB mask gave a TypeError, a (0, 32, 4) pair an IndexError."""
    _, rgb = _case(tmp_path / "rgb", "a", np.zeros(SHAPE, RGB))
    argv = ["-o", str(tmp_path / "out"), "--workers", "1"]
    assert prepare_cli.main([str(tmp_path / "rgb"), *argv]) == 2
    message = f"{rgb}: unsupported mask voxel type RGB colour; expected integer or float labels"
    assert f"prepare_pwml.py: error: {message}" in capsys.readouterr().err.splitlines()
    (subject,) = discover_subjects(tmp_path / "rgb")
    with pytest.raises(PWMLDataError) as err:
        read_nifti_pair(subject.image, subject.mask)
    assert str(err.value) == message

    empty = np.zeros((0, 32, 4), np.uint8)
    image, mask = _case(tmp_path / "empty", "a", empty, image=empty.astype(np.int16))
    assert prepare_cli.main([str(tmp_path / "empty"), *argv]) == 2
    err = capsys.readouterr().err.splitlines()
    header = f"prepare_pwml.py: error: {tmp_path / 'empty'}: 2 errors, nothing was written:"
    assert err[err.index(header) :] == [
        header,
        f"  {image}: volume of shape (0, 32, 4) has no voxels",
        f"  {mask}: volume of shape (0, 32, 4) has no voxels",
    ]
    assert not (tmp_path / "out").exists()


def test_nnunet_discovery_no_longer_drops_misnamed_files_silently(tmp_path):
    raw = tmp_path / "raw"
    _case(raw, "good", _mask((3, 3, 1)))
    save_nifti(raw / "imagesTr" / "forgot.nii.gz", _image())
    save_nifti(raw / "labelsTr" / "forgot.nii.gz", _mask((3, 3, 1)))
    with pytest.raises(PWMLDataError, match="forgot.nii.gz: no nnU-Net channel suffix"):
        discover_subjects(raw)
    found = []
    assert [s.subject for s in discover_subjects(raw, problems=found)] == ["good"]
    # the image without _0000 is told; its mask then has no image either
    assert [(e.path, e.problem.split(";")[0]) for e in found] == [
        (str(raw / "imagesTr" / "forgot.nii.gz"), "no nnU-Net channel suffix"),
        (
            str(raw / "labelsTr" / "forgot.nii.gz"),
            f"lesion mask without its image {raw / 'imagesTr' / 'forgot_0000.nii.gz'}",
        ),
    ]


@pytest.mark.parametrize("outlier, flagged", [(4.0, False), (4.1, True)])
def test_spacing_outlier_rule_is_a_factor_of_two_from_the_median(tmp_path, outlier, flagged):
    raw = tmp_path / "raw"
    for case in ("a", "b", "c"):
        _case(raw, case, _mask((3, 3, 1)))
    thick = np.diag([0.8, 0.8, outlier, 1.0])
    image, _ = _case(raw, "d", _mask((3, 3, 1)), affine=thick)
    report = check_dataset(raw, fractions=(1.0, 0.0, 0.0))  # no val or test split asked for
    expected = [
        f"{image}: warning: spacing 0.8 x 0.8 x {outlier:g} mm (row x column x through-plane) "
        "differs from the cohort median 0.8 x 0.8 x 2 mm by more than a factor of 2 "
        "(through-plane); check its header or resample it"
    ]
    assert [str(p) for p in report.problems] == (expected if flagged else [])
    assert report.ok


def _cohort_with_a_lesion_free(root, part):
    """Five subjects, each with a lesion but the one seed 0 puts in ``part`` (val or test)."""
    ids = ["s1", "s2", "s3", "s4", "s5"]
    (chosen,) = make_splits(ids, 0, (0.7, 0.15, 0.15), 5)[part]
    for case in ids:
        _case(root, case, _mask() if case == chosen else _mask((3, 3, 1)))
    return chosen


@pytest.mark.parametrize(
    "part, why",
    [
        ("test", "every figure on it would be undefined"),
        ("val", "the validation loss and model selection would see no lesion"),
    ],
)
def test_a_lesion_free_val_or_test_split_is_refused_with_its_subjects(tmp_path, part, why):
    raw = tmp_path / "raw"
    chosen = _cohort_with_a_lesion_free(raw, part)
    folds = make_splits(["s1", "s2", "s3", "s4", "s5"], 0, (0.7, 0.15, 0.15), 5)["folds"]
    (fold,) = [i for i, f in enumerate(folds) if f["val"] == [chosen]]
    report = check_dataset(raw, lesion_slices_only=False)
    assert [str(p) for p in report.problems] == [
        f"{raw}: error: the {part} split (seed 0, fractions 0.7 0.15 0.15) holds only "
        f"lesion-free subjects ({chosen}): {why}; draw another split with --seed or --fractions",
        f"{raw}: warning: fold {fold}'s validation subjects ({chosen}) are all lesion-free: "
        "that fold's figures will be undefined (NaN)",
    ]
    with pytest.raises(DatasetCheckError, match=f"the {part} split"):
        convert_pwml(raw, tmp_path / "out", workers=1, lesion_slices_only=False)
    assert not (tmp_path / "out").exists()
    # the default leaves the lesion-free subject out: every split then has lesions
    default = check_dataset(raw)
    assert default.ok and chosen not in default.splits["subjects"]


def test_check_cli_prints_every_problem_writes_nothing_and_exits_by_severity(tmp_path, capsys):
    raw = _hand_counted(tmp_path / "raw")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert prepare_cli.main([str(raw), "--check", "--workers", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"dataset check of {raw}: 0 errors, 3 warnings"
    assert out[1].startswith(f"{raw / 'labelsTr' / 'free.nii.gz'}: warning: subject 'free'")
    assert out[2].startswith(f"{raw}: warning: the val split (seed 0, fractions 0.7 0.15 0.15)")
    assert out[4] == "fingerprint:"
    assert out[6] == "  slices             12, 3 with lesions"
    assert out[9] == "  spacing, mm        row 0.8, column 0.8, through-plane 2"
    assert out[-1] == "  conversion writes  2 subjects, 3 slices, 4 lesions"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before

    _case(raw, "rgb", np.zeros(SHAPE, RGB))
    report = tmp_path / "report.json"
    assert prepare_cli.main([str(raw), "--check", "--json", str(report)]) == 2
    captured = capsys.readouterr()
    assert (
        f"{raw / 'labelsTr' / 'rgb.nii.gz'}: error: unsupported mask voxel type RGB colour; "
        "expected integer or float labels"
    ) in captured.out.splitlines()
    assert f"prepare_pwml.py: error: {raw}: 1 error (listed above)" in captured.err
    written = json.loads(report.read_text())
    assert written["ok"] is False and len(written["problems"]) == 2  # no split of a broken one
    assert written["fingerprint"]["converted"] == {"subjects": 2, "slices": 3, "lesions": 4}
    # the report never replaces an input
    assert prepare_cli.main([str(raw), "--check", "--json", str(raw / "imagesTr")]) == 2
    with pytest.raises(SystemExit) as usage:
        prepare_cli.parse_args([str(raw), "--json", str(report)])
    assert usage.value.code == 2


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_slice_folders_lesion_free_subject_and_undefined_spacing(tmp_path, capsys):
    raw = tmp_path / "slices"
    image = np.arange(120).reshape(10, 12)
    lesion = np.zeros((10, 12))
    lesion[2, 2:4] = 255
    _png(raw / "input" / "1" / "5.png", image)
    _png(raw / "gt" / "1" / "5.png", lesion)
    _png(raw / "input" / "2" / "7.png", image)
    _png(raw / "gt" / "2" / "7.png", np.zeros((10, 12)))
    report = check_dataset(raw, fractions=(1.0, 0.0, 0.0))
    assert [(p.file, p.severity) for p in report.problems] == [(str(raw / "gt" / "2"), "warning")]
    fp = report.fingerprint
    assert fp["lesion_size_px"]["p50"] == 2.0 and fp["converted"]["slices"] == 1
    assert all(np.isnan(v) for v in fp["spacing_mm"]["row"].values())  # PNGs carry no spacing
    path = tmp_path / "r.json"
    assert (
        prepare_cli.main([str(raw), "--check", "--json", str(path), "--fractions", "1", "0", "0"])
        == 0
    )
    assert json.loads(path.read_text())["fingerprint"]["spacing_mm"]["row"]["median"] is None
    out = capsys.readouterr().out.splitlines()
    assert "  spacing, mm        row n/a, column n/a, through-plane n/a" in out


def test_generator_and_converter_defaults_agree(tmp_path, capsys):
    """The anatomy-based generator writes lesion-free subjects by default (15 %; simulating
    one takes seconds, so the defaults are compared here and the conversion of such a cohort
    is run on hand-made volumes): the converter's default takes them without refusal."""
    assert cohort_cli.parse_args(["out"]).lesion_free_fraction > 0
    assert prepare_cli.parse_args(["src"]).all_slices is False
    raw = _hand_counted(tmp_path / "raw")
    assert cohort_cli.lesion_free_cases(raw, ["a", "b", "free"]) == ["free"]
    argv = [str(raw), "-o", str(tmp_path / "out"), "--workers", "1"]
    assert prepare_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "subject 'free' has no lesion: no lesion slice to convert, so it is left out " in out
    assert "2 subjects, 3 slices, 4 lesions ->" in out

    phantom = tmp_path / "phantom"
    argv = [str(phantom), "--phantom", "--subjects", "2", "--size", "16", "--depth", "3"]
    assert cohort_cli.main(argv + ["--workers", "1"]) == 0
    assert capsys.readouterr().out == f"2 subjects in {phantom} (0 lesion-free)\n"


def test_a_sheared_affine_gets_a_warning(tmp_path):
    """Voxel axes 5.7 degrees from perpendicular (column 1 leans by 0.1 along x): one warning
    naming the image; a rotated but orthogonal grid gets none."""
    from rsrcnn_d2.data.fingerprint import shear_degrees

    sheared = np.eye(4)
    sheared[0, 1] = 0.1
    assert shear_degrees(sheared) == pytest.approx(np.degrees(np.arcsin(0.1 / np.hypot(1, 0.1))))
    c, s = np.cos(0.3), np.sin(0.3)
    rotated = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    assert shear_degrees(rotated) < 1e-6
    raw = tmp_path / "raw"
    _case(raw, "tilted", _mask((4, 4, 1)), affine=sheared)
    _case(raw, "rotated", _mask((4, 4, 1)), affine=rotated)
    warnings = [str(p) for p in check_dataset(raw).warnings if "sheared" in p.message]
    assert warnings == [
        f"{raw / 'imagesTr' / 'tilted_0000.nii.gz'}: warning: affine is sheared (voxel axes 5.7 "
        "degrees from perpendicular): slices follow the voxel grid, so mm figures are "
        "approximate; resample it to an orthogonal grid"
    ]
