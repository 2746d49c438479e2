#!/usr/bin/env python
"""rsrcnn-evaluate on a folder of whole volumes: 100 cases of 512x512x100 in <= 60 s on 2 cores.

Cases are synthetic uint8 NIfTI pairs written once into --workdir (reused on
later runs): 10-40 punctate 3-D lesions of 1-4 voxels radius spread over 1-3
axial slices each; the prediction finds ~70 % of them (shifted by up to a voxel),
adds 0-5 false blobs. Rows, all in the same run: reading the volumes only (the
floor any evaluator pays), then `evaluate_folder` with 1 and with 2 worker
processes (every slice scored, CSVs and summary written).

    python benchmarks/bench_evaluate_folder.py [--cases 100] [--depth 100] [--workdir DIR]
"""

import argparse
import platform
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from rsrcnn_d2.data.nifti import read_volume
from rsrcnn_d2.evaluation.folder import evaluate_folder, pair_cases

SIZE = 512


def _ball(volume, centre, radius):
    r = int(np.ceil(radius))
    zz, yy, xx = np.mgrid[-1:2, -r : r + 1, -r : r + 1]
    ball = (yy / radius) ** 2 + (xx / radius) ** 2 + zz**2 <= 1.0
    z, y, x = centre
    volume[y - r : y + r + 1, x - r : x + r + 1, z - 1 : z + 2] |= ball.transpose(1, 2, 0)


def make_case(rng, depth):
    truth = np.zeros((SIZE, SIZE, depth), bool)
    pred = np.zeros_like(truth)
    for _ in range(int(rng.integers(10, 41))):
        centre = (int(rng.integers(2, depth - 2)), *rng.integers(150, 362, 2).tolist())
        radius = float(rng.uniform(1, 4))
        _ball(truth, centre, radius)
        if rng.random() < 0.7:
            _ball(
                pred,
                (centre[0], *(np.array(centre[1:]) + rng.integers(-1, 2, 2)).tolist()),
                radius * rng.uniform(0.6, 1.3),
            )
    for _ in range(int(rng.integers(0, 6))):
        _ball(
            pred,
            (int(rng.integers(2, depth - 2)), *rng.integers(150, 362, 2).tolist()),
            float(rng.uniform(1, 3)),
        )
    return pred, truth


def write_cases(workdir: Path, cases: int, depth: int):
    pred_dir, ref_dir = workdir / "pred", workdir / "ref"
    if (
        len(list(ref_dir.glob("*.nii.gz"))) == cases
        and len(list(pred_dir.glob("*.nii.gz"))) == cases
    ):
        return pred_dir, ref_dir
    pred_dir.mkdir(parents=True, exist_ok=True)
    ref_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    affine = np.diag([0.35, 0.35, 1.0, 1.0])
    for i in range(cases):
        pred, truth = make_case(rng, depth)
        nib.save(
            nib.Nifti1Image(truth.astype(np.uint8), affine), str(ref_dir / f"case{i:03d}.nii.gz")
        )
        nib.save(
            nib.Nifti1Image(pred.astype(np.uint8), affine), str(pred_dir / f"case{i:03d}.nii.gz")
        )
    return pred_dir, ref_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument(
        "--workdir", default=str(Path(tempfile.gettempdir()) / "rsrcnn_bench_eval_folder")
    )
    args = parser.parse_args()
    workdir = Path(args.workdir) / f"{args.cases}x{args.depth}"
    t0 = time.perf_counter()
    pred_dir, ref_dir = write_cases(workdir, args.cases, args.depth)
    print(
        f"{args.cases} cases of {SIZE}x{SIZE}x{args.depth} in {workdir} "
        f"(ready in {time.perf_counter() - t0:.1f} s)"
    )

    t0 = time.perf_counter()
    for pair in pair_cases(pred_dir, ref_dir):
        read_volume(pair.prediction), read_volume(pair.reference)
    rows = [("reading both volumes only, 1 process (floor)", time.perf_counter() - t0)]
    summaries = {}
    for workers in (1, 2):
        out = workdir / f"evaluation_w{workers}"
        t0 = time.perf_counter()
        summaries[workers] = evaluate_folder(
            pred_dir, ref_dir, out, workers=workers, progress=False
        )
        rows.append(
            (
                f"evaluate_folder, {workers} worker(s), all slices, CSVs + summary",
                time.perf_counter() - t0,
            )
        )
    assert summaries[1]["pwml_strict"] == summaries[2]["pwml_strict"]
    s = summaries[2]
    print(f"\n{platform.machine()}, python {platform.python_version()}, numpy {np.__version__}")
    print(
        f"strict Dice {s['pwml_strict']['Dice']:.4f} over {s['pwml_strict']['n_slices']:.0f} "
        f"slices; 3-D lesions {s['pwml_lesion3d']['found']}/"
        f"{s['pwml_lesion3d']['true_lesions']} found\n"
    )
    print(f"| {args.cases} cases of {SIZE}x{SIZE}x{args.depth} | s | s / case |")
    print("| --- | ---: | ---: |")
    for label, secs in rows:
        print(f"| {label} | {secs:.1f} | {secs / args.cases:.3f} |")
    best = rows[-1][1]
    print(f"\ngoal: <= 60 s with 2 workers -> {best:.1f} s ({'met' if best <= 60 else 'NOT met'})")


if __name__ == "__main__":
    main()
