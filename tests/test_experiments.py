"""Experiment tables: reading results, mean ± sd, pooling folds, and resumable runs."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rsrcnn_d2.evaluation.report import SLICE_COLUMNS
from rsrcnn_d2.experiments import (
    mean_sd,
    pooled_reference,
    pooled_results,
    pooled_strict,
    read_eval_results,
    seed_summary_table,
    train_and_record,
    trained_weights,
)
from rsrcnn_d2.experiments.run_options import (
    StaleRunError,
    asked_options,
    claim_run_dir,
    stale_options,
)

from conftest import REPO, TINY_ROWS


def test_read_eval_results_takes_the_last_evaluation(tmp_path):
    path = tmp_path / "metrics.json"
    lines = [
        {"iteration": 9, "total_loss": 1.0},
        {"iteration": 9, "pwml_strict/Dice": 0.25, "pwml_lesion/found": 3},
        {"iteration": 19, "pwml_strict/Dice": 0.5, "pwml_strict/HD": 4.0, "lr": 0.01},
        {"iteration": 19, "total_loss": 0.5},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert read_eval_results(path) == {"pwml_strict/Dice": 0.5, "pwml_strict/HD": 4.0}


def test_read_eval_results_errors_name_the_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"iteration": 1, "total_loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.json: no PWML evaluation"):
        read_eval_results(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"metrics\.json: a line is not JSON"):
        read_eval_results(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_eval_results(tmp_path / "missing.json")


def test_mean_sd_by_hand():
    mean, sd, n = mean_sd([0.5, 0.7, float("nan")])
    assert n == 2 and mean == pytest.approx(0.6) and sd == pytest.approx(math.sqrt(0.02))
    mean, sd, n = mean_sd([1.0, 2.0, 3.0, 6.0])  # mean 3, squares 4+1+0+9 = 14, /3
    assert (mean, n) == (3.0, 4) and sd == pytest.approx(math.sqrt(14 / 3))
    mean, sd, n = mean_sd([0.3])
    assert mean == 0.3 and math.isnan(sd) and n == 1
    mean, sd, n = mean_sd([])
    assert math.isnan(mean) and n == 0


def test_seed_summary_table_cells():
    metrics = (("Dice", "d", 2), ("HD", "h", 1))
    runs = {"B": [{"d": 0.5, "h": 3.0}, {"d": 0.7, "h": float("nan")}], "E": [{"d": 0.25}], "X": []}
    lines = seed_summary_table(runs, {"B": "row B"}, metrics).splitlines()
    assert lines[0] == "| run | results | Dice | HD |"
    assert (
        seed_summary_table(runs, None, metrics, "seeds", {"X": 7}).splitlines()[4]
        == "| X | 7 | – | – |"
    )
    assert lines[2] == "| row B | 2 | 0.60 ± 0.14 | 3.0 (n=1) |"
    assert lines[3] == "| E | 1 | 0.25 | – |"
    assert lines[4] == "| X | 0 | – | – |"


def _slices_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SLICE_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, 0) for c in SLICE_COLUMNS})


def test_pooled_strict_by_hand(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _slices_csv(
        a,
        [
            dict(
                subject="s1",
                tp=2,
                fp=2,
                fn=2,
                tn=94,
                dice=0.5,
                sensitivity=0.5,
                specificity=0.98,
                hd=2.0,
                true_lesions=2,
                found_lesions=1,
                pred_lesions=2,
                fp_lesions=1,
            )
        ],
    )
    _slices_csv(
        b,
        [
            dict(
                subject="s2",
                tp=0,
                fp=0,
                fn=3,
                tn=97,
                dice=0.0,
                sensitivity=0.0,
                specificity=1.0,
                hd="",
                true_lesions=1,
                found_lesions=0,
                pred_lesions=0,
                fp_lesions=0,
            ),
            dict(
                subject="s2",
                tp=4,
                fp=0,
                fn=0,
                tn=96,
                dice=1.0,
                sensitivity=1.0,
                specificity=1.0,
                hd=0.0,
                true_lesions=3,
                found_lesions=3,
                pred_lesions=3,
                fp_lesions=0,
            ),
        ],
    )
    r = pooled_strict([a, b])
    assert r["pwml_strict/Dice"] == pytest.approx(0.5)  # (0.5 + 0 + 1) / 3
    assert r["pwml_strict/Sens"] == pytest.approx(1.5 / 3)
    assert r["pwml_strict/Spec"] == pytest.approx(2.98 / 3)
    assert r["pwml_strict/HD"] == pytest.approx(1.0)  # the empty prediction has no HD
    # found 4 of 6, missed 2, one false blob: 2*4 / (2*4 + 2 + 1)
    assert r["pwml_strict/lesion_F1"] == pytest.approx(8 / 11)
    assert r["pwml_strict/n_slices"] == 3 and r["pwml_strict/n_HD_missing"] == 1
    # the reference protocol: the empty prediction skipped, then subject means (0.5 and 1.0)
    ref = pooled_results([a, b])
    assert ref["pwml_reference/Dice"] == pytest.approx(0.75)
    assert ref["pwml_reference/skipped_fraction"] == pytest.approx(1 / 3)
    assert ref["pwml_reference/n_subjects"] == 2 and set(ref) == set(r) | set(
        pooled_reference([a, b])
    )


def test_pooled_figures_follow_the_evaluators_rules(tmp_path):
    """Pooled folds are scored by the evaluator's own protocols, edge cases included: with no
    slice whose truth and prediction both have lesions, HD is n/a, not a mean of zeros."""
    path = tmp_path / "missed.csv"
    _slices_csv(
        path,
        [
            dict(
                subject="s1",
                tp=0,
                fp=0,
                fn=2,
                tn=98,
                dice=0.0,
                sensitivity=0.0,
                specificity=1.0,
                hd="",
                true_lesions=1,
                pred_lesions=0,
            ),
            dict(
                subject="s1",
                tp=0,
                fp=0,
                fn=0,
                tn=100,
                dice=1.0,
                sensitivity="",
                specificity=1.0,
                hd=0.0,
            ),
        ],
    )
    r = pooled_results([path])
    assert math.isnan(r["pwml_strict/HD"]) and math.isnan(r["pwml_reference/HD"])
    # the slice empty in both (Dice 1, HD 0 as earlier releases wrote it) has no score: the
    # only scored slice, the missed lesion, gives 0 (not 0.5)
    assert r["pwml_strict/n_HD_measured"] == 0 and r["pwml_strict/Dice"] == 0.0
    assert r["pwml_strict/n_both_empty"] == 1 and r["pwml_strict/n_scored"] == 1
    assert r["pwml_reference/skipped_fraction"] == 1.0 and r["pwml_reference/n_subjects"] == 0


def test_slice_records_read_back_are_the_evaluators(tmp_path):
    """The CSV keeps every figure the two protocols need (to its 6 significant digits)."""
    import dataclasses

    import torch

    from rsrcnn_d2.evaluation import PWMLEvaluator
    from rsrcnn_d2.experiments.results import read_slice_records

    rng = np.random.default_rng(3)
    evaluator = PWMLEvaluator(output_dir=str(tmp_path), distributed=False)
    for i in range(6):
        truth = np.zeros((40, 40), bool)
        truth[5 + i : 8 + i, 10:13] = True
        pred = np.roll(truth, int(rng.integers(-1, 2)), axis=1) if i % 3 else np.zeros_like(truth)
        evaluator.process(
            [
                {
                    "file_name": f"s{i % 2}/{i}.npy",
                    "image_id": i,
                    "subject": f"s{i % 2}",
                    "slice_index": i,
                    "spacing": (0.5, 0.7),
                    "gt_mask": torch.from_numpy(truth),
                }
            ],
            [{"lesion_mask": torch.from_numpy(pred)}],
        )
    evaluator.evaluate()
    original = sorted(evaluator._records, key=lambda r: (r["subject"], r["z"]))
    read = read_slice_records([tmp_path / "pwml_slices.csv"])
    assert [r["subject"] for r in read] == [r["subject"] for r in original]
    for mine, theirs in zip(read, original):
        for field in dataclasses.fields(theirs["metrics"]):
            expected = getattr(theirs["metrics"], field.name)
            assert getattr(mine["metrics"], field.name) == (
                expected
                if not isinstance(expected, float)
                else pytest.approx(expected, rel=1e-5, nan_ok=True)
            ), field.name


def test_pooled_strict_names_a_file_without_the_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,tp,fp,fn,tn,dice\ns1,1,0,0,9,0.5\n")
    with pytest.raises(ValueError, match=r"bad\.csv: no column 'true_lesions'"):
        pooled_strict([bad])


def test_finished_run_is_not_retrained(tmp_path):
    run = tmp_path / "run"
    opts = ["SEED", "3"]
    claim_run_dir(run, asked_options(TINY_ROWS["B"], opts))
    record = {"config": str(TINY_ROWS["B"]), "opts": opts, "results": {"pwml_strict/Dice": 0.5}}
    (run / "result.json").write_text(json.dumps(record))
    # the same options: the recorded result, no training (it would fail: no dataset)
    assert train_and_record(TINY_ROWS["B"], run, opts) == record


def test_a_run_trained_with_other_options_is_refused_or_retrained(tmp_path):
    """The 40-then-80 iterations case at the runner: a finished (or interrupted) folder is not
    reported or resumed under other options; --retrain keeps it aside and trains afresh."""
    run = tmp_path / "run"
    short = ["SOLVER.MAX_ITER", "40"]
    claim_run_dir(run, asked_options(TINY_ROWS["B"], short))
    (run / "result.json").write_text(json.dumps({"config": "B", "opts": short, "results": {}}))
    longer = ["SOLVER.MAX_ITER", "80"]
    with pytest.raises(StaleRunError) as e:
        train_and_record(TINY_ROWS["B"], run, longer, what="fold 0")
    assert str(e.value).startswith(f"fold 0 ({run}): was trained with other options")
    assert "SOLVER.MAX_ITER: 40 here, 80 asked" in str(e.value) and "--retrain" in str(e.value)
    with pytest.raises(StaleRunError, match="MODEL.ROI_MASK_HEAD"):  # another row, same folder
        train_and_record(TINY_ROWS["E"], run, short)
    with pytest.raises(StaleRunError, match="dataset content: none here, /elsewhere/pwml asked"):
        train_and_record(TINY_ROWS["B"], run, short, ["pwml=/elsewhere/pwml"])
    assert (run / "result.json").is_file()  # refused: nothing moved, nothing trained
    claim_run_dir(run, asked_options(TINY_ROWS["B"], longer), retrain=True, log=lambda m: None)
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert (aside / "result.json").is_file() and not (run / "result.json").exists()
    assert json.loads((run / "run_options.json").read_text())["config"]["SOLVER"]["MAX_ITER"] == 80
    # a folder of an earlier release: judged by detectron2's config.yaml dump; the device and
    # the training geometry train_net fills in are not differences
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    from rsrcnn_d2.config import get_rsrcnn_cfg

    cfg = get_rsrcnn_cfg(str(TINY_ROWS["B"]), short)
    cfg.MODEL.DEVICE, cfg.INPUT.TRAIN_SLICE_SIZE = "cpu", [222, 222]
    (legacy / "config.yaml").write_text(cfg.dump())
    assert stale_options(legacy, asked_options(TINY_ROWS["B"], short)) == []
    assert stale_options(legacy, asked_options(TINY_ROWS["B"], longer)) == [
        "SOLVER.MAX_ITER: 40 here, 80 asked"
    ]


def test_failed_training_raises_and_records_nothing(tmp_path, trainings_in_process):
    # the child fails (no such dataset registered): one error, no result
    opts = ["DATASETS.TRAIN", "('no_such_dataset',)"]
    with pytest.raises(RuntimeError, match="failed"):
        train_and_record(TINY_ROWS["B"], tmp_path / "run", opts, log_file=tmp_path / "log.txt")
    assert not (tmp_path / "run" / "result.json").exists()
    assert "no_such_dataset" in (tmp_path / "log.txt").read_text()


def test_training_runs_the_package_module_not_a_repository_script(tmp_path, monkeypatch):
    """The runner starts the installed training program (python -m), so it works from any
    directory and without a checkout; OUTPUT_DIR comes last, after flags and overrides."""
    from rsrcnn_d2.experiments import runner

    run_dir, seen = tmp_path / "run", []

    def train(cmd, **kw):
        seen.append(cmd)
        (run_dir / "metrics.json").write_text(
            json.dumps({"iteration": 3, "pwml_strict/Dice": 0.5}) + "\n"
        )
        (run_dir / "health.json").write_text(json.dumps(health))
        return subprocess.CompletedProcess(cmd, 0)

    health = {"verdict": "heads_never_trained", "first_foreground_iteration": None}
    monkeypatch.setattr(runner.subprocess, "run", train)
    monkeypatch.setattr(runner, "asked_options", lambda *a: {"config": {}, "dataset_roots": []})
    record = train_and_record("cfg.yaml", run_dir, ["SEED", 1], ["c=/x/pwml"], num_gpus=2)
    assert seen == [
        [
            sys.executable,
            "-m",
            "rsrcnn_d2.cli.train_net",
            "--config-file",
            "cfg.yaml",
            "--resume",
            "--dataset-root",  # the cohort: one argument, never the environment
            "c=/x/pwml",
            "--num-gpus",
            "2",
            "SEED",
            "1",
            "OUTPUT_DIR",
            str(run_dir),
        ]
    ]
    assert record == {
        "config": "cfg.yaml",
        "opts": ["SEED", "1"],
        "results": {"pwml_strict/Dice": 0.5},
        "health": health,  # the verdict travels with the result into every summary
    }
    assert json.loads((run_dir / "result.json").read_text()) == record


def test_a_step_is_named_with_its_time_and_a_failed_one_gets_no_closing_line(capfd):
    from rsrcnn_d2.experiments.runner import step

    with step("1/2 greeting"):
        print("hello")
    assert capfd.readouterr().out == "\n=== 1/2 greeting\nhello\n=== 1/2 greeting: done in 0 s\n"
    with pytest.raises(KeyError), step("2/2 failing"):
        raise KeyError("x")
    assert capfd.readouterr().out == "\n=== 2/2 failing\n"


def _tool(name, *args, **kw):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / name), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        **kw,
    )


@pytest.mark.parametrize("program", ["run_ablation", "run_loso"])
def test_a_negative_calibration_trial_count_is_an_argument_error(tmp_path, capsys, program):
    """Refused at once (exit 2, one line), not after the trainings by the optimiser."""
    import importlib

    main = importlib.import_module(f"rsrcnn_d2.cli.{program}").main
    (tmp_path / "s" / "input").mkdir(parents=True)
    (tmp_path / "s" / "gt").mkdir()
    first = [str(tmp_path / "s")] if program == "run_loso" else []
    with pytest.raises(SystemExit) as e:
        main([*first, "--output", str(tmp_path / "o"), "--calibration-trials", "2", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].endswith("RANDOM and GUIDED are counts (0 or more)")
    assert not (tmp_path / "o").exists()


def test_ablation_refuses_a_seed_given_twice(tmp_path, capsys):
    from rsrcnn_d2.cli.run_ablation import main

    assert main(["--output", str(tmp_path / "a"), "--seeds", "0", "1", "0"]) == 2
    assert "--seeds repeats a seed: 0 1 0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_ablation_summary_file_follows_the_objective(tmp_path, monkeypatch):
    """A lesion-F1 re-run into a Dice sweep's folder writes its own summary, not over summary.md."""
    from rsrcnn_d2.cli.run_ablation import main
    from rsrcnn_d2.experiments import ablation

    asked = []
    monkeypatch.setattr(ablation, "run_ablation", lambda out, **kw: asked.append(kw) or [])
    for extra in ([], ["--objective", "lesion_f1"], ["--objective", "lesion_f1", "--summary", "x"]):
        assert main(["--output", str(tmp_path / "a"), *extra]) == 0
    assert [(kw["objective"], kw["summary"]) for kw in asked] == [
        ("dice", "summary.md"),
        ("lesion_f1", "summary_lesion_f1.md"),
        ("lesion_f1", "x"),
    ]


