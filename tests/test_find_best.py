"""rsrcnn-find-best on hand-made cross-validation outputs, and the CV's probability maps.

Two rows, three out-of-fold cases on a 6x6x2 grid (voxel values by hand):

    case  reference      row A probabilities            row B probabilities
    c1    v1, v2 (one    v1 .9, v2 .4, f .6 (f apart)    v1 .4, v2 .9, f .2
          3-D lesion)
    c2    w              w .8                            w .3
    c3    none           nothing                         g .6

Masks at 0.5: A = {v1, f}, {w}, {}; B = {v2}, {}, {g}; the mean A+B = {v1, v2}, {w}, {}.
Per-case Dice: A .5, 1, (empty in both) -> 0.75 over 2 cases; B 2/3, 0, 0 -> 2/9 over 3;
A+B 1, 1, (empty) -> 1.0. Lesion F1 (3-D): A 2 found, 1 false positive -> 4/5;
B 1 found, 1 missed, 1 false positive -> 2/4; A+B 2 found -> 1.
"""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from rsrcnn_d2.cli import find_best as find_best_cli
from rsrcnn_d2.evaluation.folder import evaluate_folder
from rsrcnn_d2.experiments.find_best import rank

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
V1, V2, F, W, G = (1, 1, 0), (1, 2, 0), (4, 4, 1), (2, 2, 1), (3, 4, 0)
REFERENCE = {"c1": {V1: 1, V2: 1}, "c2": {W: 1}, "c3": {}}
ROWS = {
    "A": {"c1": {V1: 0.9, V2: 0.4, F: 0.6}, "c2": {W: 0.8}, "c3": {}},
    "B": {"c1": {V1: 0.4, V2: 0.9, F: 0.2}, "c2": {W: 0.3}, "c3": {G: 0.6}},
}


def volume(voxels, dtype) -> nib.Nifti1Image:
    array = np.zeros((6, 6, 2), dtype)
    for where, value in voxels.items():
        array[where] = value
    return nib.Nifti1Image(array, AFFINE)


def fake_cv(root: Path, maps, threshold=0.5, flip_tta=True, weights="model_best.pth", folds=2):
    """A finished run_cv output: per fold the prediction stamp and weights, the pooled oof
    masks (maps >= threshold), references, probability maps, and their evaluation."""
    oof = root / "oof"
    for part in ("predictions", "references", "probabilities"):
        (oof / part).mkdir(parents=True)
    for case, voxels in maps.items():
        nib.save(volume(voxels, np.float32), oof / "probabilities" / f"{case}_prob.nii.gz")
        mask = {v: 1 for v, p in voxels.items() if np.float32(p) >= np.float32(threshold)}
        nib.save(volume(mask, np.uint8), oof / "predictions" / f"{case}.nii.gz")
        nib.save(volume(REFERENCE[case], np.uint8), oof / "references" / f"{case}.nii.gz")
    for fold in range(folds):
        run = root / f"fold_{fold}"
        run.mkdir()
        (run / "model_best.pth").write_bytes(b"best")
        (run / "model_final.pth").write_bytes(b"final")
        (run / "config.yaml").write_text("MODEL: {}\n")
        config = {
            "MODEL": yaml.safe_dump({"RSRCNN": {"MASK_THRESHOLD": threshold}}),
            "INPUT": "{}\n",
            "TEST": yaml.safe_dump({"FLIP_TTA": flip_tta}),
        }
        stamp = {"weights": str(run / weights), "weights_mtime_ns": 0, "config": config}
        (run / "predictions.json").write_text(json.dumps(stamp))
    evaluate_folder(
        oof / "predictions", oof / "references", oof / "evaluation", workers=1, progress=False
    )
    record = {"complete": True, "num_folds": folds, "folds": list(range(folds))}
    (root / "cv_summary.json").write_text(json.dumps(record))
    return root


@pytest.fixture
def rows(tmp_path):
    return [fake_cv(tmp_path / name, maps) for name, maps in ROWS.items()]


