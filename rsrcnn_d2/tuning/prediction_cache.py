"""Run the network once over a dataset and keep what re-pasting the masks needs.

Why: the dense CRF acts after the network, on the pasted instance probabilities.
Tuning its parameters therefore never needs the network again: per slice we keep
the raw mask-head probabilities, the boxes they are pasted through and the grey
image, both at the network's input scale (where the CRF runs), the head crop and
the truth mask, and every trial only re-pastes them with
`paste_lesions(..., refine=crf)` (the same function the model uses).
The cache can be saved so that later tuning runs skip the network entirely.
"""

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..data.errors import PWMLDataError
from ..data.fileio import atomic_write
from ..modeling.postprocessing import network_grey

__all__ = [
    "CachedSlice",
    "collect_predictions",
    "save_prediction_cache",
    "load_prediction_cache",
    "prediction_cache_key",
    "dataset_digest",
    "file_sha256",
]

logger = logging.getLogger(__name__)

CACHE_VERSION = 4  # 3: keyed on the dataset's and the weights' content; 4: scores kept


@dataclass
class CachedSlice:
    """One slice's network output, reduced to what pasting needs (all on the CPU).

    mask_probs: float32 Tensor of shape (R, 1, M, M), the mask head's probabilities.
    network_boxes: float32 Tensor of shape (R, 4), XYXY at the network's input
        scale (the expanded boxes, or ``pred_boxes`` for heads that do not expand).
    network_image: float32 Tensor of shape (Hn, Wn), the grey slice the network saw.
    truth: bool Tensor of shape (H, W), the union of the true lesions (output frame).
    crop_box: (x0, y0, x1, y1) of the frame the network saw (head crop), or None.
    scores: float32 Tensor of shape (R,), the detection scores (None in caches that
        predate the score-threshold search: every detection counts).
    member_scores: (R, members) for an ensemble or flip TTA (`LesionEnsemble`):
        each member's best score for the detection; None for one model.
    min_votes: how many members must detect a lesion at the trial's threshold.
    """

    file_name: str
    mask_probs: torch.Tensor
    network_boxes: torch.Tensor
    network_image: torch.Tensor
    truth: torch.Tensor
    crop_box: Optional[list[int]] = None
    subject: Optional[str] = None
    slice_index: Optional[int] = None
    scores: Optional[torch.Tensor] = None
    member_scores: Optional[torch.Tensor] = None
    min_votes: int = 1

    def kept(self, score_threshold: Optional[float]) -> torch.Tensor:
        """Bool (R,): the detections a model run at ``score_threshold`` keeps (None: all).

        Exact for a network cached at a lower threshold: the test NMS never lets a
        lower-scoring box remove a higher one, so raising the threshold removes
        detections and changes no other; an ensemble's detection also needs
        ``min_votes`` members scoring it at least ``score_threshold``.
        """
        keep = torch.ones(len(self.mask_probs), dtype=torch.bool)
        if score_threshold is None or self.scores is None:
            return keep
        keep &= self.scores >= score_threshold
        if self.member_scores is not None:
            keep &= (self.member_scores >= score_threshold).sum(dim=1) >= self.min_votes
        return keep


def _cached_slice(inp: dict, out: dict, min_votes: int = 1) -> CachedSlice:
    where = str(inp.get("file_name", inp.get("image_id", "<input>")))
    if "gt_mask" not in inp:
        raise ValueError(
            f"{where}: the input has no 'gt_mask' (truth); DCRF tuning needs an "
            "annotated dataset read with build_pwml_test_loader"
        )
    inst = out["instances"].to("cpu")
    if not inst.has("mask_probs"):
        raise ValueError(
            f"{where}: the model output has no instances.mask_probs; DCRF tuning "
            "needs the RSRCNN meta-architecture"
        )
    height, width = inst.image_size
    truth = torch.as_tensor(inp["gt_mask"]).bool().cpu()
    if tuple(truth.shape) != (height, width):
        raise ValueError(
            f"{where}: truth of size {tuple(truth.shape)} but the output is {(height, width)}"
        )
    index = inp.get("slice_index")
    return CachedSlice(
        file_name=where,
        mask_probs=inst.mask_probs.detach().float().contiguous(),
        network_boxes=inst.network_boxes.detach().float().contiguous(),
        network_image=network_grey(inp["image"]).cpu().contiguous(),
        truth=truth.contiguous(),
        crop_box=None if inp.get("crop_box") is None else [int(v) for v in inp["crop_box"]],
        subject=None if inp.get("subject") is None else str(inp["subject"]),
        slice_index=None if index is None else int(index),
        scores=inst.scores.detach().float().contiguous() if inst.has("scores") else None,
        member_scores=(
            inst.member_scores.detach().float().contiguous() if inst.has("member_scores") else None
        ),
        min_votes=int(min_votes),
    )


