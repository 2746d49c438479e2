#!/usr/bin/env python
"""The main job end to end on an embedded synthetic default, on CPU.

Each step is one of the project's ordinary tools, run as a user would run it:

1. tools/make_synthetic_cohort.py  synthetic NIfTI cohort       -> OUT/raw
2. tools/prepare_pwml.py           COCO slices, subject splits    -> OUT/pwml
3. tools/train_net.py              train row E (CPU twin), evaluate on pwml_test
                                   with both protocols            -> OUT/train
4. tools/tune_dcrf.py              Bayesian DCRF tuning on pwml_val -> OUT/train/*_dcrf_tuned.yaml
5. tools/predict.py                segment one held-out volume    -> OUT/predict
6. tools/plot_results.py + report  box plot, overlays, OUT/report.md

Re-running is safe: the cohort is reused, the conversion replaced, the model retrained.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rsrcnn_d2.data.fileio import atomic_write_bytes  # noqa: E402
from rsrcnn_d2.experiments import pooled_results  # noqa: E402

TOOLS = REPO / "tools"
CONFIG = REPO / "configs/PWML-Tiny/E_rsrcnn_R_18_FPN.yaml"


def run(step: str, args, env=None):
    print(f"\n=== {step}\n$ {' '.join(str(a) for a in args)}", flush=True)
    start = time.time()
    subprocess.run([sys.executable, *map(str, args)], check=True, env=env)
    print(f"=== {step}: done in {time.time() - start:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--subjects", type=int, default=14)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DETECTRON2_DATASETS=str(out))  # registers OUT/pwml as pwml_*
    train_dir = out / "train"

    run("1/6 synthetic cohort", [TOOLS / "make_synthetic_cohort.py", out / "raw", "--subjects", args.subjects,
                                 "--size", 128, "--depth", 16, "--seed", args.seed, "--lesion-fraction", 0.5])
    run("2/6 conversion", [TOOLS / "prepare_pwml.py", out / "raw", "--out", out / "pwml", "--seed", args.seed],
        env)
    run("3/6 training + evaluation", [TOOLS / "train_net.py", "--config-file", CONFIG,
                                      "SOLVER.MAX_ITER", args.iters, "DATASETS.TEST", "('pwml_test',)",
                                      "OUTPUT_DIR", train_dir, "SEED", args.seed], env)
    weights = train_dir / "model_final.pth"
    tuned = train_dir / "dcrf_tuned.yaml"
    run("4/6 DCRF tuning", [TOOLS / "tune_dcrf.py", "--config-file", CONFIG, "--weights", weights,
                            "--dataset", "pwml_val", "--output", tuned, "--init-points", 3, "--n-iter", 6,
                            "--seed", args.seed], env)
    test_subject = json.loads((out / "pwml" / "splits.json").read_text())["test"][0]
    volume = out / "raw" / "imagesTr" / f"{test_subject}_0000.nii.gz"
    run("5/6 prediction", [TOOLS / "predict.py", volume, "-o", out / "predict", "--config-file", tuned,
                           "--weights", weights, "--save-prob", "--overlays", "--no-progress"], env)
    slices_csv = train_dir / "inference" / "pwml_test" / "pwml_slices.csv"
    boxplot = out / "boxplot.png"
    run("6/6 figures", [TOOLS / "plot_results.py", "--csv", f"row E (tiny)={slices_csv}",
                        "--output", boxplot, "--title", "held-out slices"], env)
    write_report(out, slices_csv, boxplot, volume)
    return 0


REPORT_METRICS = (("Dice", "Dice"), ("sensitivity", "Sens"), ("specificity", "Spec"), ("HD (px)", "HD"))


def write_report(out: Path, slices_csv: Path, boxplot: Path, volume: Path):
    results = pooled_results([slices_csv])  # the evaluator's figures, from its per-slice CSV
    n = int(results["pwml_strict/n_slices"])
    table = ["| metric | strict (every slice) | reference (empty predictions skipped) |", "|---|---|---|"]
    table += [f"| {title} | {results[f'pwml_strict/{key}']:.4f} | {results[f'pwml_reference/{key}']:.4f} |"
              for title, key in REPORT_METRICS]
    table += [f"| lesion-wise F1 | {results['pwml_strict/lesion_F1']:.4f} | |",
              f"| slices skipped | 0 | {100 * results['pwml_reference/skipped_fraction']:.1f} % |"]
    overlays = sorted((out / "predict").glob("*_overlays/*.png"))
    lines = ["# RS R-CNN demo report", "",
             f"Synthetic cohort, CPU-sized row E (`{CONFIG.relative_to(REPO)}`), held-out test subjects "
             f"({n} lesion slices), both evaluator protocols (see docs/RESULTS.md).", "", *table,
             "", "Per-subject 3-D and lesion-wise figures: see the evaluation log above; per-slice values: "
             f"`{slices_csv.relative_to(out)}`.", "", f"![per-slice box plot]({boxplot.name})", "",
             f"Prediction of `{volume.name}`: `predict/` (mask and probability NIfTI with the input's affine)."]
    if overlays:
        lines += ["", f"![overlay]({overlays[len(overlays) // 2].relative_to(out)})"]
    report = out / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    print("\n" + "\n".join(table))
    print(f"\nreport: {report}")


if __name__ == "__main__":
    sys.exit(main())
