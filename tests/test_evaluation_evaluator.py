"""PWMLEvaluator end to end on hand-made inputs/outputs (no model)."""

import csv
import logging
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import print_csv_format

from rsrcnn_d2.data.coco import lesion_annotations
from rsrcnn_d2.data.instances import mask_to_instances
from rsrcnn_d2.evaluation import PWMLEvaluator

SIZE = 16


def mask(*points):
    m = np.zeros((SIZE, SIZE), bool)
    for p in points:
        m[p] = True
    return m


BLOCK = [(10, 10), (10, 11), (11, 10), (11, 11)]
# (subject, slice_index, truth, prediction)
CASES = [
    ("a", 0, mask((2, 2), *BLOCK), mask((2, 2), *BLOCK)),  # perfect
    ("a", 1, mask((5, 5)), mask()),  # missed: empty prediction
    ("b", 3, mask((4, 4)), mask((4, 7))),  # 3 px off: Dice 0, HD 3
]


def fake_batch(spacing=(0.5, 0.5, 2.0)):
    inputs, outputs = [], []
    for i, (subject, k, truth, pred) in enumerate(CASES):
        inputs.append(
            {
                "file_name": f"{subject}/{k}.npy",
                "image_id": i,
                "subject": subject,
                "slice_index": k,
                "spacing": spacing,
                "gt_mask": torch.from_numpy(truth),
            }
        )
        outputs.append({"lesion_mask": torch.from_numpy(pred)})
    return inputs, outputs


def run(evaluator, inputs, outputs):
    evaluator.reset()
    evaluator.process(inputs[:2], outputs[:2])  # two batches, as inference_on_dataset does
    evaluator.process(inputs[2:], outputs[2:])
    return evaluator.evaluate()


def test_strict_reference_and_3d(tmp_path):
    results = run(PWMLEvaluator(output_dir=str(tmp_path)), *fake_batch())
    strict, ref, d3 = results["pwml_strict"], results["pwml_reference"], results["pwml_subject3d"]
    # strict: every slice counts; the empty prediction scores 0 and its HD is missing
    assert strict["Dice"] == pytest.approx(1 / 3)
    assert strict["Sens"] == pytest.approx(1 / 3)
    assert strict["HD"] == pytest.approx(1.5) and strict["n_HD_missing"] == 1
    assert strict["HD_mm"] == pytest.approx(0.75)
    assert strict["n_slices"] == 3 and strict["n_Sens_undefined"] == 0
    # reference: the empty prediction is skipped, then subject means (a: 1, b: 0)
    assert ref["Dice"] == pytest.approx(0.5)
    assert ref["n_skipped_empty_pred"] == 1 and ref["n_slices_used"] == 2
    assert ref["skipped_fraction"] == pytest.approx(1 / 3)
    assert ref["HD"] == pytest.approx(1.5)
    # 3-D: subject a pools tp=5, fn=1; its missed pixel (z=1, 5, 5) is sqrt(1+9+9) from (0, 2, 2)
    assert d3["Dice"] == pytest.approx((10 / 11 + 0.0) / 2)
    assert d3["HD"] == pytest.approx((math.sqrt(19) + 3.0) / 2)
    assert d3["HD_mm"] == pytest.approx((math.sqrt(2.0**2 + 2 * 1.5**2) + 1.5) / 2)
    # lesion-wise, pooled: 4 true lesions, 2 found, 3 predicted components, 1 false
    assert results["pwml_lesion"] == {
        "true_lesions": 4.0,
        "found": 2.0,
        "predicted": 3.0,
        "false_positives": 1.0,
    }
    assert strict["lesion_F1"] == pytest.approx(4 / 7)
    assert strict["lesion_FP_per_slice"] == pytest.approx(1 / 3)
    for task in results.values():
        assert all(isinstance(v, float) and "-" not in k for k, v in task.items())
    print_csv_format(results)


