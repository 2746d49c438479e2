"""Anatomy-based synthetic cohort: seeded, masks exactly where lesions brighten, realistic
difficulty."""

import dataclasses

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from rsrcnn_d2.data.fileio import read_slice
from rsrcnn_d2.data.nifti import read_nifti_pair
from rsrcnn_d2.data.sources import slice_folder_subjects
from rsrcnn_d2.synth.anatomy import AnatomyParams, simulate_subject
from rsrcnn_d2.synth.cohort import write_anatomical_cohort
from rsrcnn_d2.synth.lesions3d import partial_volume
from rsrcnn_d2.synth.realism import (
    best_threshold_dice,
    lesion_measures,
    lesion_slice_spans,
    summarize_measures,
    volume_realism,
)
from rsrcnn_d2.synth.subject_geometry import AcquisitionGrid

from conftest import SHARED_SLICES

SEED = 1  # the first two subjects of seed 1 both have lesions


@pytest.fixture(scope="module")
def subjects():
    """Subjects 0 and 1 of the default cohort with seed 1 (what write_anatomical_cohort makes)."""
    return [simulate_subject(s) for s in np.random.SeedSequence(SEED).spawn(2)]


def test_two_subject_cohort_is_as_hard_as_real_slices(subjects):
    """The issue's targets; fails if lesions become conspicuous, flat, large or 2-D again."""
    table = volume_realism((s.image, s.mask) for s in subjects)
    assert table["lesions"] >= 10
    assert 2.5 <= table["contrast_median"] <= 5.5
    assert table["threshold_dice_mean"] < 0.1
    assert table["multi_slice_share"] >= 0.5
    assert table["area_min"] >= 1 and table["area_max"] <= 15


def test_mask_is_exactly_where_the_image_was_brightened(subjects):
    seed = np.random.SeedSequence(SEED).spawn(1)[0]
    first = subjects[0]
    dark = simulate_subject(seed, AnatomyParams(lesion_contrast_scale=0.0))
    # same anatomy, noise and lesion geometry: only the lesions' brightening differs
    np.testing.assert_array_equal(dark.mask, first.mask)
    diff = first.image.astype(np.int32) - dark.image.astype(np.int32)
    assert (diff[first.lesion_pv == 0] == 0).all()
    assert (diff[first.mask > 0] > 0).all()
    assert first.mask.dtype == np.uint8 and set(np.unique(first.mask)) == {0, 1}
    np.testing.assert_array_equal(first.mask, first.lesion_pv >= 0.5)
    # one 3-D component per drawn lesion: they never touch
    _, count = ndimage.label(first.lesion_pv > 0, np.ones((3, 3, 3), bool))
    assert count == len(first.lesions) >= 3


def test_acquisition_grid_and_affine(subjects):
    params = AnatomyParams()
    for s in subjects:
        assert s.image.dtype == np.int16 and s.image.shape == s.mask.shape
        assert nib.aff2axcodes(s.affine) == ("R", "A", "S")
        zooms = np.diag(s.affine)[:3]
        assert zooms[0] == zooms[1] and params.in_plane_mm[0] <= zooms[0] <= params.in_plane_mm[1]
        assert params.slice_mm[0] <= zooms[2] <= params.slice_mm[1]
        centre = s.affine @ np.array([*(np.array(s.image.shape) - 1) / 2, 1.0])
        np.testing.assert_allclose(centre[:3], 0, atol=1e-9)
    assert subjects[0].image.shape != subjects[1].image.shape or not np.array_equal(
        subjects[0].image, subjects[1].image
    )


def test_cohort_files_match_the_simulation_and_png_layout(tmp_path, subjects):
    out, png = tmp_path / "raw", tmp_path / "png"
    cases = write_anatomical_cohort(out, 1, seed=SEED, slices_dir=png, progress=False)
    assert cases == ["PWML_000"]
    pair = read_nifti_pair(
        out / "imagesTr" / "PWML_000_0000.nii.gz", out / "labelsTr" / "PWML_000.nii.gz"
    )
    np.testing.assert_array_equal(pair.image, subjects[0].image)  # seeded: file == simulation
    np.testing.assert_array_equal(pair.mask, subjects[0].mask)
    np.testing.assert_allclose(pair.affine, subjects[0].affine, atol=1e-5)
    (source,) = slice_folder_subjects(png)
    lesion_slices = set(np.flatnonzero(subjects[0].mask.any(axis=(0, 1))).tolist())
    assert source.subject == "PWML_000" and {i for i, _, _ in source.slices} <= lesion_slices
    for _, image_file, mask_file in source.slices:
        image, mask = read_slice(image_file), read_slice(mask_file)
        assert image.shape == mask.shape and max(image.shape) == 100
        assert image.min() == 0 and image.max() == 255 and set(np.unique(mask)) == {0, 255}
    # reusing the folder with other settings would mix two cohorts
    with pytest.raises(ValueError, match="other settings"):
        write_anatomical_cohort(out, 1, seed=SEED + 1, progress=False)


