#!/usr/bin/env python
"""Benchmark: converting a synthetic cohort the size of the paper's (70 x 512x512x100) to COCO.

    python benchmarks/bench_convert.py [--subjects 70] [--size 512] [--depth 100]
        [--cache /tmp/rsrcnn_bench_cohort] [--workers 1 2] [--all-slices]

Generation is not timed and is cached in --cache (volumes are reused when their
files exist). It uses the fast path of the generator (a few distinct slices per
volume, repeated), which changes nothing for the converter: it still reads,
checks and slices every full gzip-compressed int16 volume. About 10 % of the
slices carry lesions, like the paper's 704 lesion slices of 70 subjects.
Prints a markdown table; goal: lesion-slice conversion <= 60 s on 2 cores.
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rsrcnn_d2.data.convert import convert_pwml
from rsrcnn_d2.synth.phantom import write_synthetic_cohort


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--subjects", type=int, default=70)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--lesion-fraction", type=float, default=0.1)
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "rsrcnn_bench_cohort"))
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--all-slices", action="store_true", help="also time keeping every slice")
    args = p.parse_args(argv)

    cohort = Path(args.cache) / f"n{args.subjects}_s{args.size}_d{args.depth}"
    t0 = time.perf_counter()
    write_synthetic_cohort(
        cohort,
        args.subjects,
        args.size,
        args.depth,
        seed=0,
        lesion_fraction=args.lesion_fraction,
        distinct_slices=4,
        workers=2,
    )
    gen = time.perf_counter() - t0
    size_mb = sum(f.stat().st_size for f in cohort.rglob("*.nii.gz")) / 2**20
    print(f"cohort: {cohort} ({size_mb:.0f} MiB of .nii.gz; generated/checked in {gen:.1f} s)\n")

    settings = [True] + ([False] if args.all_slices else [])
    rows = []
    for lesion_only in settings:
        for workers in args.workers:
            out = Path(tempfile.mkdtemp(prefix="bench_convert_")) / "pwml"
            try:
                t0 = time.perf_counter()
                s = convert_pwml(cohort, out, lesion_slices_only=lesion_only, workers=workers)
                dt = time.perf_counter() - t0
            finally:
                shutil.rmtree(out.parent, ignore_errors=True)
            rows.append(
                (
                    ("lesion slices" if lesion_only else "all slices"),
                    workers,
                    s["num_subjects"],
                    s["num_images"],
                    s["num_annotations"],
                    dt,
                )
            )

    print(
        f"{args.subjects} volumes of {args.size}x{args.size}x{args.depth}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}\n"
    )
    print("| slices kept | workers | subjects | slices | lesions | time (s) | volumes/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kept, workers, n, images, lesions, dt in rows:
        print(f"| {kept} | {workers} | {n} | {images} | {lesions} | {dt:.1f} | {n / dt:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