def test_csv_files(tmp_path):
    run(PWMLEvaluator(output_dir=str(tmp_path)), *fake_batch())
    with open(tmp_path / "pwml_slices.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["subject"], r["slice_index"]) for r in rows] == [("a", "0"), ("a", "1"), ("b", "3")]
    missed = rows[1]
    assert (missed["dice"], missed["sensitivity"], missed["hd"], missed["reference_used"]) == (
        "0",
        "0",
        "",
        "0",
    )
    assert rows[2]["hd"] == "3" and rows[2]["fp_lesions"] == "1"
    with open(tmp_path / "pwml_subjects.csv") as f:
        subjects = list(csv.DictReader(f))
    assert [s["subject"] for s in subjects] == ["a", "b"]
    assert subjects[0]["n_reference_used"] == "1" and subjects[0]["ref_Dice"] == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pwml_slices.csv", "pwml_subjects.csv"]


def test_csv_files_are_written_as_every_other_output(tmp_path):
    """Through data.fileio's atomic write: the mode a plain open gives, not mkstemp's 0600."""
    import os

    old = os.umask(0o022)
    try:
        run(PWMLEvaluator(output_dir=str(tmp_path)), *fake_batch())
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"pwml_slices.csv": 0o644, "pwml_subjects.csv": 0o644}


def test_empty_truth_slices():
    inputs = [
        {"file_name": "x.npy", "image_id": 0, "gt_mask": mask()},
        {"file_name": "y.npy", "image_id": 1, "gt_mask": mask()},
    ]
    outputs = [
        {"lesion_mask": torch.from_numpy(mask())},
        {"lesion_mask": torch.from_numpy(mask((1, 1)))},
    ]
    strict = run(PWMLEvaluator(), inputs, outputs)["pwml_strict"]
    # the both-empty slice has no Dice (left out, counted), the false positive scores 0
    assert strict["Dice"] == 0.0 and strict["n_both_empty"] == 1 and strict["n_scored"] == 1
    assert math.isnan(strict["Sens"]) and strict["n_Sens_undefined"] == 1
    # no slice has lesions in both masks: no distance was measured, HD is n/a, not 0
    assert math.isnan(strict["HD"]) and math.isnan(strict["HD95"])
    assert strict["n_HD_missing"] == 1
    assert strict["n_HD_measured"] == 0
    assert math.isnan(strict["HD_mm"])  # no spacing given


def test_truth_sources_agree(tmp_path):
    truth = mask((2, 2), (2, 3), *BLOCK)
    pred = mask((2, 2), (12, 3))
    base = {"file_name": "s/0.npy", "image_id": 7, "height": SIZE, "width": SIZE}
    name = "pwml_evaluator_test_dataset"
    DatasetCatalog.register(name, lambda: [{**base, "annotations": lesion_annotations(truth)}])
    try:
        sources = [
            (dict(), {"gt_mask": torch.from_numpy(truth.astype(np.uint8))}),  # our mapper
            (dict(), {"gt_mask": truth.astype(np.uint8)}),  # numpy, not torch
            (dict(), {"sem_seg": torch.from_numpy(truth.astype(np.int64) * 255)}),
            (dict(), {"instances": mask_to_instances(truth)}),
            (dict(), {"annotations": lesion_annotations(truth)}),
            (dict(truth_fn=lambda inp: truth), {}),
            (dict(dataset_name=name), {}),
        ]
        dices = []
        for kwargs, extra in sources:
            results = run(
                PWMLEvaluator(**kwargs),
                [{**base, **extra}],
                [{"lesion_mask": torch.from_numpy(pred)}],
            )
            dices.append(results["pwml_strict"]["Dice"])
        assert dices == [pytest.approx(2 / 8)] * len(sources)
    finally:
        DatasetCatalog.remove(name)


def test_prediction_from_instances():
    from detectron2.structures import Instances

    inst = Instances((SIZE, SIZE))
    inst.pred_masks = torch.from_numpy(np.stack([mask((1, 1)), mask((5, 5))]))
    inp = {"file_name": "p.npy", "image_id": 0, "gt_mask": mask((1, 1), (5, 5))}
    assert run(PWMLEvaluator(), [inp], [{"instances": inst}])["pwml_strict"]["Dice"] == 1.0


