"""PWMLEvaluator: the paper's slice metrics, honestly and as the reference computed them.

A detectron2 ``DatasetEvaluator`` (``inference_on_dataset``, ``DefaultTrainer.test``,
or alone: ``reset()``, ``process(inputs, outputs)``..., ``evaluate()``).

Per slice (metrics.slice_metrics): Dice, sensitivity, specificity, HD (all
pixels, as the reference) and HD95 (standard, boundary to boundary; distance.py)
in pixels (and in mm when the input carries ``spacing``), lesion-wise counts.
`evaluate` gathers the slices of all workers and reports, as detectron2 tasks:

- ``pwml_strict`` (the default figures): every slice counts, each weighs the
  same (mean over slices). An empty prediction on a lesion slice scores Dice 0
  and sensitivity 0; its HD is undefined, left out of the HD mean and counted
  (``n_HD_missing``). Empty-truth slices: Dice 1 if the prediction is empty
  too, else 0; sensitivity undefined (left out, ``n_Sens_undefined``); HD 0 if
  the prediction is empty, else missing. When no slice has lesions in both
  masks (a lesion-free dataset, every lesion missed) no distance was measured
  and HD/HD95 are NaN ("n/a"), not a mean of those zeros (``n_HD_measured``,
  ``n_HD_both_empty``). Also lesion-wise sensitivity, false
  positives per slice and F1 on counts pooled over all slices (lesionwise.py).
- ``pwml_reference``: the reference implementation's protocol, for comparison
  with the paper. Slices whose prediction is empty are skipped (counted in
  ``n_skipped_empty_pred``); the remaining slice values are averaged per
  subject, then over subjects. The reference, scored on lesion slices only,
  aborts when more than a fifth of them have an empty prediction; we warn on
  that condition (``n_lesion_slices_empty_pred`` of ``n_lesion_slices``).
- ``pwml_subject3d``: each subject's slices stacked in a volume at their
  ``slice_index`` (absent indices are empty in both masks, so gaps keep the
  true through-plane distances): Dice, sensitivity, specificity from pooled
  counts, HD/HD95 in 3-D (voxel-index units, and mm when every slice carries a
  3-element spacing), averaged over subjects (NaN when no subject has lesions in both).
- ``pwml_lesion``: the pooled lesion-wise counts.

Inputs: ``file_name``/``image_id``; optional ``subject_id`` (or ``subject``, as
written by the converter; slices without one form one subject, "unknown"),
``slice_index`` (else file-name order), ``spacing`` ((row, column[, through-plane])
mm). Truth, first found: ``truth_fn(input)``; ``input["gt_mask"]`` (what the
project's test mapper provides), ``["lesion_mask"]`` or ``["sem_seg"]`` (> 0 is
lesion); the union of ``input["instances"].gt_masks``; ``input["annotations"]``
(COCO RLE/polygons); the dataset's own record when ``dataset_name`` is given
(detectron2's own test mapper drops annotations).
Outputs: ``lesion_mask`` (H, W) or ``instances.pred_masks`` (their union).
"""
import csv
import itertools
import logging
import math
import os
import tempfile
from collections import OrderedDict
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from tabulate import tabulate

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .distance import check_spacing, union_bounding_box
from .metrics import slice_metrics
from .protocols import (_FIELD, METRICS, UNKNOWN_SUBJECT, _packed_crop, reference_would_abort,
                        summarize_slices)

__all__ = ["PWMLEvaluator", "prediction_mask", "slice_record", "summarize_slices",
           "format_table", "write_csv_atomic"]

logger = logging.getLogger(__name__)

# truth masks an input may carry: our test mapper's (data/mapper.py), ours, detectron2's
TRUTH_KEYS = ("gt_mask", "lesion_mask", "sem_seg")


# --- reading inputs and outputs --------------------------------------------------

