#!/usr/bin/env python
"""Per-slice evaluation cost on 512x512 slices with punctate lesions: ours vs whole-slice.

Goal: the per-slice metrics of 10,000 slices (Dice, sensitivity, specificity,
HD, HD95, lesion-wise counts) in under 30 s on 2 cores, so that evaluating a
whole cross-validation fold costs seconds, not minutes.

"ours" is `slice_metrics` (everything on the bounding box of the union of both
masks, small point sets by exact all pairs) and, separately, the full
`PWMLEvaluator` path (process() on torch masks + evaluate() with its three
protocols, no CSV). The baseline computes the same figures the obvious way on
the whole slice (Euclidean distance transforms of both complements over
512x512, connected components over 512x512), on a subset, extrapolated. Both
run in the same process on the same masks, and their values are compared.

Masks: a seeded pool of (prediction, truth) pairs, cycled (making a slice costs
more than measuring it): 1-15 lesions of 1-30 pixels inside a brain-sized
ellipse; the prediction finds ~70 % of them (shifted by up to a pixel, grown or
shrunk) and adds 0-3 false blobs; 5 % of predictions are empty and 5 % of
slices have no lesion.

    python benchmarks/bench_evaluator.py [--slices 10000] [--baseline-slices 500] [--pool 200]
"""

import argparse
import logging
import math
import platform
import time

import numpy as np
import torch
from scipy import ndimage

from rsrcnn_d2.data.instances import label_lesions
from rsrcnn_d2.evaluation import PWMLEvaluator, hausdorff_distances, slice_metrics
from rsrcnn_d2.evaluation.lesionwise import LesionCounts

SIZE = 512


def _blob(mask, rng, cy, cx, area):
    r = max(0.5, math.sqrt(area / math.pi))
    k = int(math.ceil(r))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    disk = (yy / (r * rng.uniform(0.8, 1.2))) ** 2 + (xx / (r * rng.uniform(0.8, 1.2))) ** 2 <= 1
    disk[k, k] = True
    y0, x0 = cy - k, cx - k
    mask[y0 : y0 + 2 * k + 1, x0 : x0 + 2 * k + 1] |= disk


def _brain_point(rng):
    while True:  # uniform in an ellipse around the centre (white matter sized)
        y, x = rng.uniform(-1, 1, 2)
        if y * y + x * x <= 1:
            return int(SIZE / 2 + y * SIZE * 0.30), int(SIZE / 2 + x * SIZE * 0.25)


def make_pair(rng):
    truth, pred = np.zeros((SIZE, SIZE), bool), np.zeros((SIZE, SIZE), bool)
    lesion_slice = rng.random() >= 0.05
    for _ in range(int(rng.integers(1, 16)) if lesion_slice else 0):
        cy, cx = _brain_point(rng)
        area = int(rng.integers(1, 31))
        _blob(truth, rng, cy, cx, area)
        if rng.random() < 0.7:  # found, imperfectly
            dy, dx = rng.integers(-1, 2, 2)
            _blob(pred, rng, cy + dy, cx + dx, max(1, int(area * rng.uniform(0.5, 1.5))))
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = _brain_point(rng)
        _blob(pred, rng, cy, cx, int(rng.integers(1, 20)))
    if rng.random() < 0.05:
        pred[:] = False
    return pred, truth


