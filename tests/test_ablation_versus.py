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


def test_a_variant_made_before_its_source_was_trained_again_is_made_again(tmp_path, monkeypatch):
    """Reviewed: after --retrain of row C, runs C_final and E_tta kept the old weights'
    figures. A record from another run's weights older than that run's record is set aside."""
    import os

    source = tmp_path / "runs" / "C" / "seed0"
    source.mkdir(parents=True)
    (source / "model_final.pth").write_bytes(b"")
    variant = tmp_path / "runs" / "C_final" / "seed0" / "calibrated"
    variant.mkdir(parents=True)
    old = {"config": "c.yaml", "opts": [], "operating_point": None}
    (variant / "result.json").write_text(json.dumps({**old, "results": {ablation.SIZE_KEY: 1}}))
    (source / "result.json").write_text(json.dumps({"results": {}}))
    stamp = (variant / "result.json").stat().st_mtime_ns
    os.utime(source / "result.json", ns=(stamp + 10**9, stamp + 10**9))  # trained again since

    def calibrate(config, weights, point, dataset, opts, **kwargs):
        point.parent.mkdir(parents=True, exist_ok=True)
        point.with_suffix(".json").write_text(json.dumps({"best": None}))

    monkeypatch.setattr(ablation, "calibrate", calibrate)
    monkeypatch.setattr(ablation, "evaluate_checkpoint", lambda *a, **k: {ablation.SIZE_KEY: 0})
    record = ablation.calibrated_run(
        tmp_path, "C_final", "c.yaml", [], 0, weights_of="C", final=True
    )
    assert record["results"] == {ablation.SIZE_KEY: 0}
    aside = [p.name for p in (tmp_path / "runs" / "C_final").iterdir()]
    assert "seed0" in aside and any(name.startswith("seed0.replaced-") for name in aside)


def test_a_cohort_converted_for_another_request_is_converted_again(tmp_path):
    """Reviewed: the demo into an OUT converted for 14 subjects, asked for 20, simulated 6
    more and trained on the old 14. The conversion counts only if it matches the request.

    And the converter's own splits.json (subject ids, not a count) counts as converted: it
    was converted again at every driver start, rewriting the cohort under a running sweep
    and making every cached validation prediction stale."""
    from rsrcnn_d2.data.splits import make_splits
    from rsrcnn_d2.experiments.cohort import _converted_as_asked

    assert not _converted_as_asked(tmp_path, 14, 0, None)  # nothing converted yet
    (tmp_path / "conversion.json").write_text("{}")
    split = make_splits([f"PWML_{i:03d}" for i in range(14)], 0, (0.6, 0.15, 0.25), 0)
    (tmp_path / "splits.json").write_text(json.dumps(split))
    assert _converted_as_asked(tmp_path, 14, 0, None)
    assert _converted_as_asked(tmp_path, 14, 0, (0.6, 0.15, 0.25))
    assert not _converted_as_asked(tmp_path, 20, 0, None)
    assert not _converted_as_asked(tmp_path, 14, 1, None)
    assert not _converted_as_asked(tmp_path, 14, 0, (0.7, 0.15, 0.15))


def test_each_seeds_per_case_difference_pairs_the_same_cases():
    """Reviewed: each seed's per-case difference took each run's mean over its own defined
    cases; a case empty in both for one run then weighed on one side only."""
    from rsrcnn_d2.experiments.intervals import _paired_case_difference

    a, b = {"s1": 1.0, "s2": float("nan")}, {"s1": 0.5, "s2": 0.2}
    assert _paired_case_difference(a, b) == pytest.approx(0.5)  # s1 only, not 1.0 - 0.35
    assert np.isnan(_paired_case_difference({"s1": float("nan")}, b))


def test_a_case_whose_slices_cannot_be_stacked_still_has_its_dice(tmp_path):
    """Found in the LOSO on the reference slices: a subject's two head crops differ in size, so
    no 3-D lesions are counted; its per-case Dice (0.5 here) was dropped as 'empty in truth
    and prediction'. Emptiness is read from the slice counts."""
    from rsrcnn_d2.experiments.results import lesion3d_results

    head = "subject,n_slices,n_lesion_slices,n_reference_used,3d_Dice,"
    head += "true_lesions_3d,found_3d,predicted_3d,false_positives_3d\n"
    rows = ["s1,2,2,1,0.5,0,0,0,0", "s2,2,0,0,,0,0,0,0"]  # s2: empty in both
    (tmp_path / "pwml_subjects.csv").write_text(head + "\n".join(rows) + "\n")
    results = lesion3d_results(tmp_path / "pwml_subjects.csv")
    assert results["pwml_headline/case_dice"] == 0.5
    assert results["pwml_headline/n_cases_scored"] == 1.0
    assert results["pwml_headline/n_cases_empty_both"] == 1.0
    # an earlier release's file (no slice counts, Dice 1 for an empty case): 3-D counts decide
    old = "subject,3d_Dice,true_lesions_3d,found_3d,predicted_3d,false_positives_3d\n"
    (tmp_path / "old.csv").write_text(old + "a,0.25,1,1,1,0\nb,1.0,0,0,0,0\n")
    assert lesion3d_results(tmp_path / "old.csv")["pwml_headline/case_dice"] == 0.25