def collect_predictions(
    model: Callable[[list[dict]], list[dict]],
    loader: Iterable[list[dict]],
    progress: bool = False,
) -> list[CachedSlice]:
    """Run ``model`` once on every batch of ``loader`` and cache each slice's outputs.

    Args:
        model: an RSRCNN (or anything returning its outputs, e.g. a `LesionEnsemble`);
            a module is put in eval mode; everything runs without gradients. Build it
            with ``MODEL.DCRF.NAME ""``: the raw ``mask_probs`` are the same either way,
            so a CRF inside the model is wasted time.
        loader: batches of inputs with ``gt_mask`` (`build_pwml_test_loader`).
        progress: a bar over the batches (the network pass is the long part of tuning).

    Returns:
        One `CachedSlice` per input, on the CPU.
    """
    from tqdm import tqdm

    is_module = isinstance(model, torch.nn.Module)
    if is_module and getattr(model, "dcrf", None) is not None:
        logger.warning(
            "collect_predictions: the model runs its own dense CRF; its result is "
            "not used here (build it with MODEL.DCRF.NAME '' to save the time)"
        )
    if is_module:
        from detectron2.evaluation import inference_context

        context = inference_context(model)
    else:
        context = nullcontext()
    min_votes = int(getattr(model, "min_votes", 1))  # a LesionEnsemble's vote
    slices = []
    with context, torch.no_grad():
        for batch in tqdm(loader, desc="network pass", disable=not progress):
            outputs = model(batch)
            slices.extend(_cached_slice(inp, out, min_votes) for inp, out in zip(batch, outputs))
    return slices


def _plain(value):
    """JSON stand-in for what dataset records hold besides JSON types (RLE bytes, numpy)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def _file_stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def dataset_digest(dataset_name: str) -> str:
    """sha256 of a registered dataset's records and of the files they name (size, mtime).

    Why: a name such as ``pwml_val`` can be re-registered over other files (another
    split, another conversion); what the network saw is the records (file names,
    sizes, annotations) and the images, so those are what the cache depends on.
    Images are stamped by size and modification time, not hashed: hashing a
    cohort's slices on every run would cost more than the check is worth.
    """
    from detectron2.data import DatasetCatalog

    if dataset_name not in DatasetCatalog.list():
        known = sorted(DatasetCatalog.list())
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise PWMLDataError(
            dataset_name, f"no dataset registered under this name (registered: {shown or 'none'})"
        )
    h = hashlib.sha256()
    for record in DatasetCatalog.get(dataset_name):
        stamps = {
            k: _file_stamp(v)
            for k, v in record.items()
            if k.endswith(("file_name", "_file")) and isinstance(v, str)  # neighbor_file too
        }
        h.update(json.dumps([record, stamps], sort_keys=True, default=_plain).encode())
        h.update(b"\n")
    return h.hexdigest()


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file's content, read in chunks (a 200 MB checkpoint: ~0.15 s, page cache
    warm)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def prediction_cache_key(cfg, dataset_name: str, weights: str) -> dict[str, str]:
    """What the cached outputs depend on: dataset content, weights content, model/input/test config.

    The dataset enters by `dataset_digest` (its records and their files), the
    weights by the sha256 of the file: retraining into the same
    ``model_final.pth`` or re-registering ``pwml_val`` over another split
    invalidates a saved cache even when names, sizes and times agree.

    Args:
        cfg: the config the network runs under; MODEL.DCRF and TEST.CALIBRATED_WITH
            are left out (they do not change the cached outputs).
        dataset_name: a registered dataset.
        weights: the checkpoint; one that is not a local file (a model-zoo URL) is
            keyed by its name.

    Returns:
        ``{"dataset", "dataset_sha256", "weights", "weights_sha256", "config_sha256"}``.
    """
    model_cfg = cfg.clone()
    model_cfg.defrost()
    del model_cfg.MODEL["DCRF"]  # the CRF acts after the cached outputs
    model_cfg.TEST.pop("CALIBRATED_WITH", None)  # a record of an earlier calibration, not an input
    text = "\n".join(model_cfg[k].dump() for k in ("MODEL", "INPUT", "TEST"))
    weights_sha = file_sha256(weights) if weights and os.path.isfile(weights) else ""
    return {
        "dataset": dataset_name,
        "dataset_sha256": dataset_digest(dataset_name),
        "weights": str(weights),
        "weights_sha256": weights_sha,
        "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def save_prediction_cache(
    path: Union[str, Path], slices: list[CachedSlice], key: Optional[dict[str, str]] = None
) -> None:
    """Save ``slices`` (and the ``key`` they were made under) atomically with torch.save.

    Args:
        path: the cache file.
        slices: `collect_predictions`' result.
        key: `prediction_cache_key` of the run, checked by `load_prediction_cache`.
    """
    payload = {
        "version": CACHE_VERSION,
        "key": dict(key or {}),
        "slices": [asdict(s) for s in slices],
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_prediction_cache(
    path: Union[str, Path], key: Optional[dict[str, str]] = None
) -> list[CachedSlice]:
    """Load a cache written by `save_prediction_cache`.

    With ``key``, a cache made under a different key (dataset, weights, config)
    raises PWMLDataError naming the file and the differing fields, rather than
    tuning the CRF on another model's or another split's outputs.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, unsafe content
        why = (str(e).splitlines() or [""])[0]
        raise PWMLDataError(
            path,
            f"cannot read the DCRF prediction cache ({type(e).__name__}: "
            f"{why}); delete it or pass another --cache path",
        ) from e
    if not isinstance(data, dict) or "version" not in data:
        raise PWMLDataError(path, f"not a DCRF prediction cache (version {CACHE_VERSION})")
    if data["version"] != CACHE_VERSION:
        raise PWMLDataError(
            path,
            f"an older cache format (version {data['version']}, this is "
            f"{CACHE_VERSION}); delete it or pass another --cache path",
        )
    if key is not None:
        stored = data.get("key", {})
        differ = sorted(k for k in set(key) | set(stored) if key.get(k) != stored.get(k))
        if differ:
            raise PWMLDataError(
                path,
                f"cache was made for a different {', '.join(differ)}; "
                "delete it or pass another --cache path",
            )
    return [CachedSlice(**s) for s in data["slices"]]
