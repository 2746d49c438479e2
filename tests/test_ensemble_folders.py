"""rsrcnn-ensemble: folders of probability maps averaged and thresholded, checked by hand."""

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from rsrcnn_d2.cli import ensemble as ensemble_cli
from rsrcnn_d2.inference.ensemble_folders import ensemble_folders, probability_maps

# an LPS-stored volume: the outputs must come back in the file's own voxel order
LPS = np.diag([-1.0, -1.0, 2.0, 1.0])


def write_map(path: Path, values, affine=LPS, dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(values, dtype), affine), path)
    return path


def read(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def checksums(folder: Path) -> dict:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# voxel values of case "c1" in two rows, shape (2, 2, 1), in the file's order
ROW_A = [[[0.9], [0.2]], [[0.6], [0.4]]]
ROW_B = [[[0.3], [0.7]], [[0.4], [0.5]]]
# means 0.6, 0.45, 0.5, 0.45: lesion at >= 0.5, the boundary included as the model includes it
MEAN = [[[0.6], [0.45]], [[0.5], [0.45]]]
MASK = [[[1], [0]], [[1], [0]]]


@pytest.fixture
def rows(tmp_path):
    for name, values in (("a", ROW_A), ("b", ROW_B)):
        write_map(tmp_path / name / "c1_prob.nii.gz", values)
        write_map(tmp_path / name / "c2_prob.nii.gz", np.zeros((2, 2, 1)))
        write_map(tmp_path / name / "c1.nii.gz", np.ones((2, 2, 1)), dtype=np.uint8)  # a mask
    return tmp_path / "a", tmp_path / "b"


def test_two_folders_mean_thresholded_by_hand_in_the_files_voxel_order(rows, tmp_path, capsys):
    before = [checksums(folder) for folder in rows]
    out = tmp_path / "out"
    code = ensemble_cli.main(
        ["-i", *map(str, rows), "-o", str(out), "--save-probabilities", "--no-progress"]
    )
    assert code == 0
    assert "2 case(s): mean of 2 probability maps >= 0.5" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "c1.nii.gz",
        "c1_prob.nii.gz",
        "c2.nii.gz",
        "c2_prob.nii.gz",
    ]
    mask, prob = nib.load(out / "c1.nii.gz"), nib.load(out / "c1_prob.nii.gz")
    assert mask.get_data_dtype() == np.uint8 and prob.get_data_dtype() == np.float32
    assert np.array_equal(mask.affine, LPS) and np.array_equal(prob.affine, LPS)
    assert read(out / "c1.nii.gz").tolist() == MASK
    assert np.array_equal(read(out / "c1_prob.nii.gz"), np.asarray(MEAN, np.float32))
    assert not read(out / "c2.nii.gz").any()
    assert [checksums(folder) for folder in rows] == before  # the inputs were only read


def test_a_higher_threshold_and_masks_only_without_save_probabilities(rows, tmp_path):
    out = tmp_path / "out"
    ensemble_folders(rows, out, threshold=0.55, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["c1.nii.gz", "c2.nii.gz"]
    assert read(out / "c1.nii.gz").tolist() == [[[1], [0]], [[0], [0]]]  # only the 0.6 voxel


def test_one_folder_at_its_threshold_gives_back_its_own_float32_comparison(tmp_path):
    # 0.4 is not a float32: the model compares float32 maps with float32(0.4), and so does this
    values = np.array([0.4, np.nextafter(np.float32(0.4), 0), 0.7, 0.0], np.float32)
    write_map(tmp_path / "row" / "c_prob.nii.gz", values.reshape(2, 2, 1))
    ensemble_folders([tmp_path / "row"], tmp_path / "out", threshold=0.4, progress=False)
    assert read(tmp_path / "out" / "c.nii.gz").ravel().tolist() == [1, 0, 1, 0]


def test_the_models_mask_is_its_probability_map_at_the_mask_threshold():
    """What the ensemble copies: RSRCNN's lesion_mask (union of instance masks, each
    prob >= threshold) is exactly lesion_prob (their pixel-wise maximum) >= threshold."""
    from rsrcnn_d2.modeling.postprocessing import paste_instance_masks

    torch.manual_seed(0)
    probs = torch.rand(3, 1, 7, 7)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 17.0], [10.5, 8.0, 30.0, 28.2], [0.0, 0.0, 12.0, 9.0]])
    masks, prob = paste_instance_masks(probs, boxes, 32, 32, threshold=0.5)
    assert masks.any() and not masks.all()
    assert torch.equal(masks.any(dim=0), prob >= 0.5)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda a, b: (b / "c2_prob.nii.gz").unlink(), "b: has no probability map for 1 case"),
        (
            lambda a, b: write_map(b / "c2_prob.nii.gz", np.zeros((2, 3, 1))),
            "c2_prob.nii.gz: shape (2, 3, 1) differs from",
        ),
        (
            lambda a, b: write_map(b / "c2_prob.nii.gz", np.zeros((2, 2, 1)), np.eye(4)),
            "c2_prob.nii.gz: affine differs from",
        ),
        (
            lambda a, b: write_map(b / "c1_prob.nii.gz", np.full((2, 2, 1), 255.0)),
            "c1_prob.nii.gz: values from 255 to 255: not a probability map",
        ),
    ],
)
def test_bad_inputs_exit_2_in_one_line_naming_the_file(rows, tmp_path, capsys, setup, message):
    setup(*rows)
    out = tmp_path / "out"
    assert ensemble_cli.main(["-i", *map(str, rows), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rsrcnn-ensemble: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    if "values" not in message:  # cases and grids are checked before anything is written
        assert not out.exists()


def test_output_inside_an_input_folder_is_refused(rows, capsys):
    before = checksums(rows[0])
    assert ensemble_cli.main(["-i", *map(str, rows), "-o", str(rows[0] / "ens")]) == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    assert checksums(rows[0]) == before


def test_a_folder_without_maps_and_a_threshold_out_of_range(rows, tmp_path, capsys):
    with pytest.raises(Exception, match="no <case>_prob.nii.gz probability maps"):
        probability_maps(write_map(tmp_path / "masks" / "c1.nii.gz", np.ones((1, 1, 1))).parent)
    with pytest.raises(SystemExit) as exit_:
        ensemble_cli.main(["-i", str(rows[0]), "-o", str(tmp_path / "o"), "--threshold", "0"])
    assert exit_.value.code == 2 and "must lie in (0, 1]" in capsys.readouterr().err