def test_3d_lesion_figures_are_undefined_when_a_subject_could_not_be_stacked(tmp_path):
    """A pooled 3-D lesion F1 over the subjects that could be stacked only would read as the
    whole set's: NaN instead, with the subjects counted."""
    from rsrcnn_d2.experiments.results import lesion3d_results

    head = "subject,n_lesion_slices,n_reference_used,3d_Dice,true_lesions,predicted,"
    head += "true_lesions_3d,found_3d,predicted_3d,false_positives_3d\n"
    stacked = "a,2,2,0.8,2,2,1,1,1,0"
    (tmp_path / "one.csv").write_text(head + stacked + "\n")
    assert lesion3d_results(tmp_path / "one.csv")["pwml_lesion3d/F1"] == 1.0
    (tmp_path / "two.csv").write_text(head + stacked + "\nb,2,1,0.5,2,1,0,0,0,0\n")
    both = lesion3d_results(tmp_path / "two.csv")
    assert np.isnan(both["pwml_lesion3d/F1"]) and np.isnan(both["pwml_headline/lesion_f1_3d"])
    assert both["pwml_lesion3d/n_subjects_not_stacked"] == 1.0
    assert both["pwml_headline/case_dice"] == pytest.approx(0.65)  # voxel counts: still there


def test_each_component_of_the_ablation_gets_its_own_difference(tmp_path):
    # the paper's claims one by one: H-RPN (C - B), LRS-Net (D - C), CRF (E - D), k (C at 1.3
    # against C at 1.0); here C finds both lesions, the others one
    found = {"s1": False, "s2": True}
    for name in ("B", "C", "D", "E", "C_k1.0"):
        folder = tmp_path / "runs" / name / "seed0" / "calibrated" / "inference" / "pwml_test"
        _write_evaluation(folder, {"s1": True, "s2": True} if name == "C" else found)
    runs = ablation.planned_runs(["B", "C", "D", "E"], [1.0, 1.3])
    _, numbers = ablation.interval_table(
        tmp_path, runs, [0], ablation.DIFFERENCES, {}, n_resamples=200
    )
    difference = {key: value["calibrated"][0] for key, value in numbers["differences"].items()}
    assert difference == pytest.approx(
        {"E - B": 0.0, "C - B": 0.5, "D - C": -0.5, "E - D": 0.0, "C - C_k1.0": 0.5}
    )


def test_another_objective_is_calibrated_beside_the_first_not_read_from_it(tmp_path, monkeypatch):
    """Reviewed: a re-run with --objective lesion_f1 found the Dice calibration's record and
    reported it as its own. Each objective now has its folder; the network's cached validation
    outputs (independent of the objective) are shared."""
    source = tmp_path / "runs" / "B" / "seed0"
    (source / "calibrated").mkdir(parents=True)
    (source / "model_final.pth").write_bytes(b"")
    (source / "result.json").write_text(json.dumps({"results": {}}))
    dice = {"config": "b.yaml", "opts": [], "operating_point": None}
    dice["results"] = {ablation.SIZE_KEY: 0.5}
    (source / "calibrated" / "result.json").write_text(json.dumps(dice))
    used = []

    def calibrate(config, weights, point, dataset, opts, **kwargs):
        point.parent.mkdir(parents=True, exist_ok=True)
        point.with_suffix(".json").write_text(json.dumps({"best": {"score": 0.3}}))
        used.append((point, kwargs["objective"], kwargs["cache"]))
        return point

    monkeypatch.setattr(ablation, "calibrate", calibrate)
    monkeypatch.setattr(ablation, "evaluate_checkpoint", lambda *a, **k: {ablation.SIZE_KEY: 0.7})
    record = ablation.calibrated_run(tmp_path, "B", "b.yaml", [], 0, objective="lesion_f1")
    folder = source / "calibrated_lesion_f1"
    assert used == [
        (folder / "operating_point.yaml", "lesion_f1", source / "calibrated" / "val_probs.pt")
    ]
    assert record["results"] == {ablation.SIZE_KEY: 0.7}
    assert json.loads((folder / "result.json").read_text())["operating_point"] == {"score": 0.3}
    assert json.loads((source / "calibrated" / "result.json").read_text()) == dice
    assert ablation.calibrated_run(tmp_path, "B", "b.yaml", [], 0)["results"] == dice["results"]
    assert len(used) == 1
    with pytest.raises(ValueError, match="unknown calibration objective 'hd'"):
        ablation.calibration_folder("hd")


