"""Every kind of bad input raises PWMLDataError naming the file, and nothing half-written
remains."""

import gzip

import numpy as np
import pytest
from PIL import Image

from rsrcnn_d2.data.convert import convert_pwml
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.nifti import read_nifti_pair

from test_data_fixtures import nnunet_case, save_nifti, small_cohort


def _volume(shape=(16, 16, 4), lesion=True):
    image = (np.arange(np.prod(shape)) % 200 + 100).astype(np.int16).reshape(shape)  # not blank
    mask = np.zeros(shape, np.uint8)
    if lesion:
        mask[5, 5, 1] = 1
    return image, mask


def _expect(match_path, tmp_path, source=None, **kw):
    """Convert ``source`` (default tmp_path/raw): must fail naming ``match_path``, write nothing."""
    out = tmp_path / "out"
    with pytest.raises(PWMLDataError) as err:
        convert_pwml(source or tmp_path / "raw", out, workers=1, **kw)
    assert str(match_path) in str(err.value)
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())  # no staging left
    return err.value


def test_shape_mismatch(tmp_path):
    image, mask = _volume()
    _, m = nnunet_case(tmp_path / "raw", "a", image, mask[:, :, :3])
    _expect(m, tmp_path)


def test_affine_mismatch(tmp_path):
    image, mask = _volume()
    _, m = nnunet_case(tmp_path / "raw", "a", image, mask, mask_affine=np.diag([1.0, 1, 1, 1]))
    e = _expect(m, tmp_path)
    assert "affine" in str(e) and "\n" not in str(e)  # one line: the largest difference, sizes
    assert "voxel sizes" in str(e) and "origins" in str(e)


def test_non_binary_mask_and_binarize_option(tmp_path):
    image, mask = _volume()
    mask[8, 8, 2] = 2
    _, m = nnunet_case(tmp_path / "raw", "a", image, mask)
    assert "binary" in str(_expect(m, tmp_path))
    summary = convert_pwml(tmp_path / "raw", tmp_path / "ok", workers=1, binarize=True)
    assert summary["num_annotations"] == 2


def test_four_d_volume(tmp_path):
    image, mask = _volume()
    i, _ = nnunet_case(tmp_path / "raw", "a", np.stack([image, image], -1), mask)
    assert "4-D" in str(_expect(i, tmp_path))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_intensities(tmp_path, bad):
    image, mask = _volume()
    image = image.astype(np.float32)
    image[1, 1, 1] = bad
    i, _ = nnunet_case(tmp_path / "raw", "a", image, mask)
    assert "NaN" in str(_expect(i, tmp_path))


def test_unreadable_file(tmp_path):
    image, mask = _volume()
    i, _ = nnunet_case(tmp_path / "raw", "a", image, mask)
    i.write_bytes(b"this is not a NIfTI file")
    _expect(i, tmp_path)


