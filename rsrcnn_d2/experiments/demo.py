"""The main job end to end on an embedded synthetic default, on CPU.

Each step is one of the project's ordinary tools, run as a user would run it:

1. tools/make_synthetic_cohort.py  anatomy-based synthetic NIfTI cohort -> OUT/cohort
2. tools/prepare_pwml.py           COCO slices, subject splits    -> OUT/pwml
3. tools/train_net.py              train row E (CPU twin), evaluate on pwml_test
                                   with both protocols            -> OUT/train
4. tools/tune_operating_point.py  score threshold + DCRF calibrated on pwml_val
                                   -> OUT/train/operating_point.yaml
5. tools/predict.py                segment one held-out volume    -> OUT/predict
6. tools/plot_results.py + report  box plot, real-anatomy overlays, OUT/report.md

Re-running is safe: the cohort is reused, the conversion replaced, the model retrained.
The program behind ``tools/demo.py`` (also ``python -m rsrcnn_d2.experiments.demo``).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..data.fileio import atomic_write_bytes
from ..model_zoo import ROW_CONFIGS, row_config
from .results import pooled_results
from .runner import (
    COHORT_MODULE,
    PLOT_MODULE,
    PREDICT_MODULE,
    PREPARE_MODULE,
    TRAIN_NET_MODULE,
    TUNE_MODULE,
    run_tool,
    trained_weights,
)

__all__ = ["CONFIG", "CONFIG_NAME", "main", "write_report", "write_overlays"]

CONFIG_NAME = ROW_CONFIGS["tiny"]["E"]
CONFIG = row_config("E")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--subjects", type=int, default=14)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DETECTRON2_DATASETS=str(out))  # registers OUT/pwml as pwml_*
    train_dir = out / "train"

    # every subject with lesions: the converter's lesion-slice mode (the paper's) refuses
    # lesion-free ones
    # OUT/cohort, not OUT/raw: a phantom cohort an older demo left in OUT/raw is never mixed in
    cohort = out / "cohort"
    run_tool(
        [
            "-m",
            COHORT_MODULE,
            cohort,
            "--subjects",
            args.subjects,
            "--seed",
            args.seed,
            "--lesion-free-fraction",
            0,
            "--workers",
            2,
        ],
        step="1/6 synthetic cohort",
    )
    run_tool(
        ["-m", PREPARE_MODULE, cohort, "--output", out / "pwml", "--seed", args.seed],
        env,
        step="2/6 conversion",
    )
    run_tool(
        [
            "-m",
            TRAIN_NET_MODULE,
            "--config-file",
            CONFIG,
            "SOLVER.MAX_ITER",
            args.iters,
            "DATASETS.TEST",
            "('pwml_test',)",
            "OUTPUT_DIR",
            train_dir,
            "SEED",
            args.seed,
        ],
        env,
        step="3/6 training + evaluation",
    )
    weights = trained_weights(train_dir)  # model_best.pth: the lowest validation loss
    tuned = train_dir / "operating_point.yaml"
    run_tool(
        [
            "-m",
            TUNE_MODULE,
            "--config-file",
            CONFIG,
            "--weights",
            weights,
            "--dataset",
            "pwml_val",
            "--output",
            tuned,
            "--init-points",
            3,
            "--n-iter",
            6,
            "--seed",
            args.seed,
        ],
        env,
        step="4/6 operating point (score threshold + DCRF) calibration",
    )
    test_subject = json.loads((out / "pwml" / "splits.json").read_text())["test"][0]
    volume = cohort / "imagesTr" / f"{test_subject}_0000.nii.gz"
    run_tool(
        [
            "-m",
            PREDICT_MODULE,
            volume,
            "-o",
            out / "predict",
            "--config-file",
            tuned,
            "--weights",
            weights,
            "--save-prob",
            "--overlays",
            "--no-progress",
        ],
        env,
        step="5/6 prediction",
    )
    slices_csv = train_dir / "inference" / "pwml_test" / "pwml_slices.csv"
    boxplot = out / "boxplot.png"
    run_tool(
        [
            "-m",
            PLOT_MODULE,
            "--csv",
            f"row E (tiny)={slices_csv}",
            "--output",
            boxplot,
            "--title",
            "held-out slices",
        ],
        env,
        step="6/6 figures",
    )
    write_report(out, slices_csv, boxplot, volume)
    return 0


REPORT_METRICS = (
    ("Dice", "Dice"),
    ("sensitivity", "Sens"),
    ("specificity", "Spec"),
    ("HD (px)", "HD"),
)


def write_report(out: Path, slices_csv: Path, boxplot: Path, volume: Path):
    results = pooled_results([slices_csv])  # the evaluator's figures, from its per-slice CSV
    n = int(results["pwml_strict/n_slices"])
    table = [
        "| metric | strict (every slice) | reference (empty predictions skipped) |",
        "|---|---|---|",
    ]
    table += [
        f"| {title} | {results[f'pwml_strict/{key}']:.4f} "
        f"| {results[f'pwml_reference/{key}']:.4f} |"
        for title, key in REPORT_METRICS
    ]
    table += [
        f"| lesion-wise F1 | {results['pwml_strict/lesion_F1']:.4f} | |",
        f"| slices skipped | 0 | {100 * results['pwml_reference/skipped_fraction']:.1f} % |",
    ]
    overlays = write_overlays(out, volume)
    lines = [
        "# RS R-CNN demo report",
        "",
        f"Anatomy-based synthetic cohort (datasets/README.md, section 7), CPU-sized row E "
        f"(`configs/{CONFIG_NAME}`), held-out test subjects "
        f"({n} lesion slices), both evaluator protocols (see docs/RESULTS.md).",
        "",
        *table,
        "",
        "Per-subject 3-D and lesion-wise figures: see the evaluation log above; per-slice values: "
        f"`{slices_csv.relative_to(out)}`.",
        "",
        f"![per-slice box plot]({boxplot.name})",
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


if __name__ == "__main__":
    sys.exit(main())
