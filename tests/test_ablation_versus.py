"""The ablation's answer table (each row minus row B, with intervals) and the lesion-size
refresh of calibrated records made before the strata, on hand-written evaluation files."""

import json

import numpy as np
import pytest

from rsrcnn_d2.evaluation.protocols import slice_record, summarize_slices
from rsrcnn_d2.evaluation.report import SLICE_COLUMNS, slice_row, write_csv_atomic
from rsrcnn_d2.experiments import ablation
from rsrcnn_d2.experiments.intervals import versus_table


def _lesion_slice(found: bool):
    """A 6x6 slice with one 2-px lesion, predicted exactly or not at all."""
    truth = np.zeros((6, 6), bool)
    truth[1, 1:3] = True
    return (truth.copy() if found else np.zeros_like(truth)), truth


def _write_evaluation(folder, found_per_subject):
    """The two CSVs the evaluator writes, for one slice per subject."""
    records = []
    for i, (subject, found) in enumerate(found_per_subject.items()):
        pred, truth = _lesion_slice(found)
        inp = {"file_name": f"{subject}.png", "subject": subject, "slice_index": 0, "image_id": i}
        records.append(slice_record(pred, truth, inp))
    _, subject_rows = summarize_slices(records)
    folder.mkdir(parents=True)
    write_csv_atomic(str(folder / "pwml_slices.csv"), SLICE_COLUMNS, list(map(slice_row, records)))
    write_csv_atomic(str(folder / "pwml_subjects.csv"), list(subject_rows[0]), subject_rows)


def test_each_row_minus_row_b_with_subject_intervals(tmp_path):
    # row B misses subject s1's lesion, row E finds both: strict and per-case Dice 0.5 -> 1.0,
    # lesion F1 of 1-5 px lesions 2/3 -> 1
    for name, found in (("B", {"s1": False, "s2": True}), ("E", {"s1": True, "s2": True})):
        _write_evaluation(
            tmp_path / "runs" / name / "seed0" / "calibrated" / "inference" / "pwml_test", found
        )
    runs = {"B": None, "E": None, "D": None}  # D never finished: no line
    text, numbers = versus_table(tmp_path, runs, [0, 1], "B", {"E": "row E"}, n_resamples=400)
    assert set(numbers) == {"E"} and numbers["E"]["seeds"] == [0]
    strict = numbers["E"]["intervals"]["strict Dice"]
    # drawing s2 twice gives 0, s1 twice 1: the percentile interval spans both
    assert strict == pytest.approx((0.5, 0.0, 1.0))
    assert numbers["E"]["intervals"]["Dice per case"] == pytest.approx((0.5, 0.0, 1.0))
    assert numbers["E"]["intervals"]["small F1"] == pytest.approx((1 / 3, 0.0, 1.0))
    assert numbers["E"]["per_seed"]["small F1"] == pytest.approx([1 / 3])
    assert "| row E | 1 | +0.500 [+0.000, +1.000]; seeds +0.500 |" in text
    assert "lesion F1, 1-5 px lesions" in text


def test_a_calibrated_record_made_before_the_size_strata_is_evaluated_again(tmp_path, monkeypatch):
    source = tmp_path / "runs" / "B" / "seed0"
    (source / "calibrated").mkdir(parents=True)
    (source / "model_final.pth").write_bytes(b"")
    (source / "result.json").write_text(json.dumps({"results": {}}))
    old = {"config": "tuned.yaml", "opts": [], "operating_point": None, "results": {"x": 1.0}}
    (source / "calibrated" / "result.json").write_text(json.dumps(old))
    calls = []

    def evaluate(config, weights, out_dir, opts):
        calls.append((config, weights, out_dir))
        return {ablation.SIZE_KEY: 0.25}

    monkeypatch.setattr(ablation, "evaluate_checkpoint", evaluate)
    record = ablation.calibrated_run(tmp_path, "B", "row.yaml", [], 0)
    assert calls == [("tuned.yaml", source / "model_final.pth", source / "calibrated")]
    assert record["results"] == {ablation.SIZE_KEY: 0.25}
    assert json.loads((source / "calibrated" / "result.json").read_text())["results"] == {
        ablation.SIZE_KEY: 0.25
    }
    ablation.calibrated_run(tmp_path, "B", "row.yaml", [], 0)  # now current: not again
    assert len(calls) == 1


def test_final_weights_are_calibrated_and_evaluated_beside_the_kept_checkpoint(
    tmp_path, monkeypatch
):
    """--final-weights: run <name>_final evaluates model_final.pth although training kept a
    model_best.pth (which the plain calibrated run evaluates)."""
    source = tmp_path / "runs" / "C" / "seed0"
    source.mkdir(parents=True)
    for name in ("model_best.pth", "model_final.pth"):
        (source / name).write_bytes(b"")
    (source / "result.json").write_text(json.dumps({"results": {}}))
    used = {}

    def calibrate(config, weights, point, dataset, opts, **kwargs):
        point.parent.mkdir(parents=True, exist_ok=True)
        point.with_suffix(".json").write_text(json.dumps({"best": None}))
        used[point.parent.parent.parent.name] = weights

    monkeypatch.setattr(ablation, "calibrate", calibrate)
    monkeypatch.setattr(ablation, "evaluate_checkpoint", lambda *a, **k: {ablation.SIZE_KEY: 0})
    ablation.calibrated_run(tmp_path, "C", "c.yaml", [], 0)
    record = ablation.calibrated_run(
        tmp_path, "C_final", "c.yaml", [], 0, weights_of="C", final=True
    )
    assert used == {"C": source / "model_best.pth", "C_final": source / "model_final.pth"}
    assert record["weights"] == str(source / "model_final.pth")
    runs = {"A": (None, [], "A"), "C": ("c.yaml", ["K", "1"], "C"), "E_tta": ("e.yaml", [], "t")}
    assert ablation.final_variants(runs, {"E_tta": None}) == {
        "C_final": ("c.yaml", ["K", "1"], "C, final weights")
    }