def test_the_k_sweep_comes_with_row_c_unless_asked(tmp_path, monkeypatch):
    """--rows D E trains rows D and E only: the k sweep (three runs of row C) is the default
    when row C is among the rows (the default rows have it), and --k always says."""
    from rsrcnn_d2.cli.run_ablation import main
    from rsrcnn_d2.experiments import ablation

    asked = []
    monkeypatch.setattr(ablation, "run_ablation", lambda out, **kw: asked.append(kw["ks"]) or [])
    out = ["--output", str(tmp_path / "a")]
    for extra in ([], ["--rows", "B", "C"], ["--rows", "D", "E"], ["--rows", "D", "--k", "2"]):
        assert main([*out, *extra]) == 0
    assert main([*out, "--rows", "C", "--k"]) == 0
    assert asked == [[1.0, 1.3, 2.0], [1.0, 1.3, 2.0], [], [2.0], []]


def test_ablation_plan_names_the_k_sweep():
    from rsrcnn_d2.experiments.ablation import ROW_CONFIGS, planned_runs

    runs = planned_runs(["B", "E", "plus"], [1.0, 1.3, 2])
    assert list(runs) == ["B", "E", "plus", "C_k1.0", "C", "C_k2.0"]
    assert runs["C"][1] == []  # k = 1.3 is row C itself (the paper's Table 2 varies C)
    assert runs["C_k2.0"] == (
        ROW_CONFIGS["C"],
        ["MODEL.ROI_MASK_HEAD.EXPANSION_K", "2.0"],
        "C  k=2.0",
    )
    assert runs["plus"][0] == ROW_CONFIGS["plus"]


