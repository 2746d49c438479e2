"""Per-slice records and the evaluation protocols over them.

A record (`slice_record`) holds one slice's metrics (metrics.slice_metrics:
Dice, sensitivity, specificity, HD over all pixels as the reference computes
it, HD95 boundary to boundary (distance.py), in pixels and in mm when the input
carries ``spacing``, lesion-wise counts) and the masks as packed crops for the
3-D figures. `summarize_slices` reports, as detectron2 tasks:

- ``pwml_strict`` (the default figures): each slice weighs the same (mean over
  slices). An empty prediction on a lesion slice scores Dice 0 and sensitivity
  0; its HD is undefined, left out of the HD mean and counted
  (``n_HD_missing``). A slice with a predicted lesion and an empty truth scores
  Dice 0 (sensitivity undefined, ``n_Sens_undefined``). A slice empty in both
  truth and prediction has no Dice, sensitivity or distance: it is left out of
  those means and counted (``n_both_empty``; specificity, defined there, keeps
  it), so on whole volumes the figures cover the slices with a lesion in the
  truth or the prediction, and a model that
  predicts nothing scores 0, not the share of empty slices. On the paper's
  lesion slices nothing is left out. When no slice has lesions in both masks
  no distance was measured and HD/HD95 are NaN ("n/a"). Also lesion-wise
  sensitivity, false positives per slice and F1 on counts pooled over all
  slices (lesionwise.py; F1 NaN when there was nothing to find and nothing
  was predicted).
- ``pwml_reference``: the reference implementation's protocol, for comparison
  with the paper. Slices whose prediction is empty are skipped (counted in
  ``n_skipped_empty_pred``); the remaining slice values are averaged per
  subject, then over subjects. The reference, scored on lesion slices only,
  aborts when more than a fifth of them have an empty prediction
  (`reference_would_abort`; ``n_lesion_slices_empty_pred`` of ``n_lesion_slices``).
- ``pwml_subject3d``: each subject's slices stacked in a volume at their
  ``slice_index`` (absent indices are empty in both masks, so gaps keep the
  true through-plane distances): Dice, sensitivity, specificity from pooled
  counts, HD/HD95 in 3-D (voxel-index units, and mm when every slice carries a
  3-element spacing), averaged over subjects (NaN when no subject has lesions in both).
  A subject empty in both masks has no Dice: left out and counted (``n_both_empty``).
- ``pwml_headline``: the figures to read first, as nnU-Net reports them: the mean
  per-case (subject) 3-D Dice over cases with a lesion in the truth or the
  prediction (``case_dice``; ``n_cases_scored``, ``n_cases_empty_both``) and the
  lesion-wise F1 of 3-D lesions (``lesion_f1_3d``). `headline` builds it.
- ``pwml_lesion``: the pooled lesion-wise counts (2-D lesions: components of each slice).
- ``pwml_size``: lesion recall, lesion Dice and F1 of the 2-D lesions by size
  (1-5, 6-15, 16+ px; lesion_size.py), pooled over slices: are punctate lesions found?
- ``pwml_lesion3d``: the same with lesions as 3-D (26-connected) components of each
  subject's stacked slices, pooled over subjects, with their sensitivity and F1 (NaN, with
  the headline's 3-D lesion figures, when a subject's slices could not be stacked:
  ``pwml_subject3d/n_not_stacked``).

Slices without a ``subject`` (the converter's key) form
one subject, "unknown"; without ``slice_index`` a subject's slices are stacked
in file-name order. `strict_and_reference` computes the first two protocols
from the metrics alone, for records read back from a per-slice CSV.
"""

import logging
from collections import OrderedDict, defaultdict

import numpy as np

from .distance import check_spacing, hausdorff_distances, union_bounding_box
from .lesion_size import (
    SIZE_STRATA,
    lesion_size_counts,
    pool_size_counts,
    size_figures,
    stratum_name,
)
from .lesionwise import (
    LesionCounts,
    false_positives_per_slice,
    lesion_counts,
    lesion_f1,
    lesion_sensitivity,
)
from .metrics import (
    SliceMetrics,
    dice_from_counts,
    mean_of_defined,
    sensitivity_from_counts,
    slice_metrics,
    specificity_from_counts,
)