def test_clear_errors():
    evaluator = PWMLEvaluator()
    with pytest.raises(ValueError, match="nowhere.npy: no ground truth"):
        evaluator.process([{"file_name": "nowhere.npy"}], [{"lesion_mask": mask()}])
    with pytest.raises(ValueError, match="small.npy: prediction is"):
        evaluator.process(
            [{"file_name": "small.npy", "gt_mask": np.zeros((4, 4))}], [{"lesion_mask": mask()}]
        )
    with pytest.raises(ValueError, match="bad.npy: spacing"):
        evaluator.process(
            [{"file_name": "bad.npy", "gt_mask": mask(), "spacing": (1, -1)}],
            [{"lesion_mask": mask()}],
        )
    with pytest.raises(ValueError, match="o.npy: the model output"):
        evaluator.process([{"file_name": "o.npy", "gt_mask": mask()}], [{"scores": 1}])


def test_no_inputs_warns_and_returns_nothing(caplog, tmp_path):
    evaluator = PWMLEvaluator(output_dir=str(tmp_path))
    evaluator.reset()
    evaluator.process([], [])
    with caplog.at_level(logging.WARNING):
        assert evaluator.evaluate() == {}
    assert "no slices were processed" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_reference_warns_when_it_would_abort(caplog):
    with caplog.at_level(logging.WARNING):
        run(PWMLEvaluator(), *fake_batch())
    assert "would abort" in caplog.text  # 1 of 3 predictions empty > a fifth


def test_in_plane_spacing_only_and_no_subject(caplog):
    inputs, outputs = fake_batch(spacing=(0.5, 0.5))
    for inp in inputs:
        del inp["subject"], inp["slice_index"]
    with caplog.at_level(logging.WARNING):
        results = run(PWMLEvaluator(), inputs, outputs)
    assert "one subject 'unknown'" in caplog.text
    assert results["pwml_strict"]["HD_mm"] == pytest.approx(0.75)
    d3 = results["pwml_subject3d"]
    assert d3["n_subjects"] == 1 and math.isnan(d3["HD_mm"])  # no through-plane spacing
    # file-name order a/0, a/1, b/3 stacked at z = 0, 1, 2: pooled tp=5, fp=1, fn=2
    assert d3["Dice"] == pytest.approx(10 / 13)
    assert results["pwml_reference"]["Dice"] == pytest.approx(0.5)  # one subject: slice mean


def lesion_free_batch(n=4, spacing=(0.5, 0.5, 2.0)):
    inputs = [
        {
            "file_name": f"c/{k}.npy",
            "image_id": k,
            "subject": "c",
            "slice_index": k,
            "spacing": spacing,
            "gt_mask": mask(),
        }
        for k in range(n)
    ]
    return inputs, [{"lesion_mask": torch.from_numpy(mask())} for _ in range(n)]


def test_lesion_free_dataset_has_no_hd_and_no_abort_warning(caplog):
    with caplog.at_level(logging.WARNING):
        results = run(PWMLEvaluator(), *lesion_free_batch())
    strict, ref, d3 = results["pwml_strict"], results["pwml_reference"], results["pwml_subject3d"]
    head = results["pwml_headline"]
    # nothing to find and nothing found: no figure at all, never a perfect 1
    assert math.isnan(strict["Dice"]) and strict["n_slices"] == 4 and strict["n_both_empty"] == 4
    assert math.isnan(d3["Dice"]) and d3["n_both_empty"] == 1
    assert math.isnan(head["case_dice"]) and head["n_cases_empty_both"] == 1
    assert math.isnan(head["lesion_f1_3d"]) and math.isnan(strict["lesion_F1"])
    for name in ("HD", "HD95", "HD_mm", "HD95_mm"):
        assert math.isnan(strict[name]) and math.isnan(d3[name]), name
    assert (strict["n_HD_measured"], strict["n_HD_missing"]) == (0, 0)
    assert d3["n_HD_measured"] == 0
    assert ref["n_lesion_slices"] == 0 and ref["n_skipped_empty_pred"] == 4
    assert "would abort" not in caplog.text
    from rsrcnn_d2.evaluation.report import format_table

    table = format_table(results)
    assert "HD n/a: no slice has lesions in both truth and prediction" in table
    assert "Dice per case (3-D) n/a over 0 subjects; 1 subjects empty in truth" in table