def _as_mask(value, where: str, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    mask = np.asarray(value)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"{where}: {what} must be a 2-D mask, got shape {mask.shape}")
    return mask > 0


def _annotations_mask(annotations, height: int, width: int, where: str) -> np.ndarray:
    import pycocotools.mask as mask_util

    mask = np.zeros((height, width), bool)
    for a in annotations:
        seg = a.get("segmentation")
        if seg is None:
            raise ValueError(f"{where}: an annotation has no segmentation; "
                             "cannot build the truth mask")
        if isinstance(seg, dict):
            # uncompressed RLE (list counts) needs encoding; compressed RLE decodes as is
            is_list = isinstance(seg["counts"], list)
            rle = mask_util.frPyObjects(seg, height, width) if is_list else seg
        else:
            rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
        mask |= mask_util.decode(rle).astype(bool)
    return mask


def _instances_mask(instances, where: str) -> np.ndarray:
    from detectron2.structures import BitMasks, PolygonMasks, polygons_to_bitmask

    height, width = instances.image_size
    masks = instances.gt_masks
    if len(instances) == 0:
        return np.zeros((height, width), bool)
    if isinstance(masks, BitMasks):
        return _as_mask(masks.tensor.any(dim=0), where, "gt_masks")
    if isinstance(masks, PolygonMasks):
        return np.any([polygons_to_bitmask(p, height, width) for p in masks.polygons], axis=0)
    return _as_mask(torch.as_tensor(masks).any(dim=0), where, "gt_masks")


def prediction_mask(output: Dict, where: str = "output") -> np.ndarray:
    """The predicted lesion mask of one model output: ``lesion_mask`` or the union of pred_masks."""
    if "lesion_mask" in output:
        return _as_mask(output["lesion_mask"], where, "lesion_mask")
    inst = output.get("instances")
    if inst is not None and inst.has("pred_masks"):
        if len(inst) == 0:
            return np.zeros(inst.image_size, bool)
        return _as_mask(inst.pred_masks.any(dim=0), where, "pred_masks")
    raise ValueError(f"{where}: the model output has neither 'lesion_mask' nor instances "
                     "with pred_masks")


def _where(inp: Dict) -> str:
    return str(inp.get("file_name", inp.get("image_id", "<input without file_name>")))


# --- per-slice records -----------------------------------------------------------

def slice_record(pred: np.ndarray, truth: np.ndarray, inp: Dict) -> Dict:
    """Metrics of one slice plus what aggregation needs; masks kept only as packed crops."""
    where = _where(inp)
    if pred.shape != truth.shape:
        raise ValueError(f"{where}: prediction is {pred.shape} but the truth is {truth.shape}; "
                         "the output must be at the truth's resolution (input height/width)")
    spacing = inp.get("spacing")
    try:
        if spacing is not None:
            if np.ndim(spacing) != 1 or len(spacing) not in (2, 3):
                raise ValueError(f"spacing must be (row, column[, through-plane]) mm, "
                                 f"got {spacing!r}")
            spacing = check_spacing(spacing, len(spacing))
        metrics = slice_metrics(pred, truth, None if spacing is None else spacing[:2])
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    box = union_bounding_box(pred, truth)
    subject = inp.get("subject_id", inp.get("subject"))
    return {
        "image_id": inp.get("image_id"), "file_name": inp.get("file_name"),
        "subject": UNKNOWN_SUBJECT if subject is None else str(subject),
        "has_subject": subject is not None, "slice_index": inp.get("slice_index"),
        "shape": pred.shape, "spacing": spacing, "metrics": metrics,
        "box": None if box is None else (box[0].start, box[1].start, box[0].stop, box[1].stop),
        "pred_bits": _packed_crop(pred, box), "truth_bits": _packed_crop(truth, box),
    }


