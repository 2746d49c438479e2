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