def test_all_lesions_missed_is_not_hd_zero(caplog):
    inputs, outputs = lesion_free_batch(3)
    inputs[1]["gt_mask"] = mask((5, 5))  # one lesion slice, predicted empty
    with caplog.at_level(logging.WARNING):
        results = run(PWMLEvaluator(), inputs, outputs)
    strict = results["pwml_strict"]
    # a model that finds nothing scores 0: the two slices empty in both are left out, not 1
    assert strict["Dice"] == 0.0 and strict["n_scored"] == 1 and strict["n_both_empty"] == 2
    assert results["pwml_headline"]["case_dice"] == 0.0
    assert results["pwml_headline"]["lesion_f1_3d"] == 0.0
    assert math.isnan(strict["HD"]) and strict["n_HD_missing"] == 1
    assert "1 of the 1 slices with lesions (100.0%)" in caplog.text  # the reference would abort


def test_table_says_which_slices_it_covers():
    from rsrcnn_d2.evaluation.report import format_table

    inputs, outputs = lesion_free_batch(3)
    inputs[1]["gt_mask"] = mask((5, 5))
    assert (
        "covers 1 slices with a lesion in truth or prediction (1 with a true lesion); 2 slices "
        "empty in both have no Dice or distance and are left out"
    ) in format_table(run(PWMLEvaluator(), inputs, outputs))
    inputs, outputs = inputs[1:2], [{"lesion_mask": torch.from_numpy(mask((5, 5)))}]
    assert "covers slices with lesions only (the paper's selection)" in format_table(
        run(PWMLEvaluator(), inputs, outputs)
    )


def test_reference_abort_warning_counts_lesion_slices_only(caplog):
    inputs, outputs = lesion_free_batch(8)
    for k in range(4):  # 4 lesion slices, all found; 4 lesion-free ones with nothing predicted
        inputs[k]["gt_mask"] = mask((k + 2, 3))
        outputs[k]["lesion_mask"] = torch.from_numpy(mask((k + 2, 3)))
    with caplog.at_level(logging.WARNING):
        results = run(PWMLEvaluator(), inputs, outputs)
    ref = results["pwml_reference"]
    assert ref["skipped_fraction"] == 0.5 and ref["n_lesion_slices"] == 4
    assert ref["n_lesion_slices_empty_pred"] == 0
    assert "would abort" not in caplog.text
    assert results["pwml_strict"]["HD"] == 0.0  # measured on 4 slices (0 px), 4 both empty
    assert results["pwml_strict"]["n_HD_measured"] == 4


def test_mapper_and_evaluator_read_annotations_alike(tmp_path):
    """Polygons, uncompressed and compressed RLE: one reader gives the mapper's gt_mask and the
    evaluator's truth; an annotation without a segmentation names the slice."""
    from rsrcnn_d2.data.coco import annotations_mask
    from rsrcnn_d2.data.mapper import PWMLDatasetMapper

    image = tmp_path / "s0.npy"
    np.save(image, np.arange(SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE))
    square = [[2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]]  # x, y: pixels 2..5 of rows 2..5
    column_major = np.zeros((SIZE, SIZE), bool)
    column_major[10, 10:12] = True
    counts = [10 * SIZE + 10, 1, SIZE - 1, 1, SIZE * SIZE - (11 * SIZE + 11)]
    annotations = [
        {"segmentation": square},
        {"segmentation": {"size": [SIZE, SIZE], "counts": counts}},
        *lesion_annotations(mask((14, 1))),
    ]
    expected = np.zeros((SIZE, SIZE), bool)
    expected[2:6, 2:6] = True
    expected |= column_major | mask((14, 1))
    assert np.array_equal(annotations_mask(annotations, SIZE, SIZE), expected)
    record = {
        "file_name": str(image),
        "image_id": 0,
        "height": SIZE,
        "width": SIZE,
        "annotations": annotations,
    }
    mapped = PWMLDatasetMapper(False, augmentations=[])(record)
    assert mapped["gt_mask"].dtype == torch.uint8
    assert np.array_equal(mapped["gt_mask"].numpy(), expected.astype(np.uint8))
    results = run(PWMLEvaluator(), [record], [{"lesion_mask": torch.from_numpy(expected)}])
    assert results["pwml_strict"]["Dice"] == 1.0
    with pytest.raises(ValueError, match=f"^{image}: an annotation has no segmentation"):
        PWMLDatasetMapper(False, augmentations=[])(
            {**record, "annotations": [{"bbox": [0, 0, 1, 1]}]}
        )