def run(capsys, *argv):
    code = find_best_cli.main([*map(str, argv), "--workers", "1", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_ensemble_beats_both_rows_and_its_commands_are_written(rows, tmp_path, capsys):
    out = tmp_path / "best"
    code, printed, err = run(capsys, *rows, "-o", out)
    assert code == 0, err
    record = json.loads((out / "find_best.json").read_text())
    figures = {c["name"]: c for c in record["candidates"]}
    assert list(figures) == ["A", "B", "A+B"]
    assert figures["A"]["case_dice"] == pytest.approx(0.75)
    assert (figures["A"]["n_cases_scored"], figures["A"]["n_cases_empty_both"]) == (2, 1)
    assert figures["B"]["case_dice"] == pytest.approx(2 / 9)
    assert (figures["B"]["n_cases_scored"], figures["B"]["n_cases_empty_both"]) == (3, 0)
    assert figures["A+B"]["case_dice"] == 1.0
    assert (figures["A+B"]["n_cases_scored"], figures["A+B"]["n_cases_empty_both"]) == (2, 1)
    lesion_f1 = [figures[n]["lesion_f1_3d"] for n in ("A", "B", "A+B")]
    assert lesion_f1 == pytest.approx([0.8, 0.5, 1.0])
    assert record["ranking"] == ["A+B", "A", "B"] and record["best"]["name"] == "A+B"
    assert record["ensemble_thresholds"] == {"A+B": 0.5} and record["cases"] == ["c1", "c2", "c3"]
    # the ensemble's own masks: the mean of the two maps at 0.5
    ensemble = out / "ensembles" / "A+B"
    c1 = np.asanyarray(nib.load(ensemble / "predictions" / "c1.nii.gz").dataobj)
    assert sorted(zip(*np.nonzero(c1))) == [V1, V2]
    assert (ensemble / "evaluation" / "summary.json").is_file()
    a, b = (str(r.resolve()) for r in rows)
    commands = [
        f"rsrcnn-predict -i INPUT_FOLDER -o OUTPUT_FOLDER_A -m {a} --tta --save-probabilities",
        f"rsrcnn-predict -i INPUT_FOLDER -o OUTPUT_FOLDER_B -m {b} --tta --save-probabilities",
        "rsrcnn-ensemble -i OUTPUT_FOLDER_A OUTPUT_FOLDER_B -o OUTPUT_FOLDER --threshold 0.5",
    ]
    assert record["inference_command"] == commands
    text = (out / "inference_command.txt").read_text().splitlines()
    assert (
        text[0].startswith("# rsrcnn-find-best: A+B has the best case_dice") and "1.0000" in text[0]
    )
    assert text[1:] == commands
    # the table: every candidate, best first and marked
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[1:] == [
        "| best | A+B | 1.0000 | 1.0000 | 2 | 1 |",
        "|  | A | 0.7500 | 0.8000 | 2 | 1 |",
        "|  | B | 0.2222 | 0.5000 | 3 | 0 |",
    ]
    assert (out / "log.txt").is_file()


def test_rows_only_and_how_their_folds_predicted(tmp_path, capsys, monkeypatch):
    # row A predicted with model_final.pth (run_cv --checkpoint final) and without flip TTA
    a = fake_cv(tmp_path / "A", ROWS["A"], flip_tta=False, weights="model_final.pth")
    b = fake_cv(tmp_path / "B", ROWS["B"])
    (b / "oof" / "probabilities" / "c3_prob.nii.gz").unlink()  # not needed without ensembles
    code, _, err = run(
        capsys, f"first={a}", f"second={b}", "-o", tmp_path / "o", "--disable-ensembling"
    )
    assert code == 0, err
    record = json.loads((tmp_path / "o" / "find_best.json").read_text())
    assert record["ranking"] == ["first", "second"]
    folds = [str((a / f"fold_{f}").resolve()) for f in (0, 1)]
    assert record["inference_command"] == [
        f"rsrcnn-predict -i INPUT_FOLDER -o OUTPUT_FOLDER --config-file {folds[0]}/config.yaml "
        f"--weights {folds[0]}/model_final.pth {folds[1]}/model_final.pth --disable-tta"
    ]
    assert not (tmp_path / "o" / "ensembles").exists()
    # a folder named relatively (or moved since run_cv recorded absolute paths) is still
    # recognised as predicted with rsrcnn-predict -m's weights
    from rsrcnn_d2.experiments.cv_rows import read_cv_row
    from rsrcnn_d2.experiments.find_best import inference_commands

    monkeypatch.chdir(tmp_path)
    assert inference_commands([read_cv_row("B")], 0.5) == [
        f"rsrcnn-predict -i INPUT_FOLDER -o OUTPUT_FOLDER -m {b.resolve()} --tta"
    ]
    # ranked by lesion F1 the order is the same here; the metric is recorded
    code, _, _ = run(
        capsys, a, b, "-o", tmp_path / "f1", "--disable-ensembling", "--metric", "lesion_f1_3d"
    )
    assert code == 0
    assert json.loads((tmp_path / "f1" / "find_best.json").read_text())["metric"] == "lesion_f1_3d"


def test_rank_puts_nan_last_and_keeps_the_first_of_a_tie():
    nan = float("nan")
    candidates = [
        {"name": "A", "case_dice": nan},
        {"name": "B", "case_dice": 0.5},
        {"name": "A+B", "case_dice": 0.5},
        {"name": "C", "case_dice": 0.7},
    ]
    assert [c["name"] for c in rank(candidates, "case_dice")] == ["C", "B", "A+B", "A"]
    with pytest.raises(ValueError, match="metric must be one of"):
        rank(candidates, "Dice")


def _incomplete(a, b):
    record = json.loads((b / "cv_summary.json").read_text())
    (b / "cv_summary.json").write_text(json.dumps({**record, "complete": False, "folds": [0]}))


def _other_cases(a, b):
    for part, name in (("predictions", "c3.nii.gz"), ("references", "c3.nii.gz")):
        (b / "oof" / part / name).unlink()
    evaluate_folder(
        b / "oof" / "predictions", b / "oof" / "references", b / "oof" / "evaluation",
        workers=1, progress=False,
    )  # fmt: skip


def _other_label(a, b):
    nib.save(volume({W: 1, G: 1}, np.uint8), b / "oof" / "references" / "c2.nii.gz")


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_incomplete, "B/cv_summary.json: cross-validation is incomplete: folds [0] of 2"),
        (lambda a, b: (b / "cv_summary.json").unlink(), "B: has no cv_summary.json"),
        (
            lambda a, b: (b / "fold_1" / "predictions.json").unlink(),
            "fold_1: has no predictions.json",
        ),
        (_other_cases, "B: was evaluated on other cases than"),
        (_other_label, "B/oof/references/c2.nii.gz: reference label differs from"),
        (
            lambda a, b: (a / "oof" / "probabilities" / "c2_prob.nii.gz").unlink(),
            "A/oof/probabilities: no out-of-fold probability map for 1 of 3 cases (c2)",
        ),
    ],
)
def test_refusals_exit_2_in_one_line_and_write_nothing(rows, tmp_path, capsys, spoil, message):
    spoil(*rows)
    out = tmp_path / "best"
    code, _, err = run(capsys, *rows, "-o", out)
    assert code == 2
    assert err.startswith("rsrcnn-find-best: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_rows_thresholded_differently_need_a_threshold_for_their_ensemble(tmp_path, capsys):
    a = fake_cv(tmp_path / "A", ROWS["A"])
    b = fake_cv(tmp_path / "B", ROWS["B"], threshold=0.4)
    code, _, err = run(capsys, a, b, "-o", tmp_path / "o")
    assert code == 2 and "threshold their masks at 0.5 and 0.4: pass --threshold" in err
    code, _, err = run(capsys, a, b, "-o", tmp_path / "o", "--threshold", "0.6")
    assert code == 0, err
    record = json.loads((tmp_path / "o" / "find_best.json").read_text())
    # at 0.6 the mean keeps nothing but c1's v1 and v2 (0.65) and c2's w (0.55 < 0.6: missed)
    assert record["ensemble_thresholds"] == {"A+B": 0.6}
    pair = next(c for c in record["candidates"] if c["name"] == "A+B")
    assert pair["case_dice"] == pytest.approx(0.5)  # c1 1.0, c2 0.0, c3 empty in both


def test_output_inside_a_cv_folder_is_refused(rows, capsys):
    code, _, err = run(capsys, *rows, "-o", rows[0] / "best")
    assert code == 2 and "lies inside the cross-validation folder" in err
    assert not (rows[0] / "best").exists()


# ------------------------------------------------------- the CV's out-of-fold probability maps
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class RampModel:
    """Stand-in for RSRCNN: lesion probability = intensity / 1000, lesion where >= 0.5 (the
    model's own rule); counts the slices it is shown."""

    def __init__(self):
        self.slices = 0

    def __call__(self, batch):
        self.slices += len(batch)
        out = []
        for x in batch:
            prob = (x["image"][0] / 1000).clamp(0, 1)
            out.append({"lesion_mask": prob >= 0.5, "lesion_prob": prob})
        return out


@pytest.fixture
def cohort(tmp_path):
    from rsrcnn_d2.experiments.cv import Cohort

    sources = {}
    for i, case in enumerate(("s0", "s1")):
        image = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2) * 25 + 100 * i
        mask = (image > 600).astype(np.uint8)
        paths = (tmp_path / "src" / f"{case}_0000.nii.gz", tmp_path / "src" / f"{case}.nii.gz")
        paths[0].parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(image, LPS), paths[0])
        nib.save(nib.Nifti1Image(mask, LPS), paths[1])
        sources[case] = paths
    folds = [{"train": ["s1"], "val": ["s0"]}, {"train": ["s0"], "val": ["s1"]}]
    return Cohort(tmp_path / "root", "axial", False, folds, sources)


