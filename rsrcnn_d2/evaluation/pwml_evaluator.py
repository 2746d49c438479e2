"""PWMLEvaluator: the paper's slice metrics, honestly and as the reference computed them.

A detectron2 ``DatasetEvaluator`` (``inference_on_dataset``, ``DefaultTrainer.test``,
or alone: ``reset()``, ``process(inputs, outputs)``..., ``evaluate()``). It
gathers one record per slice (protocols.slice_record) from every worker and
reports the protocols defined in protocols.py: ``pwml_strict`` (the default
figures), ``pwml_reference`` (the reference implementation's), ``pwml_subject3d``,
``pwml_headline``, ``pwml_lesion`` and ``pwml_lesion3d``. Where the truth comes from:
truth.py; the CSV files and the table: report.py.

Inputs: ``file_name``/``image_id``; optional ``subject`` (as the converter writes it),
``slice_index``, ``spacing`` ((row, column[, through-plane]) mm), and the truth.
Outputs: ``lesion_mask`` (H, W) or ``instances.pred_masks`` (their union).
"""

import itertools
import logging
import os
from collections import OrderedDict
from typing import Callable, Optional

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .protocols import UNKNOWN_SUBJECT, reference_would_abort, slice_record, summarize_slices
from .report import SLICE_COLUMNS, format_table, slice_row, write_csv_atomic
from .truth import TruthSource, input_name, prediction_mask

__all__ = ["PWMLEvaluator"]

logger = logging.getLogger(__name__)


class PWMLEvaluator(DatasetEvaluator):
    """Slice, subject (3-D) and lesion-wise PWML metrics under two protocols (protocols.py).

    Args:
        dataset_name: registered dataset whose records supply the truth when the
            inputs carry none (looked up by ``image_id``); also names the logs.
        output_dir: where ``pwml_slices.csv`` and ``pwml_subjects.csv`` go (None: no files).
        distributed: gather the slices of all workers to the main process.
        truth_fn: ``truth_fn(input) -> (H, W) array``, overriding every other truth source.
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        output_dir: Optional[str] = None,
        *,
        distributed: bool = True,
        truth_fn: Optional[Callable[[dict], np.ndarray]] = None,
    ):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._truth = TruthSource(dataset_name, truth_fn)
        self._records: list[dict] = []

    def reset(self):
        self._records = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            pred = prediction_mask(out, input_name(inp))
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
            logger.warning(
                "PWMLEvaluator: no slices were processed (empty dataset, or process() "
                "was never called); returning no results"
            )
            return OrderedDict()
        if not all(r["has_subject"] for r in records):
            logger.warning(
                f"PWMLEvaluator: some slices have no subject; they form "
                f"one subject {UNKNOWN_SUBJECT!r}"
            )
        results, subject_rows = summarize_slices(records)
        ref = results["pwml_reference"]
        if reference_would_abort(ref):
            n, missed = ref["n_lesion_slices"], ref["n_lesion_slices_empty_pred"]
            logger.warning(
                f"PWMLEvaluator: the prediction is empty on {missed:.0f} of the {n:.0f} "
                f"slices with lesions ({100 * missed / n:.1f}%); the reference "
                "implementation would abort its evaluation here"
            )
        if self._output_dir:
            rows = sorted(records, key=lambda r: (r["subject"], r["z"], str(r["file_name"])))
            write_csv_atomic(
                os.path.join(self._output_dir, "pwml_slices.csv"),
                SLICE_COLUMNS,
                [slice_row(r) for r in rows],
            )
            columns = list(subject_rows[0].keys())
            write_csv_atomic(
                os.path.join(self._output_dir, "pwml_subjects.csv"), columns, subject_rows
            )
        name = f" on {self._dataset_name}" if self._dataset_name else ""
        logger.info(f"PWML evaluation{name}:\n{format_table(results)}")
        return results