def test_the_tables_read_the_calibration_of_the_objective_asked_for(tmp_path):
    # Dice calibration: E finds subject s1's lesion, B does not; lesion-F1 calibration: both do
    for folder, e_found in (("calibrated", True), ("calibrated_lesion_f1", True)):
        for name, found in (("B", folder != "calibrated"), ("E", e_found)):
            _write_evaluation(
                tmp_path / "runs" / name / "seed0" / folder / "inference" / "pwml_test",
                {"s1": found, "s2": True},
            )
    runs = {"B": None, "E": None}
    _, dice = versus_table(tmp_path, runs, [0], "B", {}, n_resamples=100)
    _, f1 = versus_table(
        tmp_path, runs, [0], "B", {}, n_resamples=100, folder="calibrated_lesion_f1"
    )
    assert dice["E"]["per_seed"]["strict Dice"] == pytest.approx([0.5])
    assert f1["E"]["per_seed"]["strict Dice"] == pytest.approx([0.0])


def _write_calibration(folder, value):
    """The calibration's trials file with its best validation value."""
    trials = {"start": {"score": 0.7, "value": value - 0.1}, "best": {"score": 0.5, "value": value}}
    (folder / "operating_point.json").write_text(json.dumps(trials))


def test_k_chosen_on_validation_per_seed_against_the_papers_k(tmp_path):
    from rsrcnn_d2.experiments.k_choice import k_choice_table, k_runs

    # test subjects s1, s2 (one 2-px lesion each): k = 1.0 finds both, 1.3 only s2's, 2.0 none
    found = {"C_k1.0": (True, True), "C": (False, True), "C_k2.0": (False, False)}
    # validation: seed 0 prefers k = 1.0; seed 1 ties 1.0 with 1.3 (kept); seed 2 is unfinished
    validation = {0: {"C_k1.0": 0.8, "C": 0.7, "C_k2.0": 0.5}, 1: {"C_k1.0": 0.8, "C": 0.8}}
    validation[1]["C_k2.0"] = 0.6
    for seed, values in validation.items():
        for name, value in values.items():
            calibrated = tmp_path / "runs" / name / f"seed{seed}" / "calibrated"
            s1, s2 = found[name]
            _write_evaluation(calibrated / "inference" / "pwml_test", {"s1": s1, "s2": s2})
            _write_calibration(calibrated, value)
    runs = {"B": None, "C": None, "C_k2.0": None, "C_k1.0": None, "C_k1.0_final": None}
    assert k_runs(runs, "C", 1.3) == {"C_k1.0": 1.0, "C": 1.3, "C_k2.0": 2.0}
    text, numbers = k_choice_table(
        tmp_path, runs, [0, 1, 2], "C", 1.3, "calibrated", n_resamples=400
    )
    assert "| 0 | 0.800 | 0.700 | 0.500 | 1.0 | 1.000 | 0.500 |" in text
    assert "| 1 | 0.800 | 0.800 | 0.600 | 1.3 | 0.500 | 0.500 |" in text
    assert "| 2 |" not in text
    assert numbers["picks"] == {"0": 1.0, "1": 1.3}
    assert numbers["per_seed"] == pytest.approx([0.5, 0.0])
    # seeds pooled per subject: s1 +0.5, s2 0; drawing s1 twice gives 0.5, s2 twice 0
    assert numbers["interval"] == pytest.approx((0.25, 0.0, 0.5))
    assert "k chosen on validation minus k = 1.3: +0.250 [+0.000, +0.500]" in text
    assert "| seed | val., k = 1.0 | val., k = 1.3 | val., k = 2.0 | chosen k |" in text
    assert "2 seeds pooled); seeds +0.250 ± 0.354." in text
    # no sweep (row C alone): nothing to say
    assert k_choice_table(tmp_path, {"B": None, "C": None}, [0], "C", 1.3, "calibrated") == ("", {})


def test_strict_dice_of_an_evaluation_with_nothing_to_score_is_nan(tmp_path):
    """Slices empty in truth and prediction are not scored: an evaluation made only of them has
    no strict Dice (NaN), not a division by zero; one found lesion of two scores 0.5."""
    from rsrcnn_d2.experiments.intervals import csv_dice

    records = []
    for i in range(2):
        empty = np.zeros((6, 6), bool)
        inp = {"file_name": f"s{i}.png", "subject": f"s{i}", "slice_index": 0, "image_id": i}
        records.append(slice_record(empty, empty.copy(), inp))
    (tmp_path / "empty").mkdir()
    csv = tmp_path / "empty" / "pwml_slices.csv"
    write_csv_atomic(str(csv), SLICE_COLUMNS, list(map(slice_row, records)))
    assert np.isnan(csv_dice(csv))
    _write_evaluation(tmp_path / "half", {"s0": True, "s1": False})
    assert csv_dice(tmp_path / "half" / "pwml_slices.csv") == pytest.approx(0.5)
