"""Strict Dice of the validation slices in one inference pass, for model_best.pth and health.json.

nnU-Net chooses its checkpoint by a pseudo-Dice of the validation cases; this is
ours: the model as configured (its score threshold, its CRF; no flip TTA), every
validation slice scored by the strict protocol (evaluation/protocols.py), without the
evaluator's tables and files. It also says how many slices with lesions were left
without any prediction, the sign of a model that predicts nothing.
"""

import itertools
import math
from collections.abc import Iterable

import torch
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils import comm

from ..evaluation.protocols import slice_record, strict_and_reference
from ..evaluation.truth import TruthSource, input_name, prediction_mask

__all__ = ["validation_dice"]


def validation_dice(model: torch.nn.Module, batches: Iterable, dataset_name: str) -> dict:
    """Strict Dice of the validation slices, and how many lesion slices got no prediction.

    Args:
        model: the bare module (not DDP); it runs in eval mode without gradients and is
            restored to its mode.
        batches: lists of mapped inputs, as the model takes them (a test loader).
        dataset_name: registered dataset whose records give the truth masks.

    Returns:
        ``{"dice", "empty_lesion_share", "n_slices", "n_lesion_slices"}``, all workers'
        slices pooled (every worker gets the same). ``dice`` and ``empty_lesion_share``
        are NaN when there is nothing to score.
    """
    truth = TruthSource(dataset_name)
    records = []
    with inference_context(model), torch.no_grad():
        for inputs in batches:
            for inp, out in zip(inputs, model(inputs)):
                records.append(slice_record(prediction_mask(out, input_name(inp)), truth(inp), inp))
    records = list(itertools.chain(*comm.all_gather(records)))
    if not records:
        return {
            "dice": math.nan,
            "empty_lesion_share": math.nan,
            "n_slices": 0,
            "n_lesion_slices": 0,
        }
    results = strict_and_reference(records)
    reference = results["pwml_reference"]
    lesion_slices = int(reference["n_lesion_slices"])
    empty = reference["n_lesion_slices_empty_pred"]
    return {
        "dice": results["pwml_strict"]["Dice"],
        "empty_lesion_share": empty / lesion_slices if lesion_slices else math.nan,
        "n_slices": len(records),
        "n_lesion_slices": lesion_slices,
    }
