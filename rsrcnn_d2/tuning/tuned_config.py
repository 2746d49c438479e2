"""Write a tuned operating point (score threshold, CRF) as a config inheriting the model's.

The file is ``_BASE_: <input config>`` plus the tuned ``MODEL`` keys and the ``TEST``
keys of the inference they were calibrated with (flip TTA, votes, and the
``TEST.CALIBRATED_WITH`` record), so it is a complete config: ``train_net.py
--config-file tuned.yaml``, rsrcnn-predict and CV prediction get the same model with
the tuned point and the calibrated inference, and a diff against the input config is
exactly what tuning changed.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

import yaml

from ..data.fileio import atomic_write_bytes
from .dcrf_search import PARAM_KEYS, normalize_params

__all__ = ["write_tuned_config", "base_reference"]

CRF_NAME = "DenseCRFPostprocessor"


def base_reference(base_config: Union[str, Path]) -> str:
    """``base_config`` as the ``_BASE_`` of a tuned config: its absolute path.

    detectron2 resolves a relative ``_BASE_`` against the folder of the file naming
    it, so a tuned config copied or moved elsewhere (to share it, beside a model in
    another folder) would lose its base; an absolute path works from any folder.
    """
    return os.path.abspath(base_config)


def write_tuned_config(
    path: Union[str, Path],
    base_config: Union[str, Path],
    params: Optional[Mapping[str, float]],
    comments: Sequence[str] = (),
    score_threshold: Optional[float] = None,
    inference: Optional[Mapping[str, Mapping]] = None,
) -> Path:
    """Atomically write ``_BASE_: base_config`` + what was tuned.

    Args:
        path: the tuned config to write.
        base_config: the config tuned; it must exist and becomes the absolute ``_BASE_``.
        params: l1, l2, c1, e1 (None: the CRF was not tuned); they become MODEL.DCRF
            with the CRF switched on.
        comments: become ``#`` lines at the top (what was tuned on, the figures).
        score_threshold: becomes MODEL.ROI_HEADS.SCORE_THRESH_TEST (None: not tuned).
        inference: `rsrcnn_d2.inference.calibration.calibration_record`; adds the TEST
            keys of the inference the point was calibrated with.

    Returns:
        ``path`` as a Path. FileNotFoundError when ``base_config`` does not exist.
    """
    path = Path(path)
    if not os.path.isfile(base_config):
        raise FileNotFoundError(f"base config {base_config} does not exist")
    model = {}
    if score_threshold is not None:
        model["ROI_HEADS"] = {"SCORE_THRESH_TEST": float(score_threshold)}
    if params is not None:
        p = normalize_params(params)
        model["DCRF"] = {"NAME": CRF_NAME, **{key: p[k] for k, key in PARAM_KEYS.items()}}
    body = yaml.safe_dump(
        {"_BASE_": base_reference(base_config), "MODEL": model, **dict(inference or {})},
        sort_keys=False,
        default_flow_style=False,
    )
    header = "".join(f"# {line}\n" for c in comments for line in str(c).splitlines())
    return atomic_write_bytes(path, (header + body).encode())
