"""Where the evaluator finds the truth of a slice, and the prediction in a model output.

Truth, first found: ``truth_fn(input)``; ``input["gt_mask"]`` (what the
project's test mapper provides) or ``["sem_seg"]`` (> 0 is lesion); the union of
``input["instances"].gt_masks``; ``input["annotations"]``
(COCO RLE or polygons, `rsrcnn_d2.data.coco.annotations_mask`); the dataset's
own record when a dataset name is given (detectron2's own test mapper drops
annotations). Prediction: ``lesion_mask`` (H, W) or the union of
``instances.pred_masks``.
"""

from typing import Callable, Optional

import numpy as np
import torch

from ..data.coco import annotations_mask

__all__ = ["TRUTH_KEYS", "TruthSource", "prediction_mask", "as_mask", "input_name"]

# truth masks an input may carry: our test mapper's (data/mapper.py), detectron2's. Not
# "lesion_mask": that name is the prediction, in model outputs.
TRUTH_KEYS = ("gt_mask", "sem_seg")


def input_name(inp: dict) -> str:
    """What error messages call an input: its file, else its image id."""
    return str(inp.get("file_name", inp.get("image_id", "<input without file_name>")))


def as_mask(value, where: str, what: str) -> np.ndarray:
    """One mask form for every truth and prediction source, so that all are scored alike.

    Args:
        value: array or tensor, (H, W) or (1, H, W); > 0 is lesion.
        where: the input's name (`input_name`), for the error message.
        what: the key the value came from, for the error message.

    Returns:
        (H, W) bool array. ValueError for any other shape.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    mask = np.asarray(value)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"{where}: {what} must be a 2-D mask, got shape {mask.shape}")
    return mask > 0


def _instances_mask(instances, where: str) -> np.ndarray:
    from detectron2.structures import BitMasks, PolygonMasks, polygons_to_bitmask

    height, width = instances.image_size
    masks = instances.gt_masks
    if len(instances) == 0:
        return np.zeros((height, width), bool)
    if isinstance(masks, BitMasks):
        return as_mask(masks.tensor.any(dim=0), where, "gt_masks")
    if isinstance(masks, PolygonMasks):
        return np.any([polygons_to_bitmask(p, height, width) for p in masks.polygons], axis=0)
    return as_mask(torch.as_tensor(masks).any(dim=0), where, "gt_masks")


def prediction_mask(output: dict, where: str = "output") -> np.ndarray:
    """The predicted lesion mask of one model output: ``lesion_mask`` or the union of pred_masks.

    Returns an (H, W) bool array; ValueError when the output has neither.
    """
    if "lesion_mask" in output:
        return as_mask(output["lesion_mask"], where, "lesion_mask")
    inst = output.get("instances")
    if inst is not None and inst.has("pred_masks"):
        if len(inst) == 0:
            return np.zeros(inst.image_size, bool)
        return as_mask(inst.pred_masks.any(dim=0), where, "pred_masks")
    raise ValueError(
        f"{where}: the model output has neither 'lesion_mask' nor instances with pred_masks"
    )


class TruthSource:
    """``source(input)``: the truth mask of an input, from the first source found (module
    docstring).

    ``dataset_name``: registered dataset whose records (by ``image_id``) give the
    truth of inputs that carry none; read once, on first need.
    ``truth_fn(input) -> (H, W)`` overrides every other source.
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        truth_fn: Optional[Callable[[dict], np.ndarray]] = None,
    ):
        self._dataset_name = dataset_name
        self._truth_fn = truth_fn
        self._records = None

    def __call__(self, inp: dict) -> np.ndarray:
        where = input_name(inp)
        if self._truth_fn is not None:
            return as_mask(self._truth_fn(inp), where, "truth_fn(input)")
        for key in TRUTH_KEYS:
            if key in inp:
                return as_mask(inp[key], where, key)
        if "instances" in inp and inp["instances"].has("gt_masks"):
            return _instances_mask(inp["instances"], where)
        record = inp if "annotations" in inp else self._dataset_record(inp, where)
        return annotations_mask(
            record["annotations"], int(record["height"]), int(record["width"]), where
        )

    def _dataset_record(self, inp: dict, where: str) -> dict:
        if self._dataset_name is None:
            raise ValueError(
                f"{where}: no ground truth in the input ({', '.join(TRUTH_KEYS)}, "
                "instances.gt_masks or annotations); pass dataset_name or truth_fn"
            )
        if self._records is None:
            from detectron2.data import DatasetCatalog

            self._records = {r["image_id"]: r for r in DatasetCatalog.get(self._dataset_name)}
        try:
            return self._records[inp["image_id"]]
        except KeyError:
            raise ValueError(
                f"{where}: image_id {inp.get('image_id')!r} is not in dataset "
                f"{self._dataset_name!r}"
            ) from None
