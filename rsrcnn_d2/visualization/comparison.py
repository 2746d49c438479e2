"""The same slices under several rows side by side (the paper's Fig. 3 layout).

One row of panels per slice, one column per model; each panel is `overlay_rgb`
(true positives green, false positives red, false negatives blue) of the head
crop, with the slice's Dice in its title, so the eye compares one lesion across
models rather than across figures.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .overlays import overlay_rgb, save_figure_png

__all__ = ["save_comparison_png"]


def save_comparison_png(
    path: Union[str, Path],
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Mapping[str, Sequence[np.ndarray]],
    slice_titles: Sequence[str],
    panel_inches: float = 2.2,
    dice_values: Optional[Mapping[str, Sequence[float]]] = None,
) -> Path:
    """Write a grid: slices down, ``predictions`` (label -> one mask per slice) across.

    Args:
        path: the PNG file to write.
        images: one (H, W) slice per row.
        truths: one (H, W) reference mask per row.
        predictions: label -> one (H, W) mask per row; one column per label, in order.
            Every image, truth and mask of one slice must have the same (H, W).
        slice_titles: one row label per slice.
        panel_inches: side of one panel.
        dice_values: label -> one Dice per row, shown instead of the Dice of what the
            panel shows (e.g. the whole slice's, when the panels show a zoomed window).

    Returns:
        ``path`` as a Path. ValueError when there is no model or slice, or the counts
        differ. A panel empty in truth and prediction shows "Dice n/a", never 1.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..evaluation.metrics import dice

    labels = list(predictions)
    if not labels or not images:
        raise ValueError("comparison figure: no model or no slice to show")
    if len({len(images), len(truths), len(slice_titles)}) != 1 or any(
        len(p) != len(images) for p in predictions.values()
    ):
        raise ValueError("comparison figure: one image, truth, title and mask per slice needed")
    missing = [label for label in labels if dice_values is not None and label not in dice_values]
    if missing or (dice_values and any(len(dice_values[k]) != len(images) for k in labels)):
        raise ValueError(f"comparison figure: one Dice per slice needed for {missing or labels}")
    rows, cols = len(images), len(labels)
    fig = Figure(figsize=(panel_inches * cols, panel_inches * rows + 0.3), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, (image, truth) in enumerate(zip(images, truths)):
        for j, label in enumerate(labels):
            pred = np.asarray(predictions[label][i], bool)
            ax = axes[i][j]
            ax.imshow(overlay_rgb(image, pred, truth), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            name = " ".join(label.split())
            value = dice_values[label][i] if dice_values else dice(pred, np.asarray(truth, bool))
            shown = "n/a" if np.isnan(value) else f"{value:.2f}"  # empty in both: no Dice
            ax.set_title(f"{name}: Dice {shown}", fontsize=8)
            if j == 0:
                ax.set_ylabel(slice_titles[i], fontsize=8)
    fig.suptitle(
        "green: found, red: false positive, blue: missed (Dice: the whole slice)"
        if dice_values
        else "green: found, red: false positive, blue: missed",
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure_png(fig, path)