def test_ablation_variants_are_rows_with_overrides():
    from rsrcnn_d2.experiments.ablation import ROW_CONFIGS, add_variants

    runs = add_variants({}, [["C_off", "C", "MODEL.HRPN.OBJECTNESS_RELU", "False"]])
    assert runs["C_off"] == (
        ROW_CONFIGS["C"],
        ["MODEL.HRPN.OBJECTNESS_RELU", "False"],
        "C  MODEL.HRPN.OBJECTNESS_RELU=False",
    )
    for bad in (["x", "Z"], ["x", "C", "KEY"], ["C_off", "C"]):
        with pytest.raises(SystemExit, match="--variant"):
            add_variants(dict(runs), [bad])


def _in_process(capfd, main, *args):
    """A driver in-process (its steps are subprocesses anyway), with the output of both levels."""
    from types import SimpleNamespace

    capfd.readouterr()
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def test_ablation_runs_then_resumes_without_retraining(tmp_path, capfd, trainings_in_process):
    from rsrcnn_d2.cli.run_ablation import main

    out = tmp_path / "abl"
    args = ["--output", out, "--iters", 2, "--subjects", 6, "--seeds", 0, "--rows", "D", "E"]
    args += ["--k", "--coarse-cohort"]  # small volumes: a quick cohort
    args += ["--calibration-trials", 1, 1]
    first = _in_process(capfd, main, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    result = out / "runs" / "E" / "seed0" / "result.json"
    recorded = json.loads(result.read_text())
    assert set(recorded["results"]) >= {"pwml_strict/Dice", "pwml_strict/lesion_F1"}
    trained = json.loads((out / "runs" / "D" / "seed0" / "result.json").read_text())
    assert trained["opts"][-2:] == ["DATASETS.TEST", "('pwml_test',)"]
    assert (out / "runs" / "D" / "seed0" / "model_final.pth").exists()
    assert not list((out / "runs" / "D" / "seed0").glob("model_0*.pth"))  # pruned
    # row E trains exactly as row D (the CRF is test-time only): it evaluates D's weights
    assert recorded["weights_of"] == "D" and recorded["config"].endswith("E_rsrcnn_R_18_FPN.yaml")
    for file in ("model_final.pth", "health.json"):
        d_file, e_file = (out / "runs" / r / "seed0" / file for r in ("D", "E"))
        assert e_file.stat().st_ino == d_file.stat().st_ino  # hard link, no copy
    assert recorded["health"] == json.loads(d_file.read_text())  # D's training, E's verdict
    # calibrated on pwml_val, evaluated again on the same test slices
    tuned = json.loads((out / "runs" / "E" / "seed0" / "calibrated" / "result.json").read_text())
    if tuned["operating_point"] is None:  # 2 iterations found nothing: the row's own point
        assert tuned["config"].endswith("E_rsrcnn_R_18_FPN.yaml")
        assert "not calibrated (nothing found)" in (out / "summary.md").read_text()
    else:
        assert tuned["config"].endswith("operating_point.yaml")
        assert {"score", "l1", "l2", "c1", "e1"} <= set(tuned["operating_point"])
    assert tuned["results"]["pwml_strict/n_slices"] == recorded["results"]["pwml_strict/n_slices"]
    assert "pwml_lesion3d/F1" in tuned["results"]
    # the flip-TTA variant evaluates row E's own weights: no training of its own
    tta = json.loads((out / "runs" / "E_tta" / "seed0" / "calibrated" / "result.json").read_text())
    assert (
        tta["opts"] == ["TEST.FLIP_TTA", "True"]
        and not (out / "runs" / "E_tta" / "seed0" / "result.json").exists()
    )
    stamp = result.stat().st_mtime_ns
    second = _in_process(capfd, main, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "seed 0 (done)" in second.stdout
    assert result.stat().st_mtime_ns == stamp
    summary = (out / "summary.md").read_text()
    assert "| run | seeds |" in summary and "| E  + DCRF (RS R-CNN), k=1.3 | 1 |" in summary
    assert "bootstrap intervals over the test subjects" in summary
    assert "voxels 1.4-1.5 mm in-plane, slices 2.6-3 mm" in summary  # the grid it was made on
    assert "Training health: " in summary and "| health |" in summary
    assert json.loads((out / "summary.json").read_text())["rows"]["E"]["calibrated"]
    # more iterations asked of finished runs: refused before any work, naming run and key
    third = _in_process(capfd, main, *[3 if a == 2 else a for a in args])
    assert third.returncode == 2 and "SOLVER.MAX_ITER: 2 here, 3 asked" in third.stderr
    assert "seed 0 (" in third.stderr and result.stat().st_mtime_ns == stamp
    # the default grid asked of a cohort simulated on the coarse one: refused, nothing mixed
    fourth = _in_process(capfd, main, *[a for a in args if a != "--coarse-cohort"])
    assert fourth.returncode == 2 and "Traceback" not in fourth.stderr, fourth.stderr[-2000:]
    assert (
        fourth.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "raw: holds a cohort made with other settings (seed 0); this tool simulates its "
            "cohort there itself and keeps only its own: use another --output, or move that "
            "folder away"
        )
    )
    assert result.stat().st_mtime_ns == stamp
    # the finished runs calibrated again for lesion F1 (--no-train) in a process whose pwml_*
    # are the import-time ones, as a new process has them: on the sweep's cohort, beside the
    # Dice calibration (reviewed: --no-train calibrated against datasets/pwml)
    from rsrcnn_d2.data.register import register_all_pwml

    register_all_pwml()
    fifth = _in_process(capfd, main, *args, "--no-train", "--objective", "lesion_f1")
    assert fifth.returncode == 0, fifth.stderr[-2000:]
    for run in ("E", "E_tta"):
        assert (out / "runs" / run / "seed0" / "calibrated_lesion_f1" / "result.json").is_file()
    assert "validation subjects for lesion F1)" in (out / "summary_lesion_f1.md").read_text()
    assert tuned == json.loads(
        (out / "runs" / "E" / "seed0" / "calibrated" / "result.json").read_text()
    )
    assert result.stat().st_mtime_ns == stamp


def _slice_folder(root, subjects=3):
    from rsrcnn_d2.synth.phantom import synthetic_slice

    for s in range(subjects):
        for k in range(2):
            image, mask = synthetic_slice(64, seed=10 * s + k)
            for part, array in (
                ("input", (image / image.max() * 255).astype(np.uint8)),
                ("gt", (mask > 0).astype(np.uint8) * 255),
            ):
                (root / part / f"s{s}").mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / part / f"s{s}" / f"{k}.png")


