"""Figures: Fig. 3-style overlays (exact colours, PNG size) and Fig. 2-style box plots."""

import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from rsrcnn_d2.cli import plot_results  # tools/plot_results.py's program
from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.evaluation import PWMLEvaluator
from rsrcnn_d2.visualization import (
    TITLE_BAND,
    boxplot_from_csvs,
    overlay_rgb,
    read_slice_metrics,
    save_overlay_png,
)


def test_overlay_colours_on_a_hand_made_case():
    image = np.arange(9, dtype=np.float32).reshape(3, 3) * 2.0  # 0..16 -> grey 0..255
    pred = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    truth = np.array([[1, 0, 1], [0, 0, 0], [0, 0, 0]], bool)
    rgb = overlay_rgb(image, pred, truth)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 3, 3)
    assert tuple(rgb[0, 0]) == (0, 255, 0)  # true positive: green
    assert tuple(rgb[0, 1]) == (255, 0, 0)  # false positive: red
    assert tuple(rgb[0, 2]) == (0, 0, 255)  # false negative: blue
    grey = np.round(np.arange(9) * 255 / 8).astype(np.uint8).reshape(3, 3)
    for r, c in [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]:
        assert tuple(rgb[r, c]) == (grey[r, c],) * 3  # the slice, in grey


