"""Synthetic cohort: seeded NIfTI volumes with lesions on some slices, proper affines."""

import json

import nibabel as nib
import numpy as np
import pytest

from rsrcnn_d2.data.nifti import volume_slice
from rsrcnn_d2.synth.phantom import synthetic_slice, synthetic_volume, write_synthetic_cohort


def test_volume_is_seeded_and_has_lesions_on_some_slices():
    image, mask, affine = synthetic_volume(64, 10, seed=1)
    image2, mask2, _ = synthetic_volume(64, 10, seed=1)
    assert np.array_equal(image, image2) and np.array_equal(mask, mask2)
    assert image.dtype == np.int16 and mask.dtype == np.uint8 and image.shape == (64, 64, 10)
    per_slice = mask.reshape(-1, 10).any(0)
    assert 1 <= per_slice.sum() < 10
    np.testing.assert_allclose(np.diag(affine)[:3], [0.8, 0.8, 2.0])
    assert set(np.unique(mask)) <= {0, 1}


def test_volume_slices_read_back_as_synthetic_slices():
    """volume_slice (the converter's orientation) gives back exactly the generated slices."""
    image, mask, _ = synthetic_volume(32, 5, lesion_fraction=0.4, rng=np.random.default_rng(5))
    rng = np.random.default_rng(5)  # replay synthetic_volume's draws
    lesion = set(rng.choice(np.arange(1, 4), size=2, replace=False).tolist())
    for z in range(5):
        img2d, m2d = synthetic_slice(32, (1, 5) if z in lesion else (0, 0), rng=rng)
        np.testing.assert_array_equal(volume_slice(image, 2, z), np.round(img2d * 1000))
        np.testing.assert_array_equal(volume_slice(mask, 2, z), m2d)
        assert m2d.any() == (z in lesion)


def test_fast_path_repeats_two_lesion_free_and_two_lesion_slices():
    """distinct_slices=2: slice z is one of two lesion-free or two lesion slices, chosen by
    z % 2."""
    from rsrcnn_d2.data.instances import label_lesions

    image, mask, _ = synthetic_volume(64, 20, lesion_fraction=0.2, distinct_slices=2, seed=0)
    lesion = [z for z in range(20) if mask[:, :, z].any()]
    assert len(lesion) == 4 and all(4 <= z < 16 for z in lesion)  # round(0.2 x 20), middle 60 %
    drawn = {}
    for z in range(20):
        drawn.setdefault((z in lesion, z % 2), set()).add(
            (image[:, :, z].tobytes(), mask[:, :, z].tobytes())
        )
    assert all(len(slices) == 1 for slices in drawn.values()), drawn.keys()
    assert len({image[:, :, z].tobytes() for z in range(20)}) == len(drawn) == 4
    full, _, _ = synthetic_volume(64, 20, lesion_fraction=0.2, seed=0)
    assert len({full[:, :, z].tobytes() for z in range(20)}) == 20  # without it: all distinct
    for z in lesion:  # num_lesions=(1, 5) drawn; touching blobs may merge, none vanishes
        assert 1 <= label_lesions(mask[:, :, z])[1] <= 5


def test_cohort_layout_and_cache(tmp_path):
    cases = write_synthetic_cohort(tmp_path, 3, size=32, depth=4, seed=2)
    assert cases == ["PWML_000", "PWML_001", "PWML_002"]
    img = nib.load(str(tmp_path / "imagesTr" / "PWML_001_0000.nii.gz"))
    msk = nib.load(str(tmp_path / "labelsTr" / "PWML_001.nii.gz"))
    assert img.shape == msk.shape == (32, 32, 4)
    np.testing.assert_allclose(img.header.get_zooms(), (0.8, 0.8, 2.0))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1w"} and meta["numTraining"] == 3
    first = tmp_path / "imagesTr" / "PWML_000_0000.nii.gz"
    before = first.stat().st_ino  # files are written to a temporary name and renamed: a new inode
    write_synthetic_cohort(tmp_path, 4, size=32, depth=4, seed=2)  # reuses cases 0-2
    assert (
        first.stat().st_ino == before and (tmp_path / "imagesTr" / "PWML_003_0000.nii.gz").exists()
    )
    write_synthetic_cohort(tmp_path, 1, size=32, depth=4, seed=2, overwrite=True)
    assert first.stat().st_ino != before  # the check above would see a rewrite
    other = tmp_path / "again"
    write_synthetic_cohort(other, 2, size=32, depth=4, seed=2)
    a = np.asanyarray(nib.load(str(other / "imagesTr" / "PWML_001_0000.nii.gz")).dataobj)
    assert np.array_equal(a, np.asanyarray(img.dataobj))  # subject i depends on (seed, i) only