def test_cv_folds_save_probability_maps_that_threshold_to_their_masks(
    cohort, tmp_path, monkeypatch
):
    import os

    from rsrcnn_d2.experiments import cv
    from rsrcnn_d2.inference import predictor as predictor_module

    from conftest import TINY_ROWS

    model = RampModel()
    monkeypatch.setattr(
        predictor_module.LesionPredictor,
        "from_config",
        staticmethod(lambda cfg, **kw: predictor_module.LesionPredictor(model, [], 4)),
    )
    out = tmp_path / "cv"
    for fold in (0, 1):
        (out / f"fold_{fold}").mkdir(parents=True)
        (out / f"fold_{fold}" / "config.yaml").write_text(f"_BASE_: {TINY_ROWS['E']}\n")
        (out / f"fold_{fold}" / "model_final.pth").write_bytes(b"weights")

    def predict(fold, save):
        run = out / f"fold_{fold}"
        cv.predict_fold(cohort, fold, run, opts=["MODEL.DEVICE", "cpu"], log=lambda _: None,
                        save_probabilities=save)  # fmt: skip
        return run / "predictions", run / "probabilities"

    predictions, probabilities = predict(0, save=True)
    assert model.slices == 2  # s0's two axial slices
    image = np.asanyarray(nib.load(cohort.sources["s0"][0]).dataobj)
    prob = nib.load(probabilities / "s0_prob.nii.gz")
    assert prob.get_data_dtype() == np.float32 and np.array_equal(prob.affine, LPS)
    # in the file's own voxel order: intensity / 1000, and the mask is exactly prob >= 0.5
    assert np.array_equal(np.asanyarray(prob.dataobj), np.clip(image / 1000, 0, 1))
    mask = np.asanyarray(nib.load(predictions / "s0.nii.gz").dataobj)
    assert np.array_equal(mask, (image / 1000 >= 0.5).astype(np.uint8)) and mask.any()

    predict(0, save=True)  # both exist for these weights: nothing predicted again
    assert model.slices == 2
    (probabilities / "s0_prob.nii.gz").unlink()
    predict(0, save=False)  # masks alone were asked for, and they exist
    assert model.slices == 2
    predict(0, save=True)  # the missing map is predicted again
    assert model.slices == 4 and (probabilities / "s0_prob.nii.gz").is_file()

    predict(1, save=True)
    assert model.slices == 6
    pooled = cv._pool(out, [0, 1], cohort)
    assert pooled["cases"] == ["s0", "s1"]
    assert sorted(p.name for p in (out / "oof" / "probabilities").iterdir()) == [
        "s0_prob.nii.gz",
        "s1_prob.nii.gz",
    ]

    # new weights: the old map may not be ensembled, even when maps are not asked for now
    weights = out / "fold_0" / "model_final.pth"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    predict(0, save=False)
    assert model.slices == 8 and not (probabilities / "s0_prob.nii.gz").exists()