def whole_slice_metrics(pred, truth):
    """The baseline: same figures, computed over the whole slice."""
    tp = np.count_nonzero(pred & truth)
    fp, fn = np.count_nonzero(pred) - tp, np.count_nonzero(truth) - tp
    tn = pred.size - tp - fp - fn
    dice = 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    if pred.any() and truth.any():
        hd = max(
            ndimage.distance_transform_edt(~truth)[pred].max(),
            ndimage.distance_transform_edt(~pred)[truth].max(),
        )
        cross = ndimage.generate_binary_structure(2, 1)
        pe, te = (m & ~ndimage.binary_erosion(m, cross) for m in (pred, truth))
        hd95 = max(
            np.percentile(ndimage.distance_transform_edt(~te)[pe], 95),
            np.percentile(ndimage.distance_transform_edt(~pe)[te], 95),
        )
    else:
        hd = hd95 = 0.0 if not (pred.any() or truth.any()) else float("nan")
    t_lab, n_t = label_lesions(truth)
    p_lab, n_p = label_lesions(pred)
    both = pred & truth
    lesions = LesionCounts(n_t, np.unique(t_lab[both]).size, n_p, n_p - np.unique(p_lab[both]).size)
    return dice, tn, hd, hd95, lesions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=10_000)
    parser.add_argument("--baseline-slices", type=int, default=500)
    parser.add_argument("--pool", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(2)

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    pool = [make_pair(rng) for _ in range(args.pool)]
    gen_s = time.perf_counter() - t0
    lesions = [label_lesions(t)[1] for _, t in pool]
    pixels = [int(t.sum()) for _, t in pool]
    print(
        f"pool of {args.pool} pairs in {gen_s:.1f} s: {np.mean(lesions):.1f} lesions and "
        f"{np.mean(pixels):.0f} lesion pixels per slice on average"
    )

    n = args.slices
    t0 = time.perf_counter()
    ours = [slice_metrics(*pool[i % len(pool)]) for i in range(n)]
    ours_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(n):
        hausdorff_distances(*pool[i % len(pool)])
    hd_s = time.perf_counter() - t0

    masks = [(torch.from_numpy(p), torch.from_numpy(t)) for p, t in pool]
    evaluator = PWMLEvaluator(output_dir=None, distributed=False)
    evaluator.reset()
    t0 = time.perf_counter()
    for i in range(n):
        p, t = masks[i % len(masks)]
        evaluator.process(
            [
                {
                    "file_name": f"s{i // 40}/{i}.npy",
                    "image_id": i,
                    "subject": f"s{i // 40}",
                    "slice_index": i % 40,
                    "gt_mask": t,
                }
            ],
            [{"lesion_mask": p}],
        )
    process_s = time.perf_counter() - t0
    logging.getLogger("rsrcnn_d2").setLevel(logging.WARNING)  # no results table
    t0 = time.perf_counter()
    evaluator.evaluate()
    evaluate_s = time.perf_counter() - t0

    m = min(args.baseline_slices, n)
    t0 = time.perf_counter()
    base = [whole_slice_metrics(*pool[i % len(pool)]) for i in range(m)]
    base_s = (time.perf_counter() - t0) * n / m
    t0 = time.perf_counter()
    for i in range(m):
        p, t = pool[i % len(pool)]
        if p.any() and t.any():
            ndimage.distance_transform_edt(~t)[p], ndimage.distance_transform_edt(~p)[t]
    base_hd_s = (time.perf_counter() - t0) * n / m
    t0 = time.perf_counter()
    for i in range(m):
        hausdorff_distances(*pool[i % len(pool)], method="edt")
    crop_edt_s = (time.perf_counter() - t0) * n / m

    diffs = []
    for o, (dice, tn, hd, hd95, les) in zip(ours, base):
        assert o.lesions == les and o.tn == tn, "lesion counts / tn differ from the baseline"
        for a, b in ((o.dice, dice), (o.hd, hd), (o.hd95, hd95)):
            assert math.isnan(a) == math.isnan(b)
            diffs.append(0.0 if math.isnan(a) else abs(a - b))

    rows = [
        ("HD + HD95 only, bounding-box crop (ours)", hd_s, n),
        (f"HD + HD95, bounding-box crop, EDT forced (on {m}, x{n / m:g})", crop_edt_s, n),
        (f"HD only, whole-slice EDT (measured on {m}, x{n / m:g})", base_hd_s, n),
        ("all per-slice metrics: slice_metrics (ours)", ours_s, n),
        (f"all per-slice metrics, whole slice (measured on {m}, x{n / m:g})", base_s, n),
        ("PWMLEvaluator.process (ours, torch in, records)", process_s, n),
        ("PWMLEvaluator.evaluate (3 protocols, 3-D HD)", evaluate_s, n),
    ]
    print(
        f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"python {platform.python_version()}, numpy {np.__version__}\n"
    )
    print(f"| {n} slices of {SIZE}x{SIZE} | total s | ms / slice |")
    print("| --- | ---: | ---: |")
    for label, secs, count in rows:
        print(f"| {label} | {secs:.2f} | {1e3 * secs / count:.3f} |")
    total = process_s + evaluate_s
    print(
        f"\nspeed-up of slice_metrics over the whole-slice baseline: {base_s / ours_s:.1f}x; "
        f"largest |difference| in Dice/HD/HD95 over {m} slices: {max(diffs):.2e}"
    )
    print(
        f"goal: evaluator process + evaluate < 30 s -> {total:.1f} s "
        f"({'met' if total < 30 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
