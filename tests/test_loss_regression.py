"""Seeded whole-model loss regression: every row's training losses on one fixed batch.

In the manner of detectron2's tests/modeling (``expected_losses``): each row of the
CPU-sized family is built from its config under a fixed seed and fed the same batch of
two 64 px synthetic slices in training mode, with the sampling RNG seeded too; every
loss it returns must match the numbers below. A change in any component a row uses
(anchors, H-RPN, expansion k, LRS-Net head, proposal and ROI sampling, normalisation,
the 2.5-D input) shows up as a changed number, even where no exact test pins it down.

detectron2 starts each head's output layer near zero (weight std 0.01 or 0.001): every
classification loss is then about log 2 whatever its targets, and LRS-Net's mask loss
came within 1e-4 of the FCN head's. Those weights are multiplied by a fixed gain that
takes their std to 0.1 (`OUTPUT_GAINS`): a gain rather than a re-draw, so a change of
their initialisation still moves the numbers.

Row E's numbers equal D's (its dense CRF acts at inference only); "plus" is fed a
2.5-D batch (slices z-1, z, z+1 as channels), as its data mapper would give it.

When a change is meant to move the numbers, print the current ones with

    OMP_NUM_THREADS=1 python tests/test_loss_regression.py

and paste them over `EXPECTED_LOSSES`, saying in the commit why they moved.
"""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from conftest import TINY_ROWS, synthetic_input, tiny_cfg, whole_slices_at

SIZE = 64
SEEDS = (1, 2)
OPTS = (*whole_slices_at(SIZE), "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", "True")

# (module path below the model, gain): detectron2's initial std of 0.01 or 0.001 -> 0.1
OUTPUT_GAINS = (
    ("proposal_generator.rpn_head.objectness_logits", 10.0),
    ("proposal_generator.rpn_head.anchor_deltas", 10.0),
    ("roi_heads.box_predictor.cls_score", 10.0),
    ("roi_heads.box_predictor.bbox_pred", 100.0),
    ("roi_heads.mask_head.predictor", 100.0),
)

# measured with OMP_NUM_THREADS=1; with 2 threads every number agrees to 5e-7 (relative)
EXPECTED_LOSSES = {
    "B": {
        "loss_cls": 0.6640378,
        "loss_box_reg": 0.9867176,
        "loss_mask": 0.7194194,
        "loss_rpn_cls": 0.7589418,
        "loss_rpn_loc": 3.001971,
    },
    "C": {
        "loss_cls": 0.8437997,
        "loss_box_reg": 0.7112891,
        "loss_mask": 0.7259403,
        "loss_rpn_cls": 0.7882406,
        "loss_rpn_loc": 3.068552,
    },
    "D": {
        "loss_cls": 0.8437997,
        "loss_box_reg": 0.7112891,
        "loss_mask": 0.7167428,
        "loss_rpn_cls": 0.7882406,
        "loss_rpn_loc": 3.068552,
    },
    "E": {
        "loss_cls": 0.8437997,
        "loss_box_reg": 0.7112891,
        "loss_mask": 0.7167428,
        "loss_rpn_cls": 0.7882406,
        "loss_rpn_loc": 3.068552,
    },
    "plus": {
        "loss_cls": 0.9218738,
        "loss_box_reg": 0.6020542,
        "loss_mask": 0.7200167,
        "loss_rpn_cls": 0.7947746,
        "loss_rpn_loc": 3.072295,
    },
}


def _batch(neighbor_slices: bool):
    """Two slices with three lesions each; 2.5-D: the same phantom head without lesions
    (z-1) and with one lesion (z+1) as the outer channels."""
    batch = []
    for seed in SEEDS:
        x, _ = synthetic_input(seed, size=SIZE, num_lesions=(3, 3))
        if neighbor_slices:
            below, above = (
                synthetic_input(seed, size=SIZE, num_lesions=(n, n))[0]["image"][0] for n in (0, 1)
            )
            x["image"] = torch.stack([below, x["image"][0], above])
        batch.append(x)
    return batch


def current_losses(row: str, *opts: str) -> dict:
    """Row ``row``'s losses (floats) on the fixed batch, from seeded initial weights."""
    cfg = tiny_cfg(row, *OPTS, *opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for name, gain in OUTPUT_GAINS:
            model.get_submodule(name).weight.mul_(gain)
    model.train()
    batch = _batch(cfg.INPUT.NEIGHBOR_SLICES)
    torch.manual_seed(0)
    with EventStorage(), torch.no_grad():
        losses = model(batch)
    return {name: value.item() for name, value in losses.items()}


@pytest.mark.parametrize("row", list(TINY_ROWS))
def test_losses_match_the_recorded_numbers(row):
    assert row in EXPECTED_LOSSES, f"no recorded losses for row {row!r}: see the module docstring"
    expected = EXPECTED_LOSSES[row]
    losses = current_losses(row)
    assert set(losses) == set(expected)
    assert losses == pytest.approx(expected, rel=1e-4, abs=1e-5)


if __name__ == "__main__":
    print("EXPECTED_LOSSES = {")
    for row in TINY_ROWS:
        print(f'    "{row}": {{')
        for name, value in current_losses(row).items():
            print(f'        "{name}": {value:.7g},')
        print("    },")
    print("}")