def test_truncated_file(tmp_path):
    image, mask = _volume((32, 32, 8))
    i, _ = nnunet_case(tmp_path / "raw", "a", image, mask)
    data = gzip.decompress(i.read_bytes())
    i.write_bytes(gzip.compress(data[: len(data) // 2]))  # valid gzip, short voxel data
    _expect(i, tmp_path)
    i.write_bytes(i.read_bytes()[:200])  # cut inside the gzip stream
    _expect(i, tmp_path)


def test_subject_without_slices(tmp_path):
    image, mask = _volume(lesion=False)
    nnunet_case(tmp_path / "raw", "a", image, mask)
    # the default leaves a lesion-free subject out (a warning); with none left: refused
    assert str(_expect(tmp_path / "raw", tmp_path)) == (
        f"{tmp_path / 'raw'}: no subject has a lesion slice to convert (lesion-free: a); "
        "--all-slices converts them with every slice"
    )
    # with every slice kept, a lesion-free subject is fine
    assert (
        convert_pwml(tmp_path / "raw", tmp_path / "ok", workers=1, lesion_slices_only=False)[
            "num_images"
        ]
        == 4
    )


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _png_pair(root, mask_shape, lesion_value):
    """Subject 1, slice 5 of an input/ + gt/ folder: a blank 10 x 12 slice and one lesion pixel."""
    _png(root / "input" / "1" / "5.png", np.zeros((10, 12), np.uint8))
    m = np.zeros(mask_shape, np.uint8)
    m[2, 2] = lesion_value
    return _png(root / "gt" / "1" / "5.png", m)


def test_png_pair_of_different_sizes(tmp_path):
    mp = _png_pair(tmp_path / "raw", (10, 11), 255)
    assert "size" in str(_expect(mp, tmp_path))


def test_png_non_binary_and_empty_subject(tmp_path):
    root = tmp_path / "raw"
    mp = _png_pair(root, (10, 12), 128)
    _expect(mp, tmp_path)
    (root / "input" / "2").mkdir()
    _expect(root / "input" / "2", tmp_path)


def test_error_in_worker_process_names_file(tmp_path):
    raw = small_cohort(tmp_path / "raw", n=4)
    bad = raw / "labelsTr" / "PWML_002.nii.gz"
    bad.write_bytes(b"garbage")
    with pytest.raises(PWMLDataError) as err:
        convert_pwml(raw, tmp_path / "out", workers=2)
    assert err.value.path == str(bad)
    assert not (tmp_path / "out").exists()


def test_failed_rerun_keeps_previous_output(tmp_path):
    raw = small_cohort(tmp_path / "raw", n=3)
    out = tmp_path / "out"
    convert_pwml(raw, out, workers=1)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (raw / "imagesTr" / "PWML_001_0000.nii.gz").write_bytes(b"broken")
    with pytest.raises(PWMLDataError):
        convert_pwml(raw, out, workers=1)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_missing_mask_and_bad_axis(tmp_path):
    image, mask = _volume()
    i, m = nnunet_case(tmp_path / "raw", "a", image, mask)
    with pytest.raises(ValueError, match="axis"):
        convert_pwml(tmp_path / "raw", tmp_path / "out", axis="oblique")
    m.unlink()
    _expect(i, tmp_path)


def test_read_pair_direct_error_is_value_error(tmp_path):
    image, mask = _volume()
    i = save_nifti(tmp_path / "i.nii.gz", image)
    m = save_nifti(tmp_path / "m.nii.gz", mask[:8])
    with pytest.raises(ValueError, match="m.nii.gz"):
        read_nifti_pair(i, m)


def test_one_volume_reader_one_message_for_a_damaged_volume(tmp_path):
    """A subject's pair and a single volume (prediction, mask to score) go through one reader."""
    from rsrcnn_d2.data.nifti import read_volume

    image, mask = _volume((32, 32, 8))
    i, m = nnunet_case(tmp_path / "raw", "a", image, mask)
    data = gzip.decompress(i.read_bytes())
    i.write_bytes(gzip.compress(data[: len(data) // 2]))
    with pytest.raises(PWMLDataError) as single:
        read_volume(i)
    with pytest.raises(PWMLDataError) as pair:
        read_nifti_pair(i, m)
    assert str(single.value) == str(pair.value)
    assert str(single.value).startswith(f"{i}: cannot read voxel data, truncated or corrupt file")
    save_nifti(i, np.full((4, 4, 2), np.nan, np.float32))
    with pytest.raises(PWMLDataError, match=f"^{i}: image contains NaN or infinite intensities$"):
        read_volume(i)


def test_nifti_names_have_one_definition(tmp_path):
    from rsrcnn_d2.data import nifti, sources
    from rsrcnn_d2.inference import inputs

    assert nifti.split_nifti_name("a.b.nii.gz") == ("a.b", ".nii.gz")
    assert nifti.split_nifti_name("a.nii") == ("a", ".nii")
    assert nifti.split_nifti_name("a.nii.zip") == (None, None)
    assert not hasattr(sources, "NIFTI_ENDINGS") and not hasattr(inputs, "NIFTI_ENDINGS")
    image, mask = _volume()
    nnunet_case(tmp_path / "raw", "case_0000", image, mask)  # nnU-Net channel twice
    assert (
        [s.subject for s in sources.nnunet_subjects(tmp_path / "raw")]
        == [nifti.case_name("case_0000_0000.nii.gz")]
        == ["case_0000"]
    )
