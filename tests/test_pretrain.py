"""The paper's protocol without COCO: one Mask R-CNN pre-trained on a source cohort, every row
fine-tuned from it (rsrcnn_d2.experiments.pretrain, rsrcnn-pretrain, --pretrained)."""

import pytest
import torch

from rsrcnn_d2.errors import WeightsError

from conftest import TINY_ROWS, in_process, tiny_cfg


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, worker_id):
    """One pre-training for the whole run: under pytest-xdist the workers share this session's
    temporary root, and the first to take the lock makes it (pytest-xdist's recipe)."""
    from filelock import FileLock

    from rsrcnn_d2.experiments.pretrain import pretrain
    from rsrcnn_d2.synth import COARSE_GRID

    if worker_id == "master":  # no xdist
        shared = tmp_path_factory.mktemp("shared")
    else:
        shared = tmp_path_factory.getbasetemp().parent
    out = shared / "pretrain"
    with FileLock(str(shared / "pretrain.lock")):
        done = out / "pretrained.pth"
        if done.is_file():
            return done
        with pytest.MonkeyPatch.context() as mp:
            in_process(mp)
            return pretrain(out, subjects=6, seed=1000, iters=2, workers=2, params=COARSE_GRID)


def test_the_checkpoint_holds_weights_form_and_source_only(pretrained):
    data = torch.load(pretrained, map_location="cpu", weights_only=True)
    assert set(data) == {"model", "input_form", "pretrain_source"}  # no optimizer, no iteration
    source = data["pretrain_source"]
    assert source["config"] == str(TINY_ROWS["B"]) and source["subjects"] == 6
    assert source["generator_settings"]["seed"] == 1000
    assert source["generator_settings"]["params"]["lesions_per_subject"] == [1, 20]
    assert data["input_form"]["MODEL.ROI_HEADS.NAME"] == "ReferenceSamplingROIHeads"
    # the final weights (a source's lowest validation loss comes before its heads work)
    final = torch.load(pretrained.parent / "run" / "model_final.pth", weights_only=True)["model"]
    assert source["weights"] == str(pretrained.parent / "run" / "model_final.pth")
    assert all(torch.equal(final[k], v) for k, v in data["model"].items())


@pytest.mark.parametrize(
    "row, reinitialised",
    [
        ("B", set()),
        # H-RPN's two objectness logits per anchor come from row B's one (rewritten, same
        # objectness), as the reference loads the pre-trained RPN classifier into its H-RPN
        ("C", set()),
        # LRS-Net's two 3x3 convs and predictor have the shapes of the standard head's first
        # two and predictor: they start from those (its other convs and deconv go unused)
        ("D", set()),
        ("E", set()),
        ("plus", set()),
    ],
)
def test_every_row_loads_it_whole_the_hrpn_classifier_rewritten(pretrained, row, reinitialised):
    from detectron2.modeling import build_model

    from rsrcnn_d2.checkpoint import input_form, load_model_weights

    cfg = tiny_cfg(row)
    model = build_model(cfg)
    # a checked load refuses weights of another row (input form, heads); training loads them
    with pytest.raises(WeightsError) if row != "B" else _nothing():
        load_model_weights(build_model(cfg), str(pretrained), input_form=input_form(cfg))
    found = load_model_weights(
        model, str(pretrained), allow_partial=True, input_form=input_form(cfg)
    )
    missing = {k.rsplit(".", 1)[0] for k in found.missing_keys}
    groups = {m if m.startswith("proposal") else ".".join(m.split(".")[:2]) for m in missing}
    assert groups == reinitialised
    source = torch.load(pretrained, weights_only=True)["model"]
    key = "backbone.bottom_up.stem.conv1.weight"  # the backbone comes from the pre-training
    assert torch.equal(model.state_dict()[key], source[key])
    for part in ("weight", "bias"):
        objectness = model.state_dict()[f"proposal_generator.rpn_head.objectness_logits.{part}"]
        one_logit = source[f"proposal_generator.rpn_head.objectness_logits.{part}"]
        two_way = torch.cat([-one_logit, one_logit])  # background, lesion (the ReLU is on)
        assert torch.equal(objectness, one_logit if row == "B" else two_way)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_source_seed_of_the_evaluation_cohorts_is_refused(tmp_path, capsys):
    from rsrcnn_d2.cli.pretrain import main
    from rsrcnn_d2.experiments.ablation import _train_opts, check_pretrained

    assert main(["--output", str(tmp_path / "p"), "--seed", "3"]) == 2
    assert "--seed 3: use 1000 or more" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    fake = tmp_path / "pre.pth"
    torch.save({"model": {}, "pretrain_source": {"generator_settings": {"seed": 0}}}, fake)
    with pytest.raises(ValueError, match="the evaluation cohort's own"):
        check_pretrained(fake, cohort_seed=0)
    check_pretrained(fake, cohort_seed=1)
    opts = _train_opts([], 10, 2, fake)
    assert opts[opts.index("MODEL.WEIGHTS") + 1] == str(fake)
    with pytest.raises(WeightsError, match="does not exist"):
        check_pretrained(tmp_path / "missing.pth", cohort_seed=0)
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read the checkpoint"):
        check_pretrained(tmp_path / "broken.pth", cohort_seed=0)
    (tmp_path / "coco.pkl").write_bytes(b"a model-zoo pickle")  # COCO's: nothing to check
    check_pretrained(tmp_path / "coco.pkl", cohort_seed=0)