def test_overlay_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="truth"):
        overlay_rgb(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2-D"):
        overlay_rgb(np.zeros((3, 4, 4)), np.zeros((4, 4)), np.zeros((4, 4)))


def test_overlay_png_has_the_image_size_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    image, pred, truth = (
        rng.random((21, 34)),
        rng.random((21, 34)) > 0.7,
        rng.random((21, 34)) > 0.7,
    )
    path = save_overlay_png(tmp_path / "sub" / "a.png", image, pred, truth)
    png = mpimg.imread(path)
    assert png.shape[:2] == (21, 34)
    assert np.array_equal(
        np.round(png[..., :3] * 255).astype(np.uint8), overlay_rgb(image, pred, truth)
    )

    titled = mpimg.imread(
        save_overlay_png(tmp_path / "b.png", image, pred, truth, title="slice 3", scale=3)
    )
    assert titled.shape[:2] == (21 * 3 + TITLE_BAND, 34 * 3)
    big = np.repeat(np.repeat(overlay_rgb(image, pred, truth), 3, 0), 3, 1)
    assert np.array_equal(np.round(titled[TITLE_BAND:, :, :3] * 255).astype(np.uint8), big)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # atomic write


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def test_boxplot_from_two_csvs(tmp_path):
    header = ["subject", "file_name", "dice", "sensitivity"]
    a = _write_csv(
        tmp_path / "a.csv",
        header,
        [["s1", "x0", 0.5, 0.6], ["s1", "x1", 0.7, ""], ["s2", "x2", 0.0, 0.0]],
    )
    b = _write_csv(tmp_path / "b.csv", header, [["s1", "x0", 0.8, 0.9], ["s2", "x2", 0.6, 0.5]])
    values = read_slice_metrics(a, ("dice", "sensitivity"))
    assert values["dice"].tolist() == [0.5, 0.7, 0.0]
    assert values["sensitivity"].tolist() == [0.6, 0.0]  # the empty (undefined) cell is left out
    out = boxplot_from_csvs({"D": a, "E": b}, tmp_path / "fig" / "box.png")
    png = mpimg.imread(out)
    assert out.stat().st_size > 0 and png.shape[0] > 100 and png.shape[1] > 100
    assert png[..., :3].std() > 0  # something was drawn


def test_boxplot_reads_the_evaluators_csv(tmp_path):
    truth = np.zeros((8, 8), bool)
    truth[2:4, 2:4] = True
    pred = np.zeros((8, 8), bool)
    pred[2:4, 2:3] = True
    ev = PWMLEvaluator(output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process(
        [
            {
                "file_name": "a/0.npy",
                "image_id": 0,
                "subject": "a",
                "slice_index": 0,
                "gt_mask": truth,
            }
        ],
        [{"lesion_mask": pred}],
    )
    ev.evaluate()
    csv_path = tmp_path / "pwml_slices.csv"
    assert read_slice_metrics(csv_path, ("dice",))["dice"].tolist() == pytest.approx([2 / 3])
    assert boxplot_from_csvs({"E": csv_path}, tmp_path / "e.png").exists()


def test_bad_csv_names_the_file(tmp_path):
    bad = _write_csv(tmp_path / "bad.csv", ["subject", "dice"], [["s1", 0.5]])
    good = _write_csv(tmp_path / "good.csv", ["dice", "sensitivity"], [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"bad\.csv.*'sensitivity'"):
        boxplot_from_csvs({"A": good, "B": bad}, tmp_path / "x.png")
    junk = _write_csv(tmp_path / "junk.csv", ["dice", "sensitivity"], [["n/a", 0.5]])
    with pytest.raises(ValueError, match=r"junk\.csv: line 2"):
        read_slice_metrics(junk, ("dice",))
    with pytest.raises(PWMLDataError, match="missing.csv: no such per-slice CSV"):
        read_slice_metrics(tmp_path / "missing.csv", ("dice",))
    assert not (tmp_path / "x.png").exists()


def test_plot_results_cli(tmp_path, capsys):
    header = ["dice", "sensitivity"]
    a = _write_csv(tmp_path / "a.csv", header, [[0.5, 0.6], [0.7, 0.8]])
    b = _write_csv(tmp_path / "b.csv", header, [[0.6, 0.6]])
    out = tmp_path / "fig2.png"
    assert plot_results.main(["--csv", f"C={a}", "--csv", f"E={b}", "--output", str(out)]) == 0
    assert out.stat().st_size > 0
    assert plot_results.main(["--csv", str(a), "--output", str(out)]) == 2
    assert "LABEL=PATH" in capsys.readouterr().err
    bad = _write_csv(tmp_path / "bad.csv", ["dice"], [[0.5]])
    assert plot_results.main(["--csv", f"X={bad}", "--output", str(out)]) == 2
    assert "bad.csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    "column, cells, bad, line, valid",
    [
        ("dice", [0.5, -5, 42], "-5", 3, "[0, 1]"),
        ("dice", [0.5, 1.0, 42], "42", 4, "[0, 1]"),
        ("sensitivity", [1.5], "1.5", 2, "[0, 1]"),
        ("specificity", [-0.001], "-0.001", 2, "[0, 1]"),
        ("hd", [3.0, -1.0], "-1.0", 3, "[0, inf)"),
        ("hd95_mm", ["inf"], "inf", 2, "[0, inf)"),
    ],
)
def test_values_outside_a_metrics_range_are_refused(tmp_path, column, cells, bad, line, valid):
    path = _write_csv(
        tmp_path / "odd.csv", ["file_name", column], [[f"s{i}.npy", v] for i, v in enumerate(cells)]
    )
    message = (
        rf"odd\.csv: line {line} \(s{line - 2}\.npy\): column '{column}' holds {bad}, "
        rf"outside its valid range {re.escape(valid)}"
    )
    with pytest.raises(PWMLDataError, match=message):
        read_slice_metrics(path, (column,))
    with pytest.raises(PWMLDataError, match=message):
        boxplot_from_csvs({"A": path}, tmp_path / "x.png", metrics=(column,))
    assert not (tmp_path / "x.png").exists()


def test_undefined_values_are_left_out_and_counted(tmp_path, monkeypatch):
    a = _write_csv(
        tmp_path / "a.csv",
        ["dice", "sensitivity"],
        [[0.5, 0.6], [0.7, ""], ["nan", "NaN"], [0.2, 0.4]],
    )
    notes, figures = [], []
    from rsrcnn_d2.visualization import boxplots

    real_save = boxplots.save_figure_png
    monkeypatch.setattr(
        boxplots, "save_figure_png", lambda fig, path: figures.append(fig) or real_save(fig, path)
    )
    boxplot_from_csvs({"D": a}, tmp_path / "box.png", log=notes.append)
    assert notes == [
        f"D ({a}): dice: 1 of 4 slices n/a (empty or NaN), left out",
        f"D ({a}): sensitivity: 2 of 4 slices n/a (empty or NaN), left out",
    ]
    ticks = [[t.get_text() for t in ax.get_xticklabels()] for ax in figures[0].axes]
    assert ticks == [["D\n(n=3, 1 n/a)"], ["D\n(n=2, 2 n/a)"]]


def test_plot_results_out_of_range_is_one_line_exit_2(tmp_path, capsys):
    bad = _write_csv(tmp_path / "bad.csv", ["dice", "sensitivity"], [[0.5, 0.5], [-5, 0.5]])
    out = tmp_path / "fig.png"
    assert plot_results.main(["--csv", f"X={bad}", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"plot_results: error: {bad}: line 3: column 'dice' holds -5, "
        "outside its valid range [0, 1]\n"
    )
    assert not out.exists()


def test_plot_results_output_and_input_errors_are_one_line_exit_2(tmp_path, capsys):
    good = _write_csv(tmp_path / "good.csv", ["dice", "sensitivity"], [[0.5, 0.5]])
    folder = tmp_path / "figs"
    folder.mkdir()
    assert plot_results.main(["--csv", f"A={good}", "--output", str(folder)]) == 2
    assert capsys.readouterr().err == (
        f"plot_results: error: {folder}: is a directory; --output takes the PNG file to write\n"
    )
    assert list(folder.iterdir()) == []

    missing = tmp_path / "nope.csv"
    assert plot_results.main(["--csv", f"A={missing}", "--output", str(folder / "f.png")]) == 2
    assert capsys.readouterr().err == f"plot_results: error: {missing}: no such per-slice CSV\n"

    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("mine\n")
    target = not_a_folder / "f.png"  # its folder cannot be made: a file is in the way
    assert plot_results.main(["--csv", f"A={good}", "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plot_results: error: {target}: cannot write the figure (")
    assert err.count("\n") == 1 and not_a_folder.read_text() == "mine\n"


def test_plot_results_prints_what_it_left_out(tmp_path, capsys):
    a = _write_csv(tmp_path / "a.csv", ["dice", "sensitivity"], [[0.5, ""], [0.7, 0.8]])
    out = tmp_path / "fig.png"
    assert plot_results.main(["--csv", f"E={a}", "--output", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"E ({a}): sensitivity: 1 of 2 slices n/a (empty or NaN), left out\nwrote {out}\n"
    )


def test_csvs_of_different_slice_selections_are_refused_in_one_figure(tmp_path, capsys):
    """A whole-volume CSV (rows without a true lesion) beside a lesion-slice CSV would draw one
    model with a median Dice of 1 (earlier releases' empty slices) and 0 without a word."""
    header = ["truth_pixels", "pred_pixels", "dice", "sensitivity"]
    # earlier releases wrote Dice 1 for the two slices empty in both: not a score, left out
    whole = _write_csv(
        tmp_path / "whole.csv", header, [[4, 0, 0.0, 0.0], [0, 0, 1.0, ""], [0, 0, 1.0, ""]]
    )
    lesion = _write_csv(tmp_path / "lesion.csv", header, [[4, 0, 0.0, 0.0]])
    from rsrcnn_d2.visualization.boxplots import slice_selection

    assert slice_selection(whole) == "whole volumes"
    assert slice_selection(lesion) == "lesion slices only"
    assert read_slice_metrics(whole, ("dice",))["dice"].tolist() == [0.0]
    out = tmp_path / "mixed.png"
    args = ["--csv", f"W={whole}", "--csv", f"L={lesion}", "--output", str(out)]
    assert plot_results.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lesion.csv: scored lesion slices only, but" in err
    assert "--allow-mixed-selections" in err and not out.exists()
    assert plot_results.main([*args, "--allow-mixed-selections"]) == 0 and out.is_file()