__all__ = [
    "slice_record",
    "summarize_slices",
    "strict_and_reference",
    "METRICS",
    "UNKNOWN_SUBJECT",
    "REFERENCE_MAX_SKIPPED",
    "reference_would_abort",
    "headline",
]

logger = logging.getLogger(__name__)

REFERENCE_MAX_SKIPPED = 0.2  # the reference aborts when more predictions are empty
UNKNOWN_SUBJECT = "unknown"
METRICS = ("Dice", "Sens", "Spec", "HD", "HD95", "HD_mm", "HD95_mm")
_FIELD = {
    "Dice": "dice",
    "Sens": "sensitivity",
    "Spec": "specificity",
    "HD": "hd",
    "HD95": "hd95",
    "HD_mm": "hd_mm",
    "HD95_mm": "hd95_mm",
}


_NO_LESIONS = pool_size_counts(())


def _packed_crop(mask: np.ndarray, box):
    return np.packbits(mask[box].ravel()) if box is not None else None


def _unpack(bits, shape) -> np.ndarray:
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def slice_record(pred: np.ndarray, truth: np.ndarray, inp: dict) -> dict:
    """Metrics of one slice plus what aggregation needs; masks kept only as packed crops.

    The crops (of the union's bounding box) are what the 3-D protocols stack, at a small
    fraction of the full masks' memory.

    Args:
        pred, truth: (H, W) binary masks of the same shape (ValueError otherwise, naming
            the input).
        inp: gives ``file_name``/``image_id`` (named in errors), ``subject``,
            ``slice_index`` and ``spacing`` ((row, column[, through-plane]) mm); each may
            be absent.

    Returns:
        A dict: ``image_id``, ``file_name``, ``subject`` (`UNKNOWN_SUBJECT` when absent),
        ``has_subject``, ``slice_index``, ``shape``, ``spacing``, ``metrics``
        (`SliceMetrics`), ``box`` (r0, c0, r1, c1 of the union, or None when both are
        empty), ``pred_bits`` and ``truth_bits`` (np.packbits of the crops, or None).
    """
    where = str(inp.get("file_name", inp.get("image_id", "<input without file_name>")))
    if pred.shape != truth.shape:
        raise ValueError(
            f"{where}: prediction is {pred.shape} but the truth is {truth.shape}; "
            "the output must be at the truth's resolution (input height/width)"
        )
    spacing = inp.get("spacing")
    try:
        if spacing is not None:
            if np.ndim(spacing) != 1 or len(spacing) not in (2, 3):
                raise ValueError(
                    f"spacing must be (row, column[, through-plane]) mm, got {spacing!r}"
                )
            spacing = check_spacing(spacing, len(spacing))
        metrics = slice_metrics(pred, truth, None if spacing is None else spacing[:2])
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    box = union_bounding_box(pred, truth)
    subject = inp.get("subject")
    return {
        "image_id": inp.get("image_id"),
        "file_name": inp.get("file_name"),
        "subject": UNKNOWN_SUBJECT if subject is None else str(subject),
        "has_subject": subject is not None,
        "slice_index": inp.get("slice_index"),
        "shape": pred.shape,
        "spacing": spacing,
        "metrics": metrics,
        "box": None if box is None else (box[0].start, box[1].start, box[0].stop, box[1].stop),
        "pred_bits": _packed_crop(pred, box),
        "truth_bits": _packed_crop(truth, box),
        "size_counts": _NO_LESIONS if box is None else lesion_size_counts(pred[box], truth[box]),
    }


# --- the three protocols ------------------------------------------------------------


def _means(metrics: list[SliceMetrics]) -> dict[str, tuple]:
    return {
        name: mean_of_defined(getattr(m, field) for m in metrics) for name, field in _FIELD.items()
    }