def test_loso_holds_out_each_subject_once(tmp_path, capfd, trainings_in_process):
    """Two folds after a pre-training on another slice folder, calibrated there; each fold is
    also calibrated again on its held-in subject (--recalibrate)."""
    from rsrcnn_d2.cli.run_loso import main

    _slice_folder(tmp_path / "slices", subjects=2)  # two folds show the mechanics
    _slice_folder(tmp_path / "pre", subjects=4)
    out = tmp_path / "loso"
    proc = _in_process(
        capfd,
        main,
        tmp_path / "slices",
        "--output",
        out,
        "--iters",
        2,
        "--rows",
        "E",
        "--pretrain",
        tmp_path / "pre",
        "--pretrain-iters",
        2,
        "--recalibrate",
        "--calibration-trials",
        1,
        1,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folds = json.loads((out / "pwml" / "splits.json").read_text())["folds"]
    assert sorted(v for f in folds for v in f["val"]) == ["s0", "s1"]
    assert all(len(f["val"]) == 1 for f in folds)
    # each fold fine-tunes the pre-trained model at the operating point calibrated with it
    from rsrcnn_d2.experiments.loso import ROW_CONFIGS

    point = out / "pretrain" / "runs" / "E" / "operating_point.yaml"
    fold_dir = out / "runs" / "pretrained" / "seed0" / "E" / "fold_0"
    fold = json.loads((fold_dir / "result.json").read_text())
    if json.loads(point.with_suffix(".json").read_text())["best"] is None:
        # 2 iterations found nothing to calibrate: no tuned config, the row's own point
        assert not point.exists() and fold["config"] == str(ROW_CONFIGS["E"])
    else:
        assert "SCORE_THRESH_TEST" in point.read_text() and fold["config"] == str(point)
    # the pre-training's kept weights (model_best.pth only once its heads had trained)
    assert fold["opts"][fold["opts"].index("MODEL.WEIGHTS") + 1] == str(
        trained_weights(out / "pretrain" / "runs" / "E")
    )
    # calibrated again on the held-in subject s1 (fold 0 holds out s0), scored on s0
    tuned = json.loads((fold_dir / "recalibrated" / "result.json").read_text())
    assert (fold_dir / "recalibrated" / "held_in_probs.pt").is_file()
    held_out = fold_dir / "recalibrated" / "inference" / "pwml_fold0_val" / "pwml_slices.csv"
    assert {r["subject"] for r in csv.DictReader(held_out.open())} == {folds[0]["val"][0]}
    assert tuned["results"]["pwml_strict/n_slices"] == fold["results"]["pwml_strict/n_slices"]
    summary = (out / "summary_pretrained.md").read_text()
    assert "Training health: " in summary
    assert "(2 folds)" in summary and "| E  RS R-CNN | 2 |" in summary
    pooled = [ln for ln in summary.splitlines() if ln.startswith("| E ")][0]
    assert pooled.startswith("| E  RS R-CNN | 1 |")  # one seed; its 4 slices of 2 folds pooled
    assert "(E 4 slices)" in summary and "| run | folds |" in summary
    assert "1-5 px recall" in summary
    assert "calibrated again on its own held-in subjects" in summary
    # every calibration ran the trials asked: the grid, then 1 random and 1 guided trial
    from rsrcnn_d2.tuning.operating_point import DEFAULT_SCORE_GRID

    for trials in (point.with_suffix(".json"), fold_dir / "recalibrated" / "operating_point.json"):
        record = json.loads(trials.read_text())
        assert len(record["trials"]) <= len(DEFAULT_SCORE_GRID) + 1 + 2, trials


def test_loso_repeats_per_seed_from_one_checkpoint(tmp_path, monkeypatch, capsys):
    """--seeds and --pretrained, without training: each (seed, row, fold) trains from the one
    checkpoint with its seed into runs/TAG/seed<s>/ROW/fold_<i> (run_cv's fold loop, the
    fold's own training subjects validating it); the summary pools each seed's folds and gives
    mean ± sd over the seeds."""
    from rsrcnn_d2.cli.run_loso import main
    from rsrcnn_d2.data.fileio import atomic_write_json
    from rsrcnn_d2.evaluation.protocols import slice_record, summarize_slices
    from rsrcnn_d2.evaluation.report import slice_row, write_csv_atomic
    from rsrcnn_d2.experiments import cv, loso

    _slice_folder(tmp_path / "slices", subjects=2)
    checkpoint = tmp_path / "pretrained.pth"
    checkpoint.write_bytes(b"weights")
    trained = []

    def fake_training(config, run_dir, opts, roots, **kwargs):
        opts = dict(zip(opts[::2], map(str, opts[1::2])))
        trained.append((run_dir.relative_to(tmp_path / "loso" / "runs"), opts))
        # seed 0 finds the held-out lesion, seed 1 does not: pooled Dice 1 and 0
        truth = np.zeros((8, 8), bool)
        truth[2, 2:4] = True
        pred = truth if opts["SEED"] == "0" else np.zeros_like(truth)
        record = slice_record(pred, truth, {"file_name": "x.png", "subject": "s", "slice_index": 0})
        results, rows = summarize_slices([record])
        folder = run_dir / "inference" / opts["DATASETS.TEST"][2:-3]
        folder.mkdir(parents=True)
        write_csv_atomic(str(folder / "pwml_slices.csv"), SLICE_COLUMNS, [slice_row(record)])
        write_csv_atomic(str(folder / "pwml_subjects.csv"), list(rows[0]), rows)
        flat = {f"{task}/{k}": v for task, fig in results.items() for k, v in fig.items()}
        atomic_write_json(run_dir / "result.json", {"results": flat})
        return {"results": flat}

    monkeypatch.setattr(cv, "train_and_record", fake_training)
    for module in (cv, loso):
        monkeypatch.setattr(module, "read_health", lambda run_dir: None)
    args = [tmp_path / "slices", "--output", tmp_path / "loso", "--rows", "B", "E"]
    assert main([str(a) for a in (*args, "--seeds", 0, 1, "--pretrained", checkpoint)]) == 0
    assert [str(d) for d, _ in trained] == [
        f"pretrained/seed{s}/{row}/fold_{i}" for s in (0, 1) for row in "BE" for i in (0, 1)
    ]
    # leave-one-subject-out: the held-out subject never validates its own fold
    assert {
        o["DATASETS.VAL"] for _, o in trained if o["DATASETS.TEST"] == "('pwml_fold0_val',)"
    } == {"('pwml_fold0_train',)"}
    assert {o["MODEL.WEIGHTS"] for _, o in trained} == {str(checkpoint)}
    assert [o["SEED"] for _, o in trained] == ["0"] * 4 + ["1"] * 4
    summary = (tmp_path / "loso" / "summary_pretrained.md").read_text()
    assert "seeds 0, 1" in summary and "mean ± sd over the seeds" in summary
    # pooled strict Dice per seed: 1.0 and 0.0 -> 0.500 ± 0.707
    assert "| B  Mask R-CNN | 2 | 0.500 ± 0.707 |" in summary
    capsys.readouterr()
    assert main([str(a) for a in (*args, "--seed", 0, "--seeds", 1)]) == 2
    assert "--seed or --seeds" in capsys.readouterr().err
    assert main([str(a) for a in (*args, "--pretrained", tmp_path / "none.pth")]) == 2
    assert "--pretrained: no such file" in capsys.readouterr().err
    # reviewed: a seed given twice counted twice in mean ± sd; --pretrained silently beat --pretrain
    assert main([str(a) for a in (*args, "--seeds", 1, 1)]) == 2
    assert "--seeds repeats a seed: 1 1" in capsys.readouterr().err
    both = ("--pretrained", checkpoint, "--pretrain", tmp_path / "slices")
    assert main([str(a) for a in (*args, *both)]) == 2
    assert "not both" in capsys.readouterr().err


def test_loso_refuses_a_folder_without_slices(tmp_path, capsys):
    # argument errors, in-process: they must stop the program before anything runs
    from rsrcnn_d2.cli.run_loso import main

    assert main([str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert "expected input/ and gt/" in capsys.readouterr().err
    (tmp_path / "input").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(SystemExit, match="no such file: /no/such.pth"):
        main([str(tmp_path), "--weights", "E=/no/such.pth", "--output", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="ROW=PATH"):
        main([str(tmp_path), "--weights", "C=/no/such.pth", "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_cohort_is_known_by_its_content_and_weights_by_their_file(tmp_path):
    """A moved cohort is the same cohort; one prepared again with other splits is not; a
    MODEL.WEIGHTS file written again (a re-run pre-training) is other weights."""
    cohort, moved = tmp_path / "cohort", tmp_path / "moved"
    for root in (cohort, moved):
        root.mkdir()
        (root / "splits.json").write_text('{"train": ["a"], "val": ["b"]}')
    weights = tmp_path / "pre.pth"
    weights.write_bytes(b"0")
    opts = ["MODEL.WEIGHTS", str(weights)]
    run = tmp_path / "run"

    def asked(root):
        return asked_options(TINY_ROWS["B"], opts, [f"c={root}"])

    claim_run_dir(run, asked(cohort))
    assert stale_options(run, asked(moved)) == []
    (cohort / "splits.json").write_text('{"train": ["b"], "val": ["a"]}')
    assert stale_options(run, asked(cohort)) == [
        f"dataset content: {cohort} here, {cohort} asked (splits or conversion differ)"
    ]
    (cohort / "splits.json").write_text('{"train": ["a"], "val": ["b"]}')
    os.utime(weights, ns=(1, 1))
    assert stale_options(run, asked(cohort)) == [
        "MODEL.WEIGHTS: the file was written again since this run started"
    ]


def test_calibration_that_finds_nothing_goes_on_and_a_crash_raises(tmp_path, monkeypatch):
    """No point beats an empty prediction: the driver goes on at the config's own point (None);
    a failure of the tuner raises. An earlier run's tuned config never stands in."""
    from types import SimpleNamespace

    import rsrcnn_d2.tuning as tuning
    from rsrcnn_d2.experiments import runner

    output = tmp_path / "point.yaml"
    output.write_text("an earlier run's tuned config")
    seen = []

    def found_nothing(*args, **kwargs):
        seen.append((args, kwargs))
        assert not output.exists()  # removed before the calibration starts
        return SimpleNamespace(written=None)

    def crash(*args, **kwargs):
        raise RuntimeError("the tuner failed")

    monkeypatch.setattr(tuning, "calibrate_operating_point", found_nothing)
    assert runner.calibrate("cfg.yaml", "w.pth", output, "pwml_val", trials=(2, 3)) is None
    ((args, kwargs),) = seen
    assert args == ("cfg.yaml", "w.pth", "pwml_val", output)
    assert (kwargs["init_points"], kwargs["n_iter"]) == (2, 3)
    monkeypatch.setattr(tuning, "calibrate_operating_point", crash)
    with pytest.raises(RuntimeError, match="the tuner failed"):
        runner.calibrate("cfg.yaml", "w.pth", output, "pwml_val")


def test_run_cv_scores_a_slice_cohort_by_its_trainings_and_refuses_what_needs_volumes(tmp_path):
    """A cohort converted from PNG slices has no volumes to predict: run_cv takes each fold
    training's own evaluation (LOSO runs so); the final weights and probability maps, which
    need a prediction of the volumes, are refused before any training."""
    from rsrcnn_d2.data import convert_pwml
    from rsrcnn_d2.data.errors import PWMLDataError
    from rsrcnn_d2.experiments.cv import read_cohort, run_cv

    _slice_folder(tmp_path / "slices", subjects=2)
    convert_pwml(tmp_path / "slices", tmp_path / "pwml", num_folds=2)
    cohort = read_cohort(tmp_path / "pwml")
    assert not cohort.volumes and [f["val"] for f in cohort.folds] in (
        [["s0"], ["s1"]],
        [["s1"], ["s0"]],
    )
    for kwargs in ({"checkpoint": "final"}, {"save_probabilities": True}):
        with pytest.raises(PWMLDataError, match="converted from slice images"):
            run_cv(TINY_ROWS["B"], f"loso={tmp_path / 'pwml'}", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="validation must be one of"):
        run_cv(TINY_ROWS["B"], f"loso={tmp_path / 'pwml'}", tmp_path / "out", validation="x")


def test_a_loso_fold_is_evaluated_again_at_a_given_point_without_training(tmp_path, monkeypatch):
    """--evaluate-at ROW=YAML: the fold's kept weights at another operating point (e.g. the
    CRF calibrated on the synthetic cohort), recorded once per point."""
    from rsrcnn_d2.experiments import loso, runner

    fold = tmp_path / "fold_2"
    fold.mkdir()
    (fold / "model_final.pth").write_bytes(b"")
    calls = []

    def evaluate(config, weights, out_dir, opts=(), dataset="pwml_test", step_name=None):
        calls.append((config, weights.name, out_dir.name, dataset))
        return {"pwml_strict/Dice": 0.5}

    monkeypatch.setattr(runner, "evaluate_checkpoint", evaluate)
    first = loso.evaluate_fold_at("synthetic.yaml", fold, 2)
    assert first == {"config": "synthetic.yaml", "results": {"pwml_strict/Dice": 0.5}}
    assert calls == [("synthetic.yaml", "model_final.pth", "at_point", "pwml_fold2_val")]
    loso.evaluate_fold_at("synthetic.yaml", fold, 2)  # recorded: not again
    loso.evaluate_fold_at("reference.yaml", fold, 2)  # another point: again
    assert [c[0] for c in calls] == ["synthetic.yaml", "reference.yaml"]
