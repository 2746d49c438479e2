"""The comparison figures of a trained set of rows: Fig. 2-style box plots, Fig. 3-style overlays.

Box plots: per-slice Dice and sensitivity of each row's test evaluation
(its ``pwml_slices.csv``), rows side by side. Overlays: the same test slices
(chosen by lesion load, from small to large, one per subject where possible)
predicted by each row at its operating point, head crops.
Used by the ablation driver (``--figures``) and the demo.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

__all__ = ["pick_slices", "predict_slices", "comparison_figures"]

ZOOM_MARGIN = 24  # pixels around the slice's true lesions shown in the overlays


def _window(truth: np.ndarray, shape, margin: int):
    """The slices of a square window around the true lesions, inside the image."""
    ys, xs = np.nonzero(truth)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) // 2 + margin
    y0, x0 = max(0, cy - half), max(0, cx - half)
    return slice(y0, min(shape[0], cy + half + 1)), slice(x0, min(shape[1], cx + half + 1))


def pick_slices(records: Sequence[dict], count: int = 4) -> list[dict]:
    """``count`` lesion slices spread over the lesion-load range, distinct subjects first."""
    from ..data.coco import annotations_mask

    def load(r):
        return int(
            annotations_mask(r["annotations"], r["height"], r["width"], r["file_name"]).sum()
        )

    ranked = sorted((r for r in records if r.get("annotations")), key=load)
    if not ranked:
        return []
    picks, subjects = [], set()
    for q in np.linspace(0.1, 0.95, count):
        start = int(q * (len(ranked) - 1))
        # the nearest slice at or above this quantile from a subject not shown yet, else any
        order = ranked[start:] + ranked[:start][::-1]
        choice = next((r for r in order if r.get("subject") not in subjects), order[0])
        if choice in picks:
            continue
        picks.append(choice)
        subjects.add(choice.get("subject"))
    return picks


def predict_slices(config, opts, weights, records) -> list[np.ndarray]:
    """Each record's predicted lesion mask (H, W) from one row at its config's operating point."""
    from ..config import get_rsrcnn_cfg
    from ..data.mapper import PWMLDatasetMapper
    from ..inference.predictor import LesionPredictor

    cfg = get_rsrcnn_cfg(str(config), [*map(str, opts), "MODEL.DEVICE", "cpu"])
    model = LesionPredictor.from_config(cfg, weights=[str(weights)], tta=cfg.TEST.FLIP_TTA).model
    mapper = PWMLDatasetMapper(cfg, False)
    masks = []
    with torch.no_grad():
        for record in records:
            out = model([mapper(record)])[0]
            masks.append(out["lesion_mask"].cpu().numpy().astype(bool))
    return masks


def comparison_figures(
    dataset: str,
    rows: Mapping[str, tuple[str, Sequence[str], str, str]],
    out_dir: Path,
    count: int = 4,
    log=print,
    overlay_labels: Optional[Sequence[str]] = None,
) -> dict[str, Path]:
    """Write ``boxplots.png`` (every row) and ``overlays.png`` (``overlay_labels``, default
    every row) into ``out_dir``; {name: path}.

    ``rows``: label -> (config, opts, weights, per-slice CSV of its test evaluation).
    """
    from detectron2.data import DatasetCatalog

    from ..data.coco import annotations_mask
    from ..data.fileio import read_slice
    from ..evaluation.metrics import dice
    from ..visualization.boxplots import boxplot_from_csvs
    from ..visualization.comparison import save_comparison_png

    out_dir = Path(out_dir)
    written = {
        "boxplots": boxplot_from_csvs(
            {label: row[3] for label, row in rows.items()},
            out_dir / "boxplots.png",
            title="held-out test slices",
            log=log,
        )
    }
    records = pick_slices(DatasetCatalog.get(dataset), count)
    if not records:
        return written
    images, truths, titles, windows = [], [], [], []
    for r in records:
        image = read_slice(r["file_name"])
        truth = annotations_mask(r["annotations"], r["height"], r["width"], r["file_name"])
        windows.append(_window(truth, image.shape, ZOOM_MARGIN))
        images.append(image[windows[-1]])
        truths.append(truth[windows[-1]])
        titles.append(f"{r.get('subject', '')} slice {r.get('slice_index', '')}")
    predictions, dice_values = {}, {}
    for label in overlay_labels or list(rows):
        config, opts, weights, _ = rows[label]
        log(f"figures: predicting {len(records)} slices with {label}")
        masks = predict_slices(config, opts, weights, records)
        predictions[label] = [m[w] for m, w in zip(masks, windows)]
        dice_values[label] = [
            dice(m, annotations_mask(r["annotations"], r["height"], r["width"], r["file_name"]))
            for m, r in zip(masks, records)
        ]
    written["overlays"] = save_comparison_png(
        out_dir / "overlays.png",
        images,
        truths,
        predictions,
        titles,
        panel_inches=2.6,
        dice_values=dice_values,
    )
    return written