def _strict(records) -> dict[str, float]:
    metrics = [r["metrics"] for r in records]
    means = _means(metrics)
    lesions = [m.lesions for m in metrics]
    out = {name: means[name][0] for name in METRICS}
    measured = sum(not m.truth_empty and not m.pred_empty for m in metrics)
    both_empty = sum(m.truth_empty and m.pred_empty for m in metrics)
    out.update(
        lesion_Sens=lesion_sensitivity(lesions),
        lesion_FP_per_slice=false_positives_per_slice(lesions),
        lesion_F1=lesion_f1(lesions),
        n_slices=len(records),
        n_scored=len(records) - both_empty,
        n_both_empty=both_empty,
        n_Sens_undefined=means["Sens"][2] - both_empty,
        n_HD_missing=means["HD"][2] - both_empty,
        n_HD_mm=means["HD_mm"][1],
        n_HD_measured=measured,
    )
    return out


def _reference(by_subject) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    per_subject, n_used, n_all, n_lesion, n_missed = {}, 0, 0, 0, 0
    for subject, recs in by_subject.items():
        used = [r["metrics"] for r in recs if not r["metrics"].pred_empty]
        n_used, n_all = n_used + len(used), n_all + len(recs)
        lesion_slices = [r["metrics"] for r in recs if not r["metrics"].truth_empty]
        n_lesion += len(lesion_slices)
        n_missed += sum(m.pred_empty for m in lesion_slices)
        if used:
            per_subject[subject] = {name: v[0] for name, v in _means(used).items()}
    out = {name: mean_of_defined(s[name] for s in per_subject.values())[0] for name in METRICS}
    skipped = n_all - n_used
    out.update(
        n_subjects=len(per_subject),
        n_slices_used=n_used,
        n_skipped_empty_pred=skipped,
        skipped_fraction=skipped / n_all if n_all else float("nan"),
        n_lesion_slices=n_lesion,
        n_lesion_slices_empty_pred=n_missed,
    )
    return out, per_subject


def reference_would_abort(reference: dict[str, float]) -> bool:
    """Whether the reference evaluator would stop on this run (``pwml_reference`` results).

    The reference scored lesion slices only (the paper's test set holds no other)
    and stops when more than a fifth of their predictions are empty. An empty
    prediction on a slice without lesions is right, not a miss, so only slices
    with lesions count; with none, the rule does not apply.
    """
    n = reference["n_lesion_slices"]
    return n > 0 and reference["n_lesion_slices_empty_pred"] / n > REFERENCE_MAX_SKIPPED


def headline(case_counts: dict[str, tuple[int, int, int]], lesions3d: LesionCounts) -> dict:
    """The figures to read first (``pwml_headline``), nnU-Net's way.

    ``case_counts``: each case's (tp, fp, fn) voxel counts; ``lesions3d``: 3-D
    lesion counts pooled over the cases. ``case_dice`` is the mean per-case Dice
    over the cases with a lesion in the truth or the prediction; a case empty in
    both has no Dice and is counted in ``n_cases_empty_both`` instead, so a model
    that predicts nothing scores 0 on every case with a lesion (NaN when no
    case has one). ``lesion_f1_3d`` is NaN when nothing was there and nothing
    was predicted.
    """
    case_dice, scored, empty_both = mean_of_defined(
        dice_from_counts(*counts) for counts in case_counts.values()
    )
    return {
        "case_dice": case_dice,
        "n_cases_scored": scored,
        "n_cases_empty_both": empty_both,
        "lesion_f1_3d": lesion_f1(lesions3d),
        "lesion_sensitivity_3d": lesion_sensitivity(lesions3d),
        "true_lesions_3d": lesions3d.true_lesions,
        "found_3d": lesions3d.found,
        "false_positives_3d": lesions3d.false_positives,
    }