def test_a_phantom_killed_halfway_is_not_finished_with_other_settings(tmp_path, monkeypatch):
    """The phantom records its settings before its first case: a re-run with another seed
    refuses the first run's cases instead of keeping them under the second's settings."""
    from rsrcnn_d2.synth import phantom

    written = []

    def killed(job):
        if written:
            raise KeyboardInterrupt  # killed after the first case
        written.append(real(job))
        return written[-1]

    real = phantom._write_case
    monkeypatch.setattr(phantom, "_write_case", killed)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_cohort(tmp_path, 3, size=32, depth=4, seed=0)
    monkeypatch.undo()
    first = (tmp_path / "imagesTr" / "PWML_000_0000.nii.gz").read_bytes()
    with pytest.raises(ValueError, match=r"made with other settings \(seed 0\)"):
        write_synthetic_cohort(tmp_path, 3, size=32, depth=4, seed=1)
    with pytest.raises(ValueError, match="other settings"):  # another size: another cohort too
        write_synthetic_cohort(tmp_path, 3, size=48, depth=4, seed=0)
    assert (tmp_path / "imagesTr" / "PWML_000_0000.nii.gz").read_bytes() == first
    # the same settings finish the interrupted run
    assert len(write_synthetic_cohort(tmp_path, 3, size=32, depth=4, seed=0)) == 3
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["generator_settings"]["seed"] == 0 and meta["numTraining"] == 3


def test_a_phantom_of_an_earlier_release_is_reused_or_refused_by_its_flat_record(tmp_path):
    write_synthetic_cohort(tmp_path, 2, size=32, depth=4, seed=2)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    del meta["generator_settings"]  # as earlier releases wrote it: seed and parameters only
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    write_synthetic_cohort(tmp_path, 3, size=32, depth=4, seed=2)  # same settings: continued
    meta = json.loads((tmp_path / "dataset.json").read_text())
    del meta["generator_settings"]
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"made with other settings \(seed 2\)"):
        write_synthetic_cohort(tmp_path, 3, size=32, depth=4, seed=5)


def test_cases_no_dataset_json_describes_are_refused(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "imagesTr" / "PWML_000_0000.nii.gz").write_bytes(b"someone's case")
    with pytest.raises(ValueError, match="that no dataset.json describes"):
        write_synthetic_cohort(tmp_path, 1, size=32, depth=4)
    assert (tmp_path / "imagesTr" / "PWML_000_0000.nii.gz").read_bytes() == b"someone's case"


def test_a_taken_cohort_folder_says_what_the_callers_user_can_do(tmp_path):
    import pickle

    from rsrcnn_d2.synth.stamp import OVERWRITE_HINT, CohortFolderTaken

    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "imagesTr" / "PWML_000_0000.nii.gz").write_bytes(b"someone's case")
    with pytest.raises(CohortFolderTaken) as taken:
        write_synthetic_cohort(tmp_path, 1, size=32, depth=4)
    # the generator's own users have --overwrite (tools/make_synthetic_cohort.py)
    assert str(taken.value).endswith(f"that no dataset.json describes; {OVERWRITE_HINT}")
    assert taken.value.reason.endswith("that no dataset.json describes")
    # a driver re-words the remedy; the parts survive a worker process
    again = CohortFolderTaken(taken.value.path, taken.value.reason, "use another --output")
    back = pickle.loads(pickle.dumps(again))
    assert str(back) == f"{tmp_path}: {taken.value.reason}; use another --output"
    assert (back.reason, back.remedy) == (again.reason, "use another --output")