SLICE_COLUMNS = ["subject", "slice_index", "image_id", "file_name", "height", "width",
                 "spacing_row", "spacing_col", "truth_pixels", "pred_pixels", "tp", "fp", "fn",
                 "tn", "dice", "sensitivity", "specificity", "hd", "hd95", "hd_mm", "hd95_mm",
                 "true_lesions", "found_lesions", "pred_lesions", "fp_lesions", "reference_used"]


def _slice_row(r: Dict) -> Dict:
    m = r["metrics"]
    spacing = r["spacing"] or (None, None)
    return {"subject": r["subject"] if r["has_subject"] else "", "slice_index": r["slice_index"],
            "image_id": r["image_id"], "file_name": r["file_name"], "height": r["shape"][0],
            "width": r["shape"][1], "spacing_row": spacing[0], "spacing_col": spacing[1],
            "truth_pixels": m.tp + m.fn, "pred_pixels": m.tp + m.fp, "tp": m.tp, "fp": m.fp,
            "fn": m.fn, "tn": m.tn, **{f: getattr(m, f) for f in _FIELD.values()},
            "true_lesions": m.lesions.true_lesions, "found_lesions": m.lesions.found,
            "pred_lesions": m.lesions.predicted, "fp_lesions": m.lesions.false_positives,
            "reference_used": int(not m.pred_empty)}


