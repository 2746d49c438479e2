#!/usr/bin/env python
"""Inference time per 512x512 slice: row B (Mask R-CNN) vs row E (RS R-CNN), same backbone.

Both models are built from the R-101-FPN configs in the same process and timed
on the same synthetic slices, interleaved (B, E, B, E, ...) so that machine
load affects both alike. The DCRF's own time inside row E is measured by
wrapping its postprocessor. Weights are random (no pretrained weights here), so
the score threshold is set to 0 and the number of detections per slice is fixed
by TEST.DETECTIONS_PER_IMAGE (the backbone uses GroupNorm, see build()): 50 is
the paper's cap (worst case), 10 is closer to a real PWML slice. Random-weight
boxes are anchor-sized (8-128 px, larger than real lesion boxes), which makes the
DCRF share an upper estimate.

    python benchmarks/bench_inference.py [--slices 10] [--detections 50 10]
"""

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from detectron2.modeling import build_model

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.model_zoo import row_config
from rsrcnn_d2.synth.phantom import synthetic_slice

ROWS = {row: row_config(row, "r101") for row in ("B", "E")}


class TimedRefine:
    """Wraps a DCRF postprocessor and adds up the seconds spent in it."""

    def __init__(self, inner):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __call__(self, patch, prob):
        start = time.perf_counter()
        out = self.inner(patch, prob)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def build(row: str, detections: int, family: str = "r101"):
    """(cfg, model) of ``row`` in rsrcnn_d2.model_zoo's ``family``, in eval mode, on CPU,
    random weights (seed 0), every detection kept up to ``detections``, the DCRF timed.

    Shared with perf_table.py, so both benchmarks time the same models.
    """
    opts = [
        "MODEL.DEVICE",
        "cpu",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.0",
        "TEST.DETECTIONS_PER_IMAGE",
        str(detections),
    ]
    if family == "r101":
        # random FrozenBN ResNet-101 overflows to inf (it expects trained weights);
        # GroupNorm keeps random activations finite, at the same cost for both rows
        opts += ["MODEL.RESNETS.NORM", "GN"]
    cfg = get_rsrcnn_cfg(str(row_config(row, family)), opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if model.dcrf is not None:
        model.dcrf = TimedRefine(model.dcrf)
    return cfg, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--detections", type=int, nargs="+", default=[50, 10])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = []
    for seed in range(args.slices):
        image, _ = synthetic_slice(512, seed=seed)
        inputs.append({"image": torch.from_numpy(np.repeat(image[None], 3, 0))})

    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {args.slices} slices of 512x512, R-101-FPN, random weights\n"
    )
    print(
        "| detections/slice | row B s/slice | row E s/slice | E / B | DCRF s/slice "
        "| DCRF share of E | instances B / E |"
    )
    print("|---|---|---|---|---|---|---|")
    for detections in args.detections:
        models = {row: build(row, detections)[1] for row in ROWS}
        times = {row: [] for row in ROWS}
        counts = {row: 0 for row in ROWS}
        with torch.no_grad():
            for model in models.values():  # warm-up
                model([inputs[0]])
            if models["E"].dcrf is not None:
                models["E"].dcrf.seconds = models["E"].dcrf.calls = 0
            for x in inputs:
                for row, model in models.items():
                    start = time.perf_counter()
                    out = model([x])[0]
                    times[row].append(time.perf_counter() - start)
                    counts[row] += len(out["instances"])
        b, e = statistics.median(times["B"]), statistics.median(times["E"])
        dcrf = models["E"].dcrf.seconds / len(inputs)
        mean_e = statistics.mean(times["E"])
        print(
            f"| {detections} | {b:.3f} | {e:.3f} | {e / b:.2f} | {dcrf:.4f} "
            f"| {100 * dcrf / mean_e:.1f} % | "
            f"{counts['B'] / len(inputs):.0f} / {counts['E'] / len(inputs):.0f} |"
        )
    print("\ns/slice: median over slices; DCRF share: DCRF seconds / mean row-E seconds.")


if __name__ == "__main__":
    main()