def _subject_volumes(recs, subject: str):
    """(pred, truth, spacing) of one subject's slices stacked at their slice_index, cut to
    the union's 3-D box (empty volumes when nothing is in either mask); None when the slices
    cannot be stacked (sizes differ, repeated slice_index). spacing: (through-plane, row,
    column) mm, or None."""
    if len({r["shape"] for r in recs}) > 1:
        logger.warning(f"subject {subject}: slices differ in size; no 3-D HD or lesions")
        return None
    zs = [r["z"] for r in recs]
    if len(set(zs)) != len(zs):
        logger.warning(f"subject {subject}: repeated slice_index; no 3-D HD or lesions")
        return None
    spacings = {r["spacing"] for r in recs}
    spacing = spacings.pop() if len(spacings) == 1 else None
    if spacing is not None and len(spacing) == 3:  # volume axes: (through-plane, row, column)
        spacing = (spacing[2], spacing[0], spacing[1])
    else:
        spacing = None  # in-plane only, unknown, or differing between slices: no mm
    boxes = [r["box"] for r in recs if r["box"] is not None]
    if not boxes:  # nothing predicted, nothing to find
        empty = np.zeros((0, 0, 0), bool)
        return empty, empty, spacing
    r0, c0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    r1, c1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    z0 = min(zs)
    pred = np.zeros((max(zs) - z0 + 1, r1 - r0, c1 - c0), bool)  # the union's 3-D box
    truth = np.zeros_like(pred)
    for r in recs:
        if r["box"] is not None:
            br0, bc0, br1, bc1 = r["box"]
            shape = (br1 - br0, bc1 - bc0)
            dst = (r["z"] - z0, slice(br0 - r0, br1 - r0), slice(bc0 - c0, bc1 - c0))
            pred[dst] = _unpack(r["pred_bits"], shape)
            truth[dst] = _unpack(r["truth_bits"], shape)
    return pred, truth, spacing


def _subject_volume_hd(volumes):
    """(HD, HD95, HD_mm, HD95_mm) of a subject's stacked volumes (`_subject_volumes`)."""
    if volumes is None:
        return (float("nan"),) * 4
    pred, truth, spacing = volumes
    if not pred.any() or not truth.any():  # no boundary on one side: no distance
        return (float("nan"),) * 4
    hd, hd95 = hausdorff_distances(pred, truth)
    if spacing is None:
        return hd, hd95, float("nan"), float("nan")
    return (hd, hd95, *hausdorff_distances(pred, truth, spacing))


def _subject_lesions3d(volumes) -> LesionCounts:
    """Lesion-wise counts with lesions as 3-D (26-connected) components of the stacked slices.

    Slices absent from the records (not evaluated) are empty in both masks: a
    lesion-slices-only evaluation counts no false positive outside its slices.
    """
    if volumes is None or volumes[0].size == 0:
        return LesionCounts()
    return lesion_counts(volumes[0], volumes[1])


def _subject3d(by_subject):
    """(pwml_subject3d, per-subject figures, per-subject 3-D lesion counts, per-subject
    (tp, fp, fn))."""
    per_subject, measured, both_empty, lesions3d, counts = {}, 0, 0, {}, {}
    not_stacked = 0
    for subject, recs in by_subject.items():
        tp, fp, fn, tn = (
            sum(getattr(r["metrics"], k) for r in recs) for k in ("tp", "fp", "fn", "tn")
        )
        counts[subject] = (tp, fp, fn)
        measured += tp + fn > 0 and tp + fp > 0
        both_empty += tp + fn + fp == 0
        volumes = _subject_volumes(recs, subject)
        not_stacked += volumes is None
        hd, hd95, hd_mm, hd95_mm = _subject_volume_hd(volumes)
        lesions3d[subject] = _subject_lesions3d(volumes)
        per_subject[subject] = {
            "Dice": dice_from_counts(tp, fp, fn),
            "Sens": sensitivity_from_counts(tp, fn),
            "Spec": specificity_from_counts(fp, tn),
            "HD": hd,
            "HD95": hd95,
            "HD_mm": hd_mm,
            "HD95_mm": hd95_mm,
        }
    means = {name: mean_of_defined(s[name] for s in per_subject.values()) for name in METRICS}
    out = {name: means[name][0] for name in METRICS}
    out.update(
        n_subjects=len(per_subject),
        n_scored=len(per_subject) - both_empty,
        n_both_empty=both_empty,
        n_HD_missing=means["HD"][2] - both_empty,
        n_HD_measured=measured,
        n_not_stacked=not_stacked,
    )
    return out, per_subject, lesions3d, counts


def _group_by_subject(records) -> dict[str, list[dict]]:
    """Records per subject, ordered through-plane; each gets "z", its stacking position."""
    groups = defaultdict(list)
    for r in records:
        groups[r["subject"]].append(r)
    for recs in groups.values():
        if all(r["slice_index"] is not None for r in recs):
            for r in recs:
                r["z"] = int(r["slice_index"])
        else:  # no positions: file-name order, consecutive
            recs.sort(key=lambda r: str(r["file_name"]))
            for z, r in enumerate(recs):
                r["z"] = z
        recs.sort(key=lambda r: (r["z"], str(r["file_name"])))
    return dict(sorted(groups.items()))


