#!/usr/bin/env python
"""Realism of the synthetic cohort beside the real reference slices: the table of
datasets/README.md.

    python benchmarks/cohort_realism.py [--subjects 30] [--seed 0] [--workers 2]
        [--cohort RAW_DIR] [--phantom] [--reference ../shared/data/pwml_reference_slices]

Measures (rsrcnn_d2.synth.realism), on 8-bit head crops of every lesion slice
(long side 100 px, the reference's form; real slices are measured as they are,
already such crops): lesion areas (8-connected, pixels), lesion contrast against
a 3-pixel ring in ring standard deviations, the best single global threshold's
Dice per slice, and for volumes the share of 3-D lesions crossing >= 2 slices.
The cohort is simulated in memory (default) or read from --cohort (an nnU-Net
folder, e.g. from tools/make_synthetic_cohort.py); --phantom measures the old
phantom at the demo's former size. The reference slices are read in place.
"""

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np

from rsrcnn_d2.synth.realism import lesion_slice_spans, summarize_measures, volume_crops

REPO = Path(__file__).resolve().parents[1]  # the reference slices sit beside the checkout

TARGETS = {
    "area": "1-15",
    "contrast_median": "2.5-5.5",
    "threshold_dice_mean": "< 0.1",
    "multi_slice_share": ">= 50 %",
}


def _measure_subject(job):
    # one subject's lesion-slice crops and 3-D spans (run in a worker: volumes stay there)
    kind, index, seed = job
    if kind == "phantom":
        from rsrcnn_d2.synth.phantom import synthetic_volume

        image, mask, _ = synthetic_volume(
            128,
            16,
            lesion_fraction=0.5,
            rng=np.random.default_rng(np.random.SeedSequence(seed).spawn(index + 1)[index]),
        )
    elif kind == "anatomy":
        from rsrcnn_d2.synth.anatomy import simulate_subject

        subject = simulate_subject(np.random.SeedSequence(seed).spawn(index + 1)[index])
        image, mask = subject.image, subject.mask
    else:
        from rsrcnn_d2.data.nifti import read_nifti_pair

        pair = read_nifti_pair(*seed)
        image, mask = pair.image, pair.mask
    return list(volume_crops(image, mask)), lesion_slice_spans(mask).tolist()


def measure_volumes(jobs, workers: int):
    from tqdm import tqdm

    crops, spans = [], []
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    if jobs and jobs[0][0] == "anatomy":
        from rsrcnn_d2.synth.mni_template import load_mni152_tissues

        load_mni152_tissues()  # before forking: shared by the workers
    with ctx.Pool(workers) as pool:
        for c, s in tqdm(pool.imap(_measure_subject, jobs), total=len(jobs), desc="subjects"):
            crops.extend(c)
            spans.extend(s)
    return summarize_measures(crops, spans)


def reference_table(root: Path):
    from rsrcnn_d2.data.fileio import read_slice
    from rsrcnn_d2.data.sources import slice_folder_subjects

    pairs = [
        (read_slice(i), read_slice(m) > 0)
        for s in slice_folder_subjects(root)
        for _, i, m in s.slices
    ]
    return summarize_measures(pairs)


def format_table(columns) -> str:
    def cell(t, key, fmt):
        return "n/a" if t is None or key not in t else fmt.format(t[key])

    rows = [
        ("slices with lesions", "slices", "{:.0f}", ""),
        ("2-D lesions", "lesions", "{:.0f}", ""),
        ("lesion area, px (min / median / max)", None, None, TARGETS["area"]),
        ("contrast, ring SDs: p10", "contrast_p10", "{:.2f}", ""),
        ("contrast, ring SDs: median", "contrast_median", "{:.2f}", TARGETS["contrast_median"]),
        ("contrast, ring SDs: p90", "contrast_p90", "{:.2f}", ""),
        (
            "best global-threshold Dice: mean",
            "threshold_dice_mean",
            "{:.3f}",
            TARGETS["threshold_dice_mean"],
        ),
        ("best global-threshold Dice: max", "threshold_dice_max", "{:.3f}", ""),
        ("3-D lesions", "lesions_3d", "{:.0f}", ""),
        (
            "lesions crossing >= 2 slices",
            "multi_slice_share",
            "{:.0%}",
            TARGETS["multi_slice_share"],
        ),
    ]
    lines = [
        "| measure | " + " | ".join(name for name, _ in columns) + " | target (synthetic) |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for title, key, fmt, target in rows:
        if key is None:
            cells = [
                "n/a"
                if t is None
                else f"{t['area_min']:.0f} / {t['area_median']:.0f} / {t['area_max']:.0f}"
                for _, t in columns
            ]
        else:
            cells = [cell(t, key, fmt) for _, t in columns]
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--subjects", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cohort", help="measure this nnU-Net folder instead of simulating")
    p.add_argument(
        "--phantom", action="store_true", help="also measure the phantom (same subjects, seed)"
    )
    p.add_argument(
        "--reference",
        default=os.environ.get("PWML_REFERENCE_SLICES")
        or str(REPO.parent / "shared" / "data" / "pwml_reference_slices"),
    )
    args = p.parse_args(argv)
    if args.subjects < 1:
        p.error("--subjects must be at least 1")

    columns = []
    if args.cohort:
        from rsrcnn_d2.data.sources import nnunet_subjects

        jobs = [("files", i, (s.image, s.mask)) for i, s in enumerate(nnunet_subjects(args.cohort))]
        columns.append(
            (
                f"cohort {Path(args.cohort).name} ({len(jobs)} subjects)",
                measure_volumes(jobs, args.workers),
            )
        )
    else:
        jobs = [("anatomy", i, args.seed) for i in range(args.subjects)]
        columns.append(
            (
                f"anatomy-based ({args.subjects} subjects, seed {args.seed})",
                measure_volumes(jobs, args.workers),
            )
        )
    if args.phantom:
        jobs = [("phantom", i, args.seed) for i in range(args.subjects)]
        columns.append(
            (f"phantom 128x128x16 ({args.subjects})", measure_volumes(jobs, args.workers))
        )
    reference = Path(args.reference)
    if (reference / "input").is_dir():
        columns.append((f"real: {reference.name}", reference_table(reference)))
    else:
        print(f"(reference slices not found at {reference}: real column left out)", file=sys.stderr)
    print(format_table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
