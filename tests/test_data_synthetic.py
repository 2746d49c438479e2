"""Synthetic cohort: seeded NIfTI volumes with lesions on some slices, proper affines."""
import json

import nibabel as nib
import numpy as np

from rsrcnn_d2.data.nifti import volume_slice
from rsrcnn_d2.data.synthetic import synthetic_slice, synthetic_volume, write_synthetic_cohort


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


def test_fast_path_and_lesion_sizes():
    image, mask, _ = synthetic_volume(64, 20, lesion_fraction=0.2, distinct_slices=2, seed=0)
    from rsrcnn_d2.data.instances import label_lesions

    sizes = []
    for z in range(20):
        labels, n = label_lesions(mask[:, :, z])
        sizes += np.bincount(labels.ravel())[1:].tolist()
    assert sizes and min(sizes) >= 1


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
    before = (tmp_path / "imagesTr" / "PWML_000_0000.nii.gz").stat().st_mtime_ns
    write_synthetic_cohort(tmp_path, 4, size=32, depth=4, seed=2)  # reuses cases 0-2
    assert (tmp_path / "imagesTr" / "PWML_000_0000.nii.gz").stat().st_mtime_ns == before
    other = tmp_path / "again"
    write_synthetic_cohort(other, 2, size=32, depth=4, seed=2)
    a = np.asanyarray(nib.load(str(other / "imagesTr" / "PWML_001_0000.nii.gz")).dataobj)
    assert np.array_equal(a, np.asanyarray(img.dataobj))  # subject i depends on (seed, i) only
