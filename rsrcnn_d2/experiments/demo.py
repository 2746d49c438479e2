"""The demo's steps as functions (`run_demo`), the paper's protocol in small: one Mask R-CNN
(row B) pre-trained on a source cohort the demo cohort never sees, then row B and our
recommended row fine-tuned from it on the same budget, each calibrated on pwml_val and
evaluated on pwml_test, one held-out volume predicted, and OUT/report.md with the figures.
The program and its step list: `rsrcnn_d2.cli.demo` (tools/demo.py, ``rsrcnn-demo``).
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.fileio import atomic_write_bytes
from ..model_zoo import row_config
from .cohort import anatomy_cohort
from .results import lesion3d_results, pooled_results
from .run_health import HEALTH_NOTE, health_cell, read_health
from .runner import DatasetRoot, calibrate, evaluate_checkpoint, step, train, trained_weights

__all__ = ["ROWS", "run_demo", "write_report", "write_overlays"]

# the rows compared, in the report's order: model-zoo row -> label
ROWS = {"B": "B  Mask R-CNN", "E": "E  RS R-CNN"}
# the recommended row (README, "Which row to use"): it segments the held-out volume
PREDICT_ROW = "E"


def _train_row(out: Path, row: str, iters: int, seed: int, roots, weights: Path) -> dict:
    """Fine-tune one row from ``weights``, calibrate and evaluate it; its config, weights,
    test CSV and health."""
    train_dir = out / "train" / row
    label = ROWS[row]
    opts = ["SOLVER.MAX_ITER", iters, "DATASETS.TEST", "('pwml_test',)", "SEED", seed]
    opts += ["MODEL.WEIGHTS", str(weights)]
    with step(f"4/8 fine-tuning {label}"):
        train(row_config(row), train_dir, opts, roots, resume=False)  # retrained every time
    weights = trained_weights(train_dir)  # model_best.pth: the lowest validation loss
    point = calibrate(  # None: no point beat an empty prediction; the row's own point is used
        row_config(row),
        weights,
        train_dir / "operating_point.yaml",
        "pwml_val",
        seed=seed,
        trials=(3, 6),
        step_name=f"5/8 operating point of {label} (score threshold + CRF on pwml_val)",
    )
    point = point or row_config(row)
    evaluate_checkpoint(
        point,
        weights,
        train_dir / "calibrated",
        step_name=f"6/8 {label} at its operating point on pwml_test",
    )
    return {
        "config": point,
        "weights": weights,
        "csv": train_dir / "calibrated" / "inference" / "pwml_test" / "pwml_slices.csv",
        "health": read_health(train_dir),
    }


def _pretrained(out: Path, subjects: int, iters: int) -> Path:
    """Step 1: row B pre-trained on a source cohort of ``subjects`` (generator seeds from
    `SOURCE_SEED`, which no evaluation cohort uses) for ``iters`` iterations; reused when a
    finished one was asked the same (`rsrcnn_d2.experiments.pretrain`)."""
    from .pretrain import SOURCE_SEED, pretrain

    with step(f"1/8 pre-training row B on a source cohort ({subjects} subjects, {iters} its)"):
        return pretrain(out / "pretrain", subjects=subjects, seed=SOURCE_SEED, iters=iters)


def _make_cohort(cohort: Path, out: Path, seed: int, subjects: int) -> DatasetRoot:
    """Steps 2-3: the anatomy-based cohort converted into OUT/pwml and registered as pwml_*
    here (the training children get it as --dataset-root; `anatomy_cohort`)."""
    with step("2-3/8 synthetic cohort and its conversion"):
        root, summary = anatomy_cohort(cohort, out / "pwml", subjects, seed)
        print(
            f"{summary['num_subjects']} subjects in {cohort}: {summary['num_images']} slices, "
            f"{summary['num_annotations']} lesions -> {root.folder}"
        )
    return root


def _predict_volume(volume: Path, output: Path, config, weights) -> None:
    """Step 7: the recommended row segments one held-out volume, as rsrcnn-predict would."""
    from ..config import fall_back_to_cpu, get_rsrcnn_cfg
    from ..inference.calibration import log_inference
    from ..inference.inputs import find_inputs
    from ..inference.predictor import LesionPredictor, predict_inputs

    cfg = get_rsrcnn_cfg(str(config), ["MODEL.WEIGHTS", str(weights)])
    fall_back_to_cpu(cfg)
    cfg.freeze()
    predictor = LesionPredictor.from_config(cfg)
    log_inference(cfg, predictor.inference)
    report = predict_inputs(
        predictor, find_inputs(volume), output, save_prob=True, overlays=True, progress=False,
        log=print,
    )  # fmt: skip
    if report.failures:
        raise RuntimeError("; ".join(message for _, message in report.failures))


def run_demo(
    out,
    subjects: int = 14,
    iters: int = 180,
    seed: int = 0,
    pretrain_subjects: int = 10,
    pretrain_iters: int = 150,
    pretrained: Optional[Path] = None,
) -> Path:
    """Steps 1-8 of the module doc into ``out``; the report's path.

    Args:
        out: the output folder.
        subjects: the demo cohort's size.
        iters: fine-tuning iterations per row.
        seed: the demo cohort's generator and split seed, and the trainings' seed.
        pretrain_subjects, pretrain_iters: the source cohort's size and the pre-training's
            length (step 1).
        pretrained: a checkpoint to fine-tune from instead of step 1 (`rsrcnn-pretrain`'s,
            or detectron2's COCO Mask R-CNN).
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if pretrained is None:
        weights = _pretrained(out, pretrain_subjects, pretrain_iters)
        start = (
            f"row B pre-trained for {pretrain_iters} iterations on {pretrain_subjects} source "
            "subjects the demo cohort does not share"
        )
    else:
        weights = Path(pretrained).resolve()
        start = f"`{weights}`"
    # OUT/cohort, not OUT/raw: a phantom cohort an older demo left in OUT/raw is never mixed in
    cohort = out / "cohort"
    root = _make_cohort(cohort, out, seed, subjects)
    rows = {row: _train_row(out, row, iters, seed, [root], weights) for row in ROWS}

    test_subject = json.loads((out / "pwml" / "splits.json").read_text())["test"][0]
    volume = cohort / "imagesTr" / f"{test_subject}_0000.nii.gz"
    with step(f"7/8 prediction of a held-out volume with {ROWS[PREDICT_ROW]}"):
        best = rows[PREDICT_ROW]
        _predict_volume(volume, out / "predict", best["config"], best["weights"])
    print("\n=== 8/8 figures and report", flush=True)
    from .figures import comparison_figures

    figures = comparison_figures(
        "pwml_test",
        {ROWS[r]: (v["config"], [], v["weights"], v["csv"]) for r, v in rows.items()},
        out / "figures",
    )
    return write_report(
        out,
        {ROWS[r]: v["csv"] for r, v in rows.items()},
        figures,
        volume,
        iters,
        healths={ROWS[r]: v["health"] for r, v in rows.items()},
        start=start,
    )


def _row_line(label: str, csv: Path, health=None) -> str:
    r = pooled_results([csv])  # the evaluator's figures, from its per-slice CSV
    subjects_csv = csv.with_name("pwml_subjects.csv")
    d3 = lesion3d_results(subjects_csv) if subjects_csv.exists() else {}
    nan = float("nan")
    return (
        f"| {label} | {d3.get('pwml_headline/case_dice', nan):.4f} | "
        f"{d3.get('pwml_headline/lesion_f1_3d', nan):.4f} | "
        f"{r['pwml_strict/Dice']:.4f} | {r['pwml_strict/Sens']:.4f} | "
        f"{r['pwml_strict/lesion_F1']:.4f} | "
        f"{r['pwml_reference/Dice']:.4f} | {100 * r['pwml_reference/skipped_fraction']:.1f} % | "
        f"{health_cell(health)} |"
    )


def write_report(
    out: Path,
    csvs: Mapping[str, Path],
    figures: Mapping[str, Path],
    volume: Path,
    iters: int = 0,
    healths: Optional[Mapping[str, dict]] = None,
    start: str = "",
) -> Path:
    """OUT/report.md: each row's figures under both protocols and its training health, the
    comparison figures and the overlays of the predicted volume; its path. ``start``: what
    every row was fine-tuned from ("": trained from scratch)."""
    healths = healths or {}
    first = next(iter(csvs.values()))
    n = int(pooled_results([first])["pwml_strict/n_slices"])
    table = [
        "| row | **Dice per case (3-D)** | **lesion F1 (3-D)** | strict Dice | "
        "strict sensitivity | lesion F1 (2-D) | reference Dice | reference: slices skipped | "
        "training health |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row_line(label, csv, healths.get(label)) for label, csv in csvs.items()),
    ]
    overlays = write_overlays(out, volume)
    budget = f"{iters} iterations each, " if iters else ""
    origin = f"fine-tuned from {start}, " if start else ""
    lines = [
        "# RS R-CNN demo report",
        "",
        "Anatomy-based synthetic cohort (datasets/README.md, section 7), the CPU-sized rows "
        f"({origin}{budget}same seed), each at its operating point calibrated on the validation "
        f"subjects, scored on the held-out test subjects ({n} lesion slices). Read first: "
        "Dice per case (each test subject's lesion slices as one 3-D volume; a subject empty "
        "in truth and prediction would be left out, not scored 1) and lesion-wise F1 of 3-D "
        "lesions. Then, for comparison with the paper, its per-slice protocols: strict (every "
        "lesion slice counts, an empty prediction scores 0) and the reference implementation's "
        "(empty predictions skipped). One seed on a small cohort: docs/RESULTS.md has the "
        "ablation over seeds with intervals.",
        "",
        *table,
        "",
        HEALTH_NOTE + ".",
        "",
        "Per-slice values: "
        + ", ".join(f"`{Path(c).relative_to(out)}`" for c in csvs.values())
        + ".",
    ]
    for name, title in (
        ("boxplots", "per-slice Dice and sensitivity, rows side by side"),
        ("overlays", "the same test slices under each row (head crops)"),
    ):
        if name in figures:
            lines += ["", f"![{title}]({Path(figures[name]).relative_to(out)})"]
    lines += [
        "",
        f"Prediction of `{volume.name}`: `predict/` (mask and probability NIfTI with the "
        "input's affine).",
    ]
    if overlays:
        lines += [
            "",
            "Lesion slices of that held-out subject, head crops enlarged 3x: green = found, "
            "red = false positive, blue = missed.",
            "",
            *[f"![{path.stem}]({path.relative_to(out)})" for path in overlays],
        ]
    report = out / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    print("\n" + "\n".join(table))
    print(f"\nreport: {report}")
    return report


def write_overlays(out: Path, volume: Path, count: int = 3):
    """Ground truth vs prediction on ``count`` lesion slices of the predicted volume (head crops).

    Returns the PNG paths; none when the volume, its mask or the prediction is missing.
    """
    import nibabel as nib

    from ..data.head_crop import head_box
    from ..data.nifti import read_nifti_pair, volume_slice
    from ..visualization.overlays import save_overlay_png

    case = volume.name.replace("_0000.nii.gz", "")
    truth_path = volume.parent.parent / "labelsTr" / f"{case}.nii.gz"
    predicted = [out / "predict" / f"{case}.nii.gz"]  # rsrcnn-predict's (nnU-Net's) name
    if not (volume.exists() and truth_path.exists() and predicted[0].exists()):
        return []
    pair = read_nifti_pair(volume, truth_path)
    pred = np.asarray(nib.as_closest_canonical(nib.load(str(predicted[0]))).dataobj)
    lesion_slices = np.flatnonzero(pair.mask.any(axis=(0, 1)))
    picks = lesion_slices[
        np.linspace(0, len(lesion_slices) - 1, min(count, len(lesion_slices))).astype(int)
    ]
    paths = []
    for z in picks:
        image = volume_slice(pair.image, 2, z).astype(np.float32)
        x0, y0, x1, y1 = head_box(image)
        crop = (slice(y0, y1), slice(x0, x1))
        path = out / "overlays" / f"{case}_axial_{z:03d}.png"
        save_overlay_png(
            path,
            image[crop],
            volume_slice(pred, 2, z)[crop],
            volume_slice(pair.mask, 2, z)[crop],
            title=f"{case}, axial slice {z}",
            scale=3,
        )
        paths.append(path)
    return paths