def _all_floats(results: dict[str, dict]) -> None:
    for task in results.values():
        for k, v in task.items():
            task[k] = float(v)


def strict_and_reference(records: list[dict]) -> dict[str, dict[str, float]]:
    """``pwml_strict`` and ``pwml_reference`` of records that carry only "metrics" and "subject".

    The two protocols need no masks, so they can be computed again from the
    per-slice CSV rows of several runs pooled (rsrcnn_d2.experiments.results),
    by this same code; the subjects of pooled runs must be disjoint.
    """
    by_subject = defaultdict(list)
    for r in records:
        by_subject[r["subject"]].append(r)
    results = OrderedDict(
        pwml_strict=_strict(records), pwml_reference=_reference(dict(sorted(by_subject.items())))[0]
    )
    _all_floats(results)
    return results


def summarize_slices(records: list[dict]):
    """(results OrderedDict of tasks, per-subject rows) from per-slice records (`slice_record`)."""
    by_subject = _group_by_subject(records)
    reference, ref_subjects = _reference(by_subject)
    subject3d, d3_subjects, lesions3d, case_counts = _subject3d(by_subject)
    pooled = sum((r["metrics"].lesions for r in records), LesionCounts())
    pooled3d = sum(lesions3d.values(), LesionCounts())
    results = OrderedDict()
    results["pwml_headline"] = headline(case_counts, pooled3d)
    results["pwml_strict"] = _strict(records)
    results["pwml_reference"] = reference
    results["pwml_subject3d"] = subject3d
    results["pwml_lesion"] = {
        "true_lesions": pooled.true_lesions,
        "found": pooled.found,
        "predicted": pooled.predicted,
        "false_positives": pooled.false_positives,
    }
    results["pwml_size"] = size_figures(pool_size_counts(r["size_counts"] for r in records))
    results["pwml_lesion3d"] = {
        "true_lesions": pooled3d.true_lesions,
        "found": pooled3d.found,
        "predicted": pooled3d.predicted,
        "false_positives": pooled3d.false_positives,
        "sensitivity": lesion_sensitivity(pooled3d),
        "F1": lesion_f1(pooled3d),
    }
    if subject3d["n_not_stacked"]:  # some subjects' 3-D lesions uncounted: no pooled figure
        results["pwml_lesion3d"].update(sensitivity=float("nan"), F1=float("nan"))
        results["pwml_headline"].update(
            lesion_f1_3d=float("nan"), lesion_sensitivity_3d=float("nan")
        )
    _all_floats(results)
    rows = []
    for subject, recs in by_subject.items():
        lesions = sum((r["metrics"].lesions for r in recs), LesionCounts())
        row = {
            "subject": subject,
            "n_slices": len(recs),
            "n_lesion_slices": sum(not r["metrics"].truth_empty for r in recs),
            "n_reference_used": sum(not r["metrics"].pred_empty for r in recs),
        }
        ref = ref_subjects.get(subject, {})  # absent: every prediction was empty
        row.update({f"ref_{k}": ref.get(k, float("nan")) for k in METRICS})
        row.update({f"3d_{k}": d3_subjects[subject][k] for k in METRICS})
        row.update(
            true_lesions=lesions.true_lesions,
            found=lesions.found,
            predicted=lesions.predicted,
            false_positives=lesions.false_positives,
            true_lesions_3d=lesions3d[subject].true_lesions,
            found_3d=lesions3d[subject].found,
            predicted_3d=lesions3d[subject].predicted,
            false_positives_3d=lesions3d[subject].false_positives,
        )
        sizes = pool_size_counts(r["size_counts"] for r in recs)
        for stratum, c in zip(SIZE_STRATA, sizes):
            name = stratum_name(stratum)
            row.update(
                {
                    f"lesions_{name}": c.true_lesions,
                    f"found_{name}": c.found,
                    f"fp_{name}": c.false_positives,
                    f"dice_sum_{name}": c.dice_sum,
                }
            )
        rows.append(row)
    return results, rows
