#!/usr/bin/env python
"""Speed of the classical detector (row A) on 512x512 slices; goal >= 20 slices/s on 2 cores.

Slices: seeded synthetic 512x512 phantom slices (rsrcnn_d2.synth.phantom) and,
where ../shared/data/pwml_reference_slices exists, the real reference slices
resized to 512x512 (read in place; only timed, nothing is tuned on them).
Timed: `detect_slice` alone (2-D, default parameters and the slowest corner of
the tuning box), "3d" mode with both neighbours, and the whole prediction path
of a 512x512xN volume through `ClassicalPredictor.predict_slices` (what
rsrcnn-predict --classical runs, file I/O excluded). One process; the load
average is printed because the machine may be shared.

    python benchmarks/bench_classical.py [--slices 40] [--repeats 3]
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from rsrcnn_d2.classical import ClassicalParams, ClassicalPredictor, detect_slice
from rsrcnn_d2.synth.phantom import synthetic_slice

REPO = Path(__file__).resolve().parents[1]  # the reference slices sit beside the checkout

REFERENCE = (
    Path(
        os.environ.get("PWML_REFERENCE_SLICES")
        or REPO.parent / "shared" / "data" / "pwml_reference_slices"
    )
    / "input"
)
GOAL = 20.0  # slices per second


def phantom_slices(n: int, size: int = 512):
    return [synthetic_slice(size, seed=i)[0].astype(np.float32) for i in range(n)]


def reference_slices(size: int = 512):
    if not REFERENCE.is_dir():
        return []
    from PIL import Image

    out = []
    for path in sorted(REFERENCE.rglob("*.png")):
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), np.float32))
    return out


def best_rate(run, count: int, repeats: int) -> float:
    """Slices per second of the fastest of ``repeats`` runs (the least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slices", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    default = ClassicalParams()
    slowest = ClassicalParams(smoothing_sigma=2.0, background_size=21, tissue_erosion=8)
    sets = [("phantom", phantom_slices(args.slices))]
    real = reference_slices()
    if real:
        sets.append(("reference slices resized", real))
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}; load average before: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print("\n| slices (512x512) | n | what | slices/s |\n| --- | --- | --- | --- |")
    rates = []
    for name, slices in sets:
        n = len(slices)
        for label, params in (
            ("detect_slice, 2-D, default parameters", default),
            ("detect_slice, 2-D, slowest corner of the tuning box", slowest),
        ):
            rate = best_rate(
                lambda params=params, slices=slices: [detect_slice(s, params) for s in slices],
                n,
                args.repeats,
            )
            rates.append(rate)
            print(f"| {name} | {n} | {label} | {rate:.1f} |")
        three_d = default.replace(mode="3d")
        rate = best_rate(
            lambda three_d=three_d, slices=slices, n=n: [
                detect_slice(s, three_d, (slices[k - 1], slices[(k + 1) % n]))
                for k, s in enumerate(slices)
            ],
            n,
            args.repeats,
        )
        rates.append(rate)
        print(f"| {name} | {n} | detect_slice, 3-D (two neighbours), default | {rate:.1f} |")
        for label, params in (
            ("ClassicalPredictor (rsrcnn-predict path), 2-D", default),
            ("ClassicalPredictor (rsrcnn-predict path), 3-D", three_d),
        ):
            predictor = ClassicalPredictor(params)
            rate = best_rate(
                lambda predictor=predictor, slices=slices: predictor.predict_slices(slices),
                n,
                args.repeats,
            )
            rates.append(rate)
            print(f"| {name} | {n} | {label} | {rate:.1f} |")
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    worst = min(rates)
    print(
        f"goal: >= {GOAL:.0f} slices/s -> slowest case {worst:.1f} slices/s "
        f"({'met' if worst >= GOAL else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
