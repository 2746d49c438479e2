"""The demo's report: both protocols' figures, as the evaluator computed them."""

import numpy as np
import torch

from rsrcnn_d2.evaluation import PWMLEvaluator


def test_report_tables_both_protocols(tmp_path, capsys):
    from rsrcnn_d2.experiments import demo  # the program behind tools/demo.py

    out = tmp_path / "demo"
    csv_dir = out / "train" / "inference" / "pwml_test"
    evaluator = PWMLEvaluator(output_dir=str(csv_dir), distributed=False)
    evaluator.reset()
    truth = np.zeros((16, 16), bool)
    truth[4:6, 4:6] = True
    half = truth.copy()
    half[5, :] = False  # 2 of 4 lesion pixels: Dice 2·2/(2+4)
    for i, pred in enumerate([truth, half, np.zeros_like(truth)]):
        evaluator.process(
            [
                {
                    "file_name": f"a/{i}.npy",
                    "image_id": i,
                    "subject": "a",
                    "slice_index": i,
                    "gt_mask": torch.from_numpy(truth),
                }
            ],
            [{"lesion_mask": torch.from_numpy(pred)}],
        )
    results = evaluator.evaluate()
    demo.write_report(
        out,
        {"row E": csv_dir / "pwml_slices.csv", "row X": csv_dir / "pwml_slices.csv"},
        {"boxplots": out / "figures" / "boxplots.png"},
        out / "case_0000.nii.gz",
        500,
        healths={
            "row E": {
                "verdict": "heads_never_trained",
                "first_foreground_iteration": None,
                "best_checkpoint": {"iteration": None},
            }
        },
    )
    report = (out / "report.md").read_text()
    strict = (1 + 2 / 3 + 0) / 3  # the empty prediction counts as 0
    reference = (1 + 2 / 3) / 2  # ... and is skipped here
    assert abs(results["pwml_strict"]["Dice"] - strict) < 1e-9
    assert abs(results["pwml_reference"]["Dice"] - reference) < 1e-9
    sens = (1 + 0.5 + 0) / 3
    lesion_f1 = 2 * 2 / (2 * 2 + 1)  # 2 of 3 slices' lesions found, none false
    # the headline first: subject a as one 3-D volume (tp 4+2+0, fn 0+2+4: Dice 12/18), and
    # its 3-D lesion, which spans slices 0-2, found once (F1 1)
    case_dice = 2 * 6 / (2 * 6 + 6)
    line = (
        f"| {case_dice:.4f} | 1.0000 | {strict:.4f} | {sens:.4f} | {lesion_f1:.4f} | "
        f"{reference:.4f} | 33.3 % |"
    )
    assert f"| row E {line} **heads_never_trained** (heads never, final weights) |" in report
    assert f"| row X {line} – |" in report  # no health report: unknown, never "ok"
    assert "(3 lesion slices)" in report and "500 iterations each" in report
    assert "![per-slice Dice and sensitivity, rows side by side](figures/boxplots.png)" in report
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out


def test_both_rows_fine_tune_from_one_pretrained_checkpoint(tmp_path, monkeypatch):
    """The paper's protocol in small: one pre-training, then row B and the recommended row
    fine-tuned from it on the same budget; or, with ``pretrained``, no pre-training at all."""
    from rsrcnn_d2.experiments import demo, figures
    from rsrcnn_d2.experiments.runner import DatasetRoot

    calls = {"train": [], "pretrain": [], "report": []}

    def make_cohort(cohort, out, seed, subjects):
        (out / "pwml").mkdir(parents=True, exist_ok=True)
        (out / "pwml" / "splits.json").write_text('{"test": ["s7"]}')
        return DatasetRoot("pwml", out / "pwml")

    def pretrained(out, subjects, iters):
        calls["pretrain"].append((subjects, iters))
        return out / "pretrain" / "pretrained.pth"

    monkeypatch.setattr(demo, "_make_cohort", make_cohort)
    monkeypatch.setattr(demo, "_pretrained", pretrained)
    monkeypatch.setattr(demo, "train", lambda *a, **k: calls["train"].append((a, k)))
    monkeypatch.setattr(demo, "calibrate", lambda *a, **k: None)
    monkeypatch.setattr(demo, "evaluate_checkpoint", lambda *a, **k: None)
    monkeypatch.setattr(demo, "read_health", lambda run_dir: None)
    monkeypatch.setattr(demo, "_predict_volume", lambda *a: calls.setdefault("predict", a))
    monkeypatch.setattr(figures, "comparison_figures", lambda *a, **k: {})
    monkeypatch.setattr(demo, "write_report", lambda *a, **k: calls["report"].append((a, k)))

    out = tmp_path / "demo"
    demo.run_demo(out, subjects=5, iters=30, seed=3, pretrain_subjects=6, pretrain_iters=40)
    assert calls["pretrain"] == [(6, 40)]
    assert [a[1] for a, _ in calls["train"]] == [out / "train" / "B", out / "train" / "E"]
    from rsrcnn_d2.model_zoo import row_config

    for row, ((config, _, opts, roots), kwargs) in zip(("B", "E"), calls["train"]):
        assert config == row_config(row)
        assert opts[opts.index("MODEL.WEIGHTS") + 1] == str(out / "pretrain" / "pretrained.pth")
        assert opts[opts.index("SOLVER.MAX_ITER") + 1] == 30 and opts[opts.index("SEED") + 1] == 3
        assert kwargs == {"resume": False} and roots[0].name == "pwml"
    # the recommended row segments the held-out subject's volume
    volume, _, _, weights = calls["predict"]
    assert volume == out / "cohort" / "imagesTr" / "s7_0000.nii.gz"
    assert weights == out / "train" / "E" / "model_final.pth"
    start = calls["report"][0][1]["start"]
    assert (
        start
        == "row B pre-trained for 40 iterations on 6 source subjects the demo cohort does not share"
    )

    calls["train"].clear()
    given = tmp_path / "coco.pkl"
    demo.run_demo(out, iters=30, pretrained=given)
    assert calls["pretrain"] == [(6, 40)]  # no second pre-training
    assert all(o[o.index("MODEL.WEIGHTS") + 1] == str(given) for (_, _, o, _), _ in calls["train"])
    assert calls["report"][1][1]["start"] == f"`{given}`"


def test_the_demo_refuses_missing_weights_and_empty_budgets_in_one_line(tmp_path, capsys):
    from rsrcnn_d2.cli.demo import main

    out = tmp_path / "demo"
    missing = tmp_path / "none.pth"
    assert main(["--output", str(out), "--pretrained", str(missing)]) == 4
    assert capsys.readouterr().err == f"demo: error: {missing}: weights file does not exist\n"
    assert main(["--output", str(out), "--pretrain-iters", "0"]) == 2
    assert capsys.readouterr().err == "demo: error: --pretrain-iters must be at least 1\n"
    assert not out.exists()
