#!/usr/bin/env python
"""Benchmark: writing a 30-subject synthetic cohort, anatomy-based vs phantom.
Goal: <= 60 s on 2 cores.

    python benchmarks/bench_cohort.py [--subjects 30] [--workers 2]

Times `write_anatomical_cohort` (what `tools/make_synthetic_cohort.py` does by
default: simulate, write gzip NIfTI image + mask, dataset.json) from a cold
start in a fresh process state, i.e. including loading the MNI152 template,
then the same with the PNG slice export, then the phantom at the size the demo
used (128x128x16). Each run writes into its own temporary folder, removed after.
Prints a markdown table.
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rsrcnn_d2.synth.cohort import write_anatomical_cohort
from rsrcnn_d2.synth.phantom import write_synthetic_cohort


def timed(write, *args, **kwargs):
    folder = Path(tempfile.mkdtemp(prefix="rsrcnn_bench_cohort_"))
    try:
        start = time.perf_counter()
        write(folder, *args, **kwargs)
        elapsed = time.perf_counter() - start
        size_mb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        return elapsed, size_mb
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--subjects", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    n, w = args.subjects, args.workers
    rows = [
        (
            "anatomy-based (template load included)",
            *timed(write_anatomical_cohort, n, seed=0, workers=w, progress=False),
        ),
        (
            "anatomy-based + PNG slices",
            *timed(
                lambda out, *a, **k: write_anatomical_cohort(
                    out / "raw", *a, slices_dir=out / "png", **k
                ),
                n,
                seed=0,
                workers=w,
                progress=False,
            ),
        ),
        (
            "phantom 128x128x16",
            *timed(
                write_synthetic_cohort,
                n,
                size=128,
                depth=16,
                seed=0,
                lesion_fraction=0.5,
                workers=w,
            ),
        ),
    ]
    print(f"{n} subjects, {w} workers, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    print("| cohort | time (s) | s / subject | on disk (MiB) |")
    print("| --- | --- | --- | --- |")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / n:.2f} | {size:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
