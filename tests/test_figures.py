"""Comparison figures: slice choice and the Fig. 3-style grid."""

import numpy as np
import pytest

from rsrcnn_d2.experiments.figures import pick_slices
from rsrcnn_d2.visualization.comparison import save_comparison_png


def _record(subject, k, pixels):
    mask = np.zeros((8, 8), np.uint8)
    mask.flat[:pixels] = 1
    from rsrcnn_d2.data.coco import lesion_annotations

    return {
        "file_name": f"{subject}/{k}.npy",
        "subject": subject,
        "slice_index": k,
        "height": 8,
        "width": 8,
        "annotations": [dict(a, bbox_mode=1) for a in lesion_annotations(mask)],
    }


def test_slices_spread_over_the_lesion_load_and_subjects():
    records = [_record("a", k, k + 1) for k in range(6)] + [_record("b", 9, 3)]
    records.append({**_record("c", 0, 0), "annotations": []})  # lesion-free: never shown
    picks = pick_slices(records, count=2)
    assert [(r["subject"], r["slice_index"]) for r in picks] == [("a", 0), ("b", 9)]
    assert len({r["subject"] for r in pick_slices(records, count=4)}) == 2
    assert pick_slices([{**_record("c", 0, 0), "annotations": []}]) == []


def test_comparison_grid_is_a_png_with_one_panel_per_slice_and_row(tmp_path):
    from PIL import Image

    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    truth = np.zeros((10, 10), bool)
    truth[2:4, 2:4] = True
    path = save_comparison_png(
        tmp_path / "grid.png",
        [image, image],
        [truth, truth],
        {"B": [truth, np.zeros_like(truth)], "E": [truth, truth]},
        ["s 1", "s 2"],
        panel_inches=1.0,
    )
    width, height = Image.open(path).size
    assert (width, height) == (200, 230)  # 2 x 2 panels of 1 inch at 100 dpi + the title band
    with pytest.raises(ValueError, match="one image, truth, title and mask per slice"):
        save_comparison_png(tmp_path / "x.png", [image], [truth], {"B": []}, ["s"])


def test_comparison_titles_say_n_a_for_an_empty_slice_and_need_every_rows_dice(
    tmp_path, monkeypatch
):
    from rsrcnn_d2.visualization import comparison

    figures = []
    monkeypatch.setattr(comparison, "save_figure_png", lambda fig, path: figures.append(fig))
    image, empty = np.zeros((6, 6), np.float32), np.zeros((6, 6), bool)
    truth = empty.copy()
    truth[1, 1] = True
    save_comparison_png(
        tmp_path / "g.png", [image, image], [truth, empty], {"B": [truth, empty]}, ["a", "b"]
    )
    titles = [ax.get_title() for ax in figures[0].axes]
    assert titles == ["B: Dice 1.00", "B: Dice n/a"]  # empty in truth and prediction: no Dice
    with pytest.raises(ValueError, match=r"one Dice per slice needed for \['E'\]"):
        save_comparison_png(
            tmp_path / "g.png",
            [image],
            [truth],
            {"B": [truth], "E": [truth]},
            ["a"],
            dice_values={"B": [0.5]},
        )