def test_one_name_per_thing_in_the_inputs():
    # "lesion_mask" is the prediction (model outputs), never the truth; the subject is "subject"
    with pytest.raises(ValueError, match="a.npy: no ground truth in the input \\(gt_mask, sem_seg"):
        PWMLEvaluator().process(
            [{"file_name": "a.npy", "lesion_mask": mask()}], [{"lesion_mask": mask()}]
        )
    evaluator = PWMLEvaluator(distributed=False)
    evaluator.process(
        [{"file_name": "b.npy", "subject": "s7", "gt_mask": mask()}], [{"lesion_mask": mask()}]
    )
    assert evaluator._records[0]["subject"] == "s7"


def test_lesions_in_3d_join_a_subjects_neighbouring_slices():
    """One lesion through slices 3 and 4 of subject "c" (2 lesions in 2-D, 1 in 3-D), found on
    slice 3 only; a false positive on slice 4; subject "d" has a lesion on slice 7 only, missed,
    and one on slice 9 (not adjacent: its own 3-D lesion), found."""
    cases = [
        ("c", 3, mask(*BLOCK), mask(*BLOCK)),
        ("c", 4, mask(*BLOCK), mask((1, 1))),
        ("d", 7, mask((5, 5)), mask()),
        ("d", 9, mask((5, 5)), mask((5, 5))),
    ]
    inputs = [
        {
            "file_name": f"{s}/{k}.npy",
            "subject": s,
            "slice_index": k,
            "gt_mask": torch.from_numpy(t),
        }
        for s, k, t, _ in cases
    ]
    outputs = [{"lesion_mask": torch.from_numpy(p)} for *_, p in cases]
    results = run(PWMLEvaluator(distributed=False), inputs, outputs)
    flat = results["pwml_lesion"]
    assert (flat["true_lesions"], flat["found"], flat["false_positives"]) == (4, 2, 1)
    d3 = results["pwml_lesion3d"]
    assert (d3["true_lesions"], d3["found"], d3["predicted"], d3["false_positives"]) == (3, 2, 3, 1)
    assert d3["sensitivity"] == pytest.approx(2 / 3)
    assert d3["F1"] == pytest.approx(4 / (4 + 1 + 1))  # 2 found, 1 missed, 1 FP


def test_slices_of_different_sizes_give_no_3d_lesion_figure_not_a_perfect_one(caplog):
    """PNG slice folders whose slices differ in size cannot be stacked: the 3-D lesion figures
    are undefined (NaN), never F1 1.0 from the empty counts, while 2 of 2 lesions go unfound."""
    big = np.zeros((SIZE + 4, SIZE + 4), bool)
    big[5, 5] = True
    cases = [("e", 0, mask((2, 2)), mask()), ("e", 1, big, np.zeros_like(big))]
    inputs = [
        {"file_name": f"{s}/{k}.png", "subject": s, "slice_index": k,
         "gt_mask": torch.from_numpy(t)}
        for s, k, t, _ in cases
    ]  # fmt: skip
    outputs = [{"lesion_mask": torch.from_numpy(p)} for *_, p in cases]
    with caplog.at_level(logging.WARNING):
        results = run(PWMLEvaluator(distributed=False), inputs, outputs)
    assert "slices differ in size" in caplog.text
    d3 = results["pwml_lesion3d"]
    assert d3["true_lesions"] == 0 and math.isnan(d3["F1"]) and math.isnan(d3["sensitivity"])
    flat = results["pwml_lesion"]
    assert (flat["true_lesions"], flat["found"]) == (2, 0)  # the 2-D figure says what happened
