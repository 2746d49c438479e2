#!/usr/bin/env python
"""Whole-volume prediction overhead: rsrcnn-predict's path vs the model's own forward time.

Goal: reading, head-cropping, resizing, pasting back and writing NIfTI masks add at
most 10 % to the time the model itself takes on the same slices (ratio <= 1.10).

Both rows run in the same process on the same volumes and weights, TTA off:
- "model forward": the slices of every volume, cut and prepared beforehand
  (`LesionPredictor._model_input`, not timed), fed to the model in batches of
  ``--batch-size`` (detectron2's forward with the model's own postprocessing:
  pasting through the expanded boxes and the CRF when the config has one);
- "predict_inputs": the library call rsrcnn-predict makes (reading each volume,
  reorienting, the same model calls, writing mask NIfTIs with the input's header).
Lesion-free constant slices (air) are skipped by the predictor in both rows.

    python benchmarks/bench_predict_overhead.py --config CFG --weights W.pth \\
        --volumes DIR [--repeats 3]
"""

import argparse
import platform
import tempfile
import time

import numpy as np
import torch

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.config import fall_back_to_cpu
from rsrcnn_d2.data.nifti import read_volume, volume_slice
from rsrcnn_d2.inference.inputs import find_inputs
from rsrcnn_d2.inference.predictor import LesionPredictor, predict_inputs


def forward_only(predictor: LesionPredictor, volumes) -> float:
    """Seconds of model calls on the prepared, non-constant slices of ``volumes``."""
    batches = []
    for volume in volumes:
        slices = [volume_slice(volume, 2, k) for k in range(volume.shape[2])]
        inputs = [predictor._model_input(s) for s in slices if s.size and s.min() != s.max()]
        batches += [
            inputs[i : i + predictor.batch_size]
            for i in range(0, len(inputs), predictor.batch_size)
        ]
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            predictor.model(batch)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--volumes", required=True, help="folder of NIfTI volumes")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    cfg = get_rsrcnn_cfg(args.config, ["MODEL.WEIGHTS", args.weights])
    fall_back_to_cpu(cfg)
    predictor = LesionPredictor.from_config(cfg, batch_size=args.batch_size)
    inputs = find_inputs(args.volumes)
    volumes = [read_volume(item.path).canonical for item in inputs]
    n_slices = sum(v.shape[2] for v in volumes)
    forward, whole = [], []
    for _ in range(args.repeats):  # interleaved, so that load on the machine hits both alike
        forward.append(forward_only(predictor, volumes))
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            report = predict_inputs(predictor, inputs, out, progress=False)
            whole.append(time.perf_counter() - start)
            assert not report.failures, report.failures
    f, w = min(forward), min(whole)
    print(
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{len(inputs)} volumes, {n_slices} axial slices; best of {args.repeats}\n"
    )
    print("| path | s | s / volume |")
    print("| --- | ---: | ---: |")
    print(f"| model forward on prepared slices | {f:.2f} | {f / len(inputs):.3f} |")
    print(
        "| predict_inputs (read, cut, resize, forward, paste, write) "
        f"| {w:.2f} | {w / len(inputs):.3f} |"
    )
    print(
        f"\noverhead ratio {w / f:.3f} (goal <= 1.10: {'met' if w / f <= 1.10 else 'NOT met'}); "
        f"all runs forward {np.round(forward, 2).tolist()}, whole {np.round(whole, 2).tolist()}"
    )


if __name__ == "__main__":
    main()