def test_bad_arguments_are_refused_with_the_culprit_named(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        write_anatomical_cohort(tmp_path / "a", 0, progress=False)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="taken.txt.*existing file"):
        write_anatomical_cohort(a_file, 1, progress=False)
    with pytest.raises(ValueError, match="in_plane_mm"):
        AnatomyParams(in_plane_mm=(-0.7, 0.7))
    with pytest.raises(ValueError, match="lesion_in_plane_mm"):
        AnatomyParams(lesion_in_plane_mm=(2.0, 1.0))
    with pytest.raises(ValueError, match="lesions_per_subject"):
        AnatomyParams(lesions_per_subject=(-1, 3))
    assert not (tmp_path / "a").exists() and a_file.read_text() == "x"


def test_tool_reports_bad_arguments(tmp_path, capsys):
    from rsrcnn_d2.cli.make_cohort import main  # the program behind tools/make_synthetic_cohort.py

    assert main([str(tmp_path / "c"), "--subjects", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main([str(tmp_path / "c"), "--phantom", "--size", "-4"]) == 2
    assert "size" in capsys.readouterr().err
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert main([str(a_file), "--phantom"]) == 2
    assert str(a_file) in capsys.readouterr().err


def test_partial_volume_of_a_sphere_has_its_volume():
    grid = AcquisitionGrid(shape=(40, 40, 20), spacing=(0.7, 0.7, 1.5))
    radius = 2.0
    box, pv = partial_volume(np.array([0.3, -0.2, 0.4]), np.full(3, radius), np.eye(3), grid)
    volume = pv.sum() * 0.7 * 0.7 * 1.5
    assert abs(volume - 4 / 3 * np.pi * radius**3) / (4 / 3 * np.pi * radius**3) < 0.05
    assert pv.max() == 1.0 and (pv[0] == 0).all() and (pv[-1] == 0).all()  # the box has room


def test_realism_measures_on_hand_made_slices():
    image = np.zeros((11, 11))
    image[::2, :] = 2.0  # the ring alternates rows of 0 and 2: mean 1, sd 1
    mask = np.zeros((11, 11), bool)
    mask[5, 5] = True
    image[5, 5] = 5.0
    ((area, contrast),) = lesion_measures(image, mask)
    ring = ndimage.binary_dilation(mask, np.ones((3, 3)), iterations=3) & ~mask
    assert area == 1
    assert contrast == pytest.approx((5.0 - image[ring].mean()) / image[ring].std())
    # threshold 5 finds exactly the lesion; a brighter distractor halves the best Dice
    assert best_threshold_dice(image, mask) == 1.0
    image[0, 0] = 9.0
    assert best_threshold_dice(image, mask) == pytest.approx(2 / 3)
    volume = np.zeros((5, 5, 6), bool)
    volume[1, 1, 1:3] = True  # spans 2 slices
    volume[3, 3, 5] = True  # spans 1
    assert sorted(lesion_slice_spans(volume).tolist()) == [1, 2]


@pytest.mark.skipif(not SHARED_SLICES.is_dir(), reason="reference slices not available")
def test_reference_slices_are_in_the_ranges_the_cohort_is_held_to():
    """The measures reproduce the published facts about the real slices (areas, contrast,
    threshold)."""
    pairs = [
        (read_slice(i), read_slice(m) > 0)
        for s in slice_folder_subjects(SHARED_SLICES)
        for _, i, m in s.slices
    ]
    table = summarize_measures(pairs)
    assert 1 <= table["area_min"] and table["area_max"] <= 12
    assert 2.5 <= table["contrast_median"] <= 5.5
    assert table["threshold_dice_max"] <= 0.03


def test_params_are_recorded_in_full():
    params = AnatomyParams()
    assert set(params.as_dict()) == {f.name for f in dataclasses.fields(params)}


def test_a_run_killed_halfway_is_not_finished_with_other_settings(tmp_path, monkeypatch):
    """Killed before its dataset.json: a re-run with another seed must not keep the first
    run's cases and record the second's settings (two generations mixed under one name)."""
    from rsrcnn_d2.synth import cohort

    out = tmp_path / "raw"

    def killed(jobs, workers, progress):
        (out / "imagesTr" / "PWML_000_0000.nii.gz").write_bytes(b"half a cohort")
        raise KeyboardInterrupt

    monkeypatch.setattr(cohort, "_run", killed)
    with pytest.raises(KeyboardInterrupt):
        write_anatomical_cohort(out, 2, seed=SEED, progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"made with other settings \(seed 1\)"):
        write_anatomical_cohort(out, 2, seed=SEED + 1, progress=False)
    assert (out / "imagesTr" / "PWML_000_0000.nii.gz").read_bytes() == b"half a cohort"
    # cases no dataset.json describes (an earlier release's interrupted run): refused too
    (out / "dataset.json").unlink()
    with pytest.raises(ValueError, match="PWML_000_0000.nii.gz, ...\\) that no dataset.json"):
        write_anatomical_cohort(out, 2, seed=SEED + 1, progress=False)
