#!/usr/bin/env python
"""The main job on an embedded synthetic default, on CPU.

Generates synthetic T1w-like slices with punctate lesions, trains the CPU-sized
RS R-CNN (row E, R-18-FPN, 128x128) from scratch with detectron2's trainer and
its metric printer, then segments held-out slices and reports Dice, sensitivity
and specificity per slice and on average. Everything goes under --output.
"""
import argparse
import itertools
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from detectron2.engine import SimpleTrainer, hooks  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.solver import build_lr_scheduler, build_optimizer  # noqa: E402
from detectron2.utils.events import CommonMetricPrinter, JSONWriter  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from rsrcnn_d2 import get_rsrcnn_cfg  # noqa: E402
from rsrcnn_d2.data.instances import mask_to_instances  # noqa: E402
from rsrcnn_d2.data.synthetic import synthetic_slice  # noqa: E402
from rsrcnn_d2.evaluation import dice, sensitivity, specificity  # noqa: E402


def make_slices(count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [synthetic_slice(128, num_lesions=(1, 6), rng=rng) for _ in range(count)]


def as_input(image, mask=None):
    x = {"image": torch.from_numpy(np.repeat(image[None], 3, axis=0))}
    if mask is not None:
        x["instances"] = mask_to_instances(mask)
    return x


def batches(slices, batch_size: int, seed: int):
    """Endless shuffled batches with random horizontal flips."""
    rng = np.random.default_rng(seed)
    for _ in itertools.count():
        for i in rng.permutation(len(slices))[: len(slices) // batch_size * batch_size].reshape(-1, batch_size):
            batch = []
            for j in i:
                image, mask = slices[j]
                if rng.random() < 0.5:
                    image, mask = image[:, ::-1].copy(), mask[:, ::-1].copy()
                batch.append(as_input(image, mask))
            yield batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--config-file", default=str(REPO / "configs/PWML-Tiny/E_rsrcnn_R_18_FPN.yaml"))
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--train-slices", type=int, default=48)
    parser.add_argument("--test-slices", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    setup_logger(str(out / "log.txt"), name="detectron2")
    log = setup_logger(str(out / "log.txt"), name="rsrcnn_d2")
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    cfg = get_rsrcnn_cfg(args.config_file, ["MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", str(args.iters),
                                             "OUTPUT_DIR", str(out), *args.opts])
    (out / "config.yaml").write_text(cfg.dump())
    log.info("1/3 generating %d training and %d test slices (seed %d)",
             args.train_slices, args.test_slices, args.seed)
    train = make_slices(args.train_slices, args.seed)
    test = make_slices(args.test_slices, args.seed + 1000)

    log.info("2/3 training %s for %d iterations", Path(args.config_file).name, cfg.SOLVER.MAX_ITER)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, batches(train, cfg.SOLVER.IMS_PER_BATCH, args.seed), optimizer)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(optimizer=optimizer, scheduler=build_lr_scheduler(cfg, optimizer)),
        hooks.PeriodicWriter([CommonMetricPrinter(cfg.SOLVER.MAX_ITER),
                              JSONWriter(str(out / "metrics.json"))], period=20),
    ])
    trainer.train(0, cfg.SOLVER.MAX_ITER)
    torch.save(model.state_dict(), out / "model_final.pth")

    log.info("3/3 segmenting %d held-out slices", len(test))
    model.eval()
    rows = []
    with torch.no_grad():
        for i, (image, mask) in enumerate(test):
            pred = model([as_input(image)])[0]["lesion_mask"].numpy()
            rows.append({"slice": i, "dice": dice(pred, mask), "sensitivity": sensitivity(pred, mask),
                         "specificity": specificity(pred, mask), "lesion_pixels": int(mask.sum()),
                         "predicted_pixels": int(pred.sum())})
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in ("dice", "sensitivity", "specificity")}
    (out / "results.json").write_text(json.dumps({"summary": summary, "slices": rows}, indent=2))
    print("\n| metric (held-out slices, mean) | value |\n|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v:.4f} |")
    print(f"\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