def _cell(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""  # undefined / unknown: an empty cell, read as missing by CSV readers
    return f"{v:.6g}" if isinstance(v, float) else v


def write_csv_atomic(path: str, columns: List[str], rows: List[Dict]) -> None:
    """Write rows to ``path`` through a temporary file in the same folder and os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: _cell(row.get(c)) for c in columns})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def format_table(results) -> str:
    """The three protocols side by side, plus the counts that qualify them."""
    tasks = [("strict", "pwml_strict"), ("reference", "pwml_reference"),
             ("subject 3-D", "pwml_subject3d")]
    rows = [[m] + [results[t][m] for _, t in tasks] for m in METRICS]
    table = tabulate(rows, headers=["metric"] + [n for n, _ in tasks], floatfmt=".4f",
                     tablefmt="pipe")
    s, r, d = results["pwml_strict"], results["pwml_reference"], results["pwml_subject3d"]
    lesion = results["pwml_lesion"]
    no_hd = ""
    if s["n_HD_measured"] == 0:
        no_hd = (f"HD n/a: no slice has lesions in both truth and prediction "
                 f"({s['n_HD_both_empty']:.0f} both empty, {s['n_HD_missing']:.0f} one empty)\n")
    lesion_free = s["n_slices"] - r["n_lesion_slices"]
    coverage = ("slices with lesions only (the paper's selection)" if lesion_free == 0 else
                f"{r['n_lesion_slices']:.0f} slices with lesions and {lesion_free:.0f} without")
    return (f"{table}\n"
            f"covers {coverage}; HD/HD95 in pixels, HD_mm/HD95_mm in mm (NaN: spacing unknown)\n"
            f"strict: {s['n_slices']:.0f} slices; sensitivity undefined (empty truth) on "
            f"{s['n_Sens_undefined']:.0f}; HD missing (one mask empty) on {s['n_HD_missing']:.0f}\n"
            f"{no_hd}"
            f"reference: skipped {r['n_skipped_empty_pred']:.0f} slices with an empty prediction "
            f"({100 * r['skipped_fraction']:.1f}%), {r['n_subjects']:.0f} subjects\n"
            f"subject 3-D: {d['n_subjects']:.0f} subjects, HD missing on {d['n_HD_missing']:.0f}\n"
            f"lesion-wise: {lesion['found']:.0f}/{lesion['true_lesions']:.0f} lesions found, "
            f"{lesion['false_positives']:.0f} false-positive components; sensitivity "
            f"{s['lesion_Sens']:.4f}, FP/slice {s['lesion_FP_per_slice']:.4f}, "
            f"F1 {s['lesion_F1']:.4f}")


# --- the evaluator --------------------------------------------------------------------

class PWMLEvaluator(DatasetEvaluator):
    """Slice, subject (3-D) and lesion-wise PWML metrics under two protocols (module docstring).

    Args:
        dataset_name: registered dataset whose records supply the truth when the
            inputs carry none (looked up by ``image_id``); also names the logs.
        output_dir: where ``pwml_slices.csv`` and ``pwml_subjects.csv`` go (None: no files).
        distributed: gather the slices of all workers to the main process.
        truth_fn: ``truth_fn(input) -> (H, W) array``, overriding every other truth source.
    """

    def __init__(self, dataset_name: Optional[str] = None, output_dir: Optional[str] = None,
                 *, distributed: bool = True,
                 truth_fn: Optional[Callable[[Dict], np.ndarray]] = None):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._truth_fn = truth_fn
        self._dataset_records = None
        self._records: List[Dict] = []

    def reset(self):
        self._records = []

    def _truth(self, inp: Dict) -> np.ndarray:
        where = _where(inp)
        if self._truth_fn is not None:
            return _as_mask(self._truth_fn(inp), where, "truth_fn(input)")
        for key in TRUTH_KEYS:
            if key in inp:
                return _as_mask(inp[key], where, key)
        if "instances" in inp and inp["instances"].has("gt_masks"):
            return _instances_mask(inp["instances"], where)
        record = inp if "annotations" in inp else self._dataset_record(inp, where)
        return _annotations_mask(record["annotations"], int(record["height"]),
                                 int(record["width"]), where)

    def _dataset_record(self, inp: Dict, where: str) -> Dict:
        if self._dataset_name is None:
            raise ValueError(f"{where}: no ground truth in the input ({', '.join(TRUTH_KEYS)}, "
                             "instances.gt_masks or annotations); pass dataset_name or truth_fn")
        if self._dataset_records is None:
            from detectron2.data import DatasetCatalog

            records = DatasetCatalog.get(self._dataset_name)
            self._dataset_records = {r["image_id"]: r for r in records}
        try:
            return self._dataset_records[inp["image_id"]]
        except KeyError:
            raise ValueError(f"{where}: image_id {inp.get('image_id')!r} is not in dataset "
                             f"{self._dataset_name!r}") from None

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            pred = prediction_mask(out, _where(inp))
            self._records.append(slice_record(pred, self._truth(inp), inp))

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            records = list(itertools.chain(*comm.gather(self._records, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            records = self._records
        if not records:
            logger.warning("PWMLEvaluator: no slices were processed (empty dataset, or process() "
                           "was never called); returning no results")
            return OrderedDict()
        if not all(r["has_subject"] for r in records):
            logger.warning(f"PWMLEvaluator: some slices have no subject_id/subject; they form "
                           f"one subject {UNKNOWN_SUBJECT!r}")
        results, subject_rows = summarize_slices(records)
        ref = results["pwml_reference"]
        if reference_would_abort(ref):
            n, missed = ref["n_lesion_slices"], ref["n_lesion_slices_empty_pred"]
            logger.warning(f"PWMLEvaluator: the prediction is empty on {missed:.0f} of the {n:.0f} "
                           f"slices with lesions ({100 * missed / n:.1f}%); the reference "
                           "implementation would abort its evaluation here")
        if self._output_dir:
            rows = sorted(records, key=lambda r: (r["subject"], r["z"], str(r["file_name"])))
            write_csv_atomic(os.path.join(self._output_dir, "pwml_slices.csv"), SLICE_COLUMNS,
                             [_slice_row(r) for r in rows])
            columns = list(subject_rows[0].keys())
            write_csv_atomic(os.path.join(self._output_dir, "pwml_subjects.csv"), columns,
                             subject_rows)
        name = f" on {self._dataset_name}" if self._dataset_name else ""
        logger.info(f"PWML evaluation{name}:\n{format_table(results)}")
        return results
