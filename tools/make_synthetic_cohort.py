#!/usr/bin/env python
"""Write a seeded synthetic PWML cohort (NIfTI, nnU-Net raw layout) for demos, tests, benchmarks.

    python tools/make_synthetic_cohort.py OUT [--subjects 6] [--size 64] [--depth 6] [--seed 0]

Then convert it: ``python tools/prepare_pwml.py OUT``. Volumes are T1w-like
phantoms (rsrcnn_d2.data.synthetic) stored as int16 with voxel size
0.8 x 0.8 x 2 mm; existing cases are kept unless --overwrite.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsrcnn_d2.data.synthetic import write_synthetic_cohort  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output folder (imagesTr/, labelsTr/, dataset.json)")
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--size", type=int, default=64, help="in-plane size (pixels)")
    p.add_argument("--depth", type=int, default=6, help="number of axial slices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lesion-fraction", type=float, default=0.3,
                   help="fraction of slices with lesions (at least one per subject)")
    p.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 2.0))
    p.add_argument("--distinct-slices", type=int, default=0,
                   help="generate only this many distinct slices per kind and repeat them (fast)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    cases = write_synthetic_cohort(args.out, args.subjects, args.size, args.depth, args.seed,
                                   lesion_fraction=args.lesion_fraction, spacing=args.spacing,
                                   distinct_slices=args.distinct_slices, workers=args.workers,
                                   overwrite=args.overwrite)
    print(f"{len(cases)} subjects in {Path(args.out).absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
