#!/usr/bin/env python
"""The RPN's proposal step and a whole training iteration: an NMS that stops at POST_NMS_TOPK
(`rsrcnn_d2.box_ops.nms_first`, what SingleNMSRPN runs) against detectron2's selection over the
levels joined into one (a full NMS over all 6,000 candidates, what SingleNMSRPN ran before).

Both give the same proposals (tests/test_model.py checks it); only the time differs. The two
ways are timed in the same process on the same images, interleaved, for the tiny rows at the
sweep's 256 x 256: row B keeps 2,000 (training) / 1,000 (test) proposals, the H-RPN rows 100.

    python benchmarks/bench_proposals.py [--weights output/pretrain/pretrained.pth] [--repeats 5]
"""

import argparse
import platform
import statistics
import time
import types

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.model_zoo import row_config
from rsrcnn_d2.synth.phantom import synthetic_slice


def full_nms_proposals(rpn, anchors, logits, deltas, image_sizes):
    """The previous SingleNMSRPN.predict_proposals: detectron2's selection, levels joined."""
    with torch.no_grad():
        boxes = rpn._decode_proposals([Boxes.cat(anchors)], [torch.cat(deltas, 1)])
        return find_top_rpn_proposals(
            boxes,
            [torch.cat(logits, 1)],
            image_sizes,
            rpn.nms_thresh,
            rpn.pre_nms_topk[rpn.training],
            rpn.post_nms_topk[rpn.training],
            rpn.min_box_size,
            rpn.training,
        )


def batch(n: int, size: int = 256):
    """``n`` training dicts of synthetic slices with their lesion boxes and masks."""
    from rsrcnn_d2.data.instances import mask_to_instances

    out = []
    for seed in range(n):
        image, mask = synthetic_slice(size, seed=seed)
        image = torch.from_numpy(image[None]).repeat(3, 1, 1)
        out.append({"image": image, "instances": mask_to_instances(mask)})
    return out


def head_outputs(model, inputs):
    """(anchors, logits, deltas, image sizes) of the RPN on ``inputs``, flattened per level."""
    rpn = model.proposal_generator
    images = model.preprocess_image(inputs)
    with torch.no_grad():
        features = [model.backbone(images.tensor)[f] for f in rpn.in_features]
        anchors = rpn.anchor_generator(features)
        logits, deltas = rpn.rpn_head(features)
    logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
    deltas = [
        x.view(x.shape[0], -1, 4, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, -2)
        for x in deltas
    ]
    return anchors, logits, deltas, images.image_sizes


def train_step(model, inputs) -> None:
    """One forward and backward pass of ``model`` on ``inputs``."""
    with EventStorage():
        sum(model(inputs).values()).backward()


def timed(repeats: int, fn, *args) -> float:
    """Median seconds of ``repeats`` calls of ``fn(*args)``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, help="a checkpoint of the tiny rows (else random)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=2, help="images per training iteration")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    inputs = batch(args.batch)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}; tiny rows, {args.batch} slices of 256x256, "
        f"weights: {args.weights or 'random (seed 0)'}; median of {args.repeats}\n"
    )
    print("| row | step | full NMS (before) | NMS to POST_NMS_TOPK (now) | now / before |")
    print("|---|---|---|---|---|")
    for row in ("B", "C"):
        torch.manual_seed(0)
        model = build_model(get_rsrcnn_cfg(str(row_config(row, "tiny")), ["MODEL.DEVICE", "cpu"]))
        if args.weights:
            DetectionCheckpointer(model).load(args.weights)
        rpn = model.proposal_generator
        ours = rpn.predict_proposals
        before = types.MethodType(full_nms_proposals, rpn)
        for training in (False, True):
            rpn.train(training)
            outputs = head_outputs(model, inputs)
            old = timed(args.repeats, before, *outputs)
            new = timed(args.repeats, ours, *outputs)
            keep = rpn.post_nms_topk[training]
            step = f"proposals, {'training' if training else 'test'} (keep {keep})"
            print(f"| {row} | {step} | {old * 1e3:.1f} ms | {new * 1e3:.1f} ms | {new / old:.2f} |")
        model.train()
        iteration = {}
        for name, select in (("before", before), ("now", ours)):
            rpn.predict_proposals = select
            train_step(model, inputs)  # warm-up
            iteration[name] = timed(args.repeats, train_step, model, inputs)
        rpn.predict_proposals = ours
        old, new = iteration["before"], iteration["now"]
        print(
            f"| {row} | training iteration (forward + backward) | {old:.3f} s | {new:.3f} s "
            f"| {new / old:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
