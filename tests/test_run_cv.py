"""tools/run_cv.py: folds trained resumably, held-out whole volumes predicted and scored, pooled."""

import json
import shutil

import pytest

from rsrcnn_d2.data.register import register_all_pwml

from conftest import TINY_ROWS, whole_slices_at
from test_data_fixtures import small_cohort

# mechanics, not accuracy: two iterations on whole 64-px slices
FAST = [
    "MODEL.DEVICE",
    "cpu",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.CHECKPOINT_PERIOD",
    "1000",
    "TEST.EVAL_PERIOD",
    "0",
    "SOLVER.PLATEAU.PERIOD",
    "1000",  # one validation, at the last iteration
    "SOLVER.IMS_PER_BATCH",
    "2",
    *whole_slices_at(64),
]


@pytest.fixture(autouse=True)
def _restore_default_registration(trainings_in_process):
    yield
    register_all_pwml()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from rsrcnn_d2.data.convert import convert_pwml

    base = tmp_path_factory.mktemp("cv")
    small_cohort(base / "raw", n=4, size=64, depth=6)
    convert_pwml(base / "raw", base / "tiny", workers=1, num_folds=2)
    return base


def _run_cv(capfd, *args):
    """The driver in-process (its trainings are subprocesses anyway); output from both levels."""
    from types import SimpleNamespace

    from rsrcnn_d2.cli.run_cv import main

    capfd.readouterr()
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_two_folds_resume_after_fold_0_and_pool_all_subjects(cohort, capfd):
    root, out = cohort / "tiny", cohort / "out"
    splits = json.loads((root / "splits.json").read_text())
    first = _run_cv(
        capfd, TINY_ROWS["B"], "--dataset-root", root, "--output", out, "--folds", "0", *FAST
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    fold0 = out / "fold_0"
    assert (fold0 / "config.yaml").is_file() and (fold0 / "model_final.pth").is_file()
    held_out = splits["folds"][0]["val"]
    assert sorted(p.name for p in (fold0 / "predictions").iterdir()) == [
        f"{c}.nii.gz" for c in held_out
    ]
    assert sorted(p.name for p in (fold0 / "references").iterdir()) == [
        f"{c}.nii.gz" for c in held_out
    ]
    partial = json.loads((out / "cv_summary.json").read_text())
    assert partial["folds"] == [0] and partial["complete"] is False and partial["cases"] == held_out
    assert "incomplete" in (out / "cv_summary.md").read_text()
    before = _snapshot(fold0)

    second = _run_cv(
        capfd, TINY_ROWS["B"], "--dataset-root", f"tiny={root}", "--output", out, *FAST
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _snapshot(fold0)
    # fold 0 was neither retrained, re-predicted nor re-scored: its files are untouched
    assert after == before and {"result.json", "model_final.pth", "evaluation/summary.json"} <= set(
        after
    )
    assert "fold 0: training" not in second.stdout and "fold 1: training" in second.stdout
    summary = json.loads((out / "cv_summary.json").read_text())
    assert summary["folds"] == [0, 1] and summary["complete"] is True and summary["num_folds"] == 2
    assert summary["cases"] == sorted(splits["subjects"])  # the pooled OOF covers every subject
    assert sorted(p.name for p in (out / "oof" / "predictions").iterdir()) == [
        f"{c}.nii.gz" for c in sorted(splits["subjects"])
    ]
    pooled = json.loads((out / "oof" / "evaluation" / "summary.json").read_text())
    per_fold = [
        json.loads((out / f"fold_{i}" / "evaluation" / "summary.json").read_text()) for i in (0, 1)
    ]
    true_lesions = [s["pwml_lesion3d"]["true_lesions"] for s in per_fold]
    assert pooled["pwml_lesion3d"]["true_lesions"] == sum(true_lesions) > 0
    assert pooled["slices"].startswith("all slices")  # whole volumes: every slice of 6-slice ones
    assert pooled["pwml_strict"]["n_slices"] == 6 * len(splits["subjects"])
    assert summary["per_fold"]["1"]["Dice"] == per_fold[1]["pwml_strict"]["Dice"]
    assert summary["pooled"]["lesion_F1_3d"] == pooled["headline"]["lesion_f1_3d"]
    assert summary["pooled"]["case_Dice"] == pooled["headline"]["case_dice"]
    dice = [s["pwml_strict"]["Dice"] for s in per_fold]
    assert summary["mean"]["Dice"] == pytest.approx(sum(dice) / 2)
    assert summary["sd"]["Dice"] == pytest.approx(abs(dice[0] - dice[1]) / 2**0.5)
    md = (out / "cv_summary.md").read_text()
    assert "whole volumes" in md and "| fold 0 | fold 1 | mean ± sd | pooled OOF |" in md
    first_row = md.split("|---|")[-1].splitlines()[1]  # the headline leads the table
    assert first_row.startswith("| **Dice per case** (3-D; cases empty in both left out) |")
    # each fold's training health, from its health.json, in the table
    health = [json.loads((out / f"fold_{i}" / "health.json").read_text()) for i in (0, 1)]
    assert summary["health"] == {"0": health[0], "1": health[1]}
    row = next(line for line in md.splitlines() if line.startswith("| training health |"))
    assert row.count("heads ") == 2
    # the inputs were only read
    assert not any(p.name.startswith("fold_") for p in root.iterdir())

    # fold 1 interrupted before it was recorded: resumed from its last checkpoint with the
    # same options, not restarted
    fold1 = out / "fold_1"
    (fold1 / "result.json").unlink()
    third = _run_cv(capfd, TINY_ROWS["B"], "--dataset-root", f"tiny={root}", "--output", out, *FAST)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert f"Loading from {fold1 / 'model_final.pth'}" in third.stdout + third.stderr
    assert "Starting training from iteration 2" in third.stdout + third.stderr
    assert (fold1 / "result.json").is_file() and _snapshot(fold0) == after
    assert "fold 0: finished earlier with the same options" in third.stdout

    # the 40-then-80 iterations case: finished folds asked for more iterations are not
    # reported as finished (nor resumed into a mix): refused before anything is trained
    longer = [*FAST[:2], "SOLVER.MAX_ITER", "3", *FAST[4:]]
    everything = _snapshot(out)
    fourth = _run_cv(
        capfd, TINY_ROWS["B"], "--dataset-root", f"tiny={root}", "--output", out, *longer
    )
    err = fourth.stderr.strip()
    assert fourth.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"run_cv: error: fold 0 ({fold0}): was trained with other options")
    assert "SOLVER.MAX_ITER: 2 here, 3 asked" in err and "--retrain" in err
    assert _snapshot(out) == everything
    # another row on fold 1 only: fold 0, trained as row B, is not pooled under row E
    fifth = _run_cv(
        capfd, TINY_ROWS["E"], "--dataset-root", f"tiny={root}", "--output", out, "--folds", "1",
        *FAST,
    )  # fmt: skip
    err = fifth.stderr.strip()
    assert fifth.returncode == 2 and f"fold 0 ({fold0}): was trained with other options" in err
    assert "MODEL." in err and "add it to --folds --retrain" in err
    assert _snapshot(out) == everything
    # --retrain: both folds trained again for 3 iterations, the old folders kept beside them
    import torch

    sixth = _run_cv(
        capfd, TINY_ROWS["B"], "--dataset-root", f"tiny={root}", "--output", out, "--retrain",
        *longer,
    )  # fmt: skip
    assert sixth.returncode == 0, sixth.stdout[-3000:] + sixth.stderr[-3000:]
    for fold in (fold0, fold1):
        assert torch.load(fold / "model_final.pth", weights_only=False)["iteration"] == 2
        assert "MAX_ITER: 3" in (fold / "log.txt").read_text()  # the new run's log, here
        run_options = json.loads((fold / "run_options.json").read_text())
        assert run_options["config"]["SOLVER"]["MAX_ITER"] == 3
    kept = sorted(p.name.split(".replaced-")[0] for p in out.iterdir() if ".replaced-" in p.name)
    assert kept == ["fold_0", "fold_1"]


def _main():
    from rsrcnn_d2.cli.run_cv import main  # the program behind tools/run_cv.py

    return main


def test_bad_arguments_exit_2_before_training(cohort, tmp_path, capsys):
    root, main = cohort / "tiny", _main()

    def run(*args):
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err.strip()

    code, err = run(
        TINY_ROWS["B"], "--dataset-root", root, "--output", tmp_path / "o", "--folds", "2"
    )
    assert (code, err) == (
        2,
        f"run_cv: error: {root / 'splits.json'}: has 2 folds (0-1); no fold 2",
    )
    code, err = run(TINY_ROWS["B"], "--dataset-root", root, "--output", root / "cv")
    assert code == 2 and "output folder overlaps the dataset root" in err
    code, err = run(TINY_ROWS["B"], "--dataset-root", cohort / "raw", "--output", tmp_path / "o")
    assert code == 2 and "not a prepared PWML dataset (no splits.json)" in err
    code, err = run(
        TINY_ROWS["B"],
        "--dataset-root",
        root,
        "--output",
        tmp_path / "o",
        "--folds",
        "0",
        "DATASETS.TRAIN",
        "('x',)",
    )
    assert code == 2 and err.endswith(
        "override DATASETS.TRAIN is set by the CV driver for each fold"
    )
    code, err = run(
        TINY_ROWS["B"], "--dataset-root", root, "--output", tmp_path / "o", "MODEL.NOPE", "1"
    )
    assert code == 3 and "MODEL.NOPE" in err
    with pytest.raises(SystemExit) as odd:
        main([str(TINY_ROWS["B"]), "--dataset-root", str(root), "MODEL.DEVICE"])
    assert odd.value.code == 2 and "KEY VALUE pairs" in capsys.readouterr().err
    # a held-out subject's source volume gone: refused before any training
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    all_json = moved / "annotations" / "instances_all.json"
    all_json.write_text(all_json.read_text().replace(str(cohort / "raw"), str(tmp_path / "gone")))
    code, err = run(TINY_ROWS["B"], "--dataset-root", moved, "--output", tmp_path / "o")
    assert (
        code == 2 and err.startswith(f"run_cv: error: {tmp_path / 'gone'}") and "is missing" in err
    )
    assert not (tmp_path / "o").exists() and not (root / "cv").exists()
