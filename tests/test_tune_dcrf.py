"""DCRF tuning: one network pass, strict Dice objective, seeded Bayesian optimisation, tuned
config."""

import json
from collections import Counter

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from conftest import REPO, TINY_ROWS, tiny_cfg
from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.data import (
    build_pwml_test_loader,
    convert_pwml,
    register_pwml_root,
    write_synthetic_cohort,
)
from rsrcnn_d2.modeling.postprocessing import paste_lesions
from rsrcnn_d2.tuning import (
    CachedSlice,
    collect_predictions,
    crf_from_params,
    load_prediction_cache,
    mean_dice,
    normalize_params,
    params_from_cfg,
    save_prediction_cache,
    tune_dcrf,
    write_tuned_config,
)

# every detection kept: an untrained network's scores are low
OPTS = ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.DCRF.NAME", "")
FAST = dict(init_points=2, n_iter=2, seed=0)


class CountingModel(torch.nn.Module):
    """Wraps a model; counts how often each slice goes through it and keeps the outputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = Counter()
        self.outputs = {}

    def forward(self, batch):
        outputs = self.model(batch)
        for inp, out in zip(batch, outputs):
            self.calls[inp["file_name"]] += 1
            self.outputs[inp["file_name"]] = out
        return outputs


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("toy")
    write_synthetic_cohort(
        base / "raw", num_subjects=5, size=128, depth=4, seed=0, lesion_fraction=0.5
    )
    convert_pwml(base / "raw", base / "pwml", workers=1)
    register_pwml_root(base / "pwml", prefix="toy")
    cfg = tiny_cfg("E", *OPTS)
    torch.manual_seed(0)
    counting = CountingModel(build_model(cfg))
    slices = collect_predictions(counting, build_pwml_test_loader(cfg, "toy_val"))
    return {"root": base, "cfg": cfg, "model": counting, "slices": slices}


def test_network_runs_once_per_slice(toy):
    files = [r["file_name"] for r in DatasetCatalog.get("toy_val")]
    assert len(files) > 0 and len(toy["slices"]) == len(files)
    assert toy["model"].calls == Counter({f: 1 for f in files})
    # re-pasting the cache without a CRF is exactly what the model output
    for s in toy["slices"]:
        h, w = s.truth.shape
        masks, _, _ = paste_lesions(
            s.mask_probs, s.network_boxes, s.network_image, h, w, s.crop_box
        )
        assert torch.equal(masks.any(0), toy["model"].outputs[s.file_name]["lesion_mask"])


def test_cached_crf_matches_the_model_with_its_crf_on(toy):
    cfg_on = tiny_cfg("E", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    model_on = build_model(cfg_on).eval()
    model_on.load_state_dict(toy["model"].model.state_dict())
    crf = crf_from_params(params_from_cfg(cfg_on))
    loader = build_pwml_test_loader(cfg_on, "toy_val")
    by_file = {s.file_name: s for s in toy["slices"]}
    with torch.no_grad():
        for batch in loader:
            out = model_on(batch)[0]
            s = by_file[batch[0]["file_name"]]
            h, w = s.truth.shape
            masks, _, _ = paste_lesions(
                s.mask_probs, s.network_boxes, s.network_image, h, w, s.crop_box, refine=crf
            )
            assert torch.equal(masks.any(0), out["lesion_mask"])


def test_tuning_starts_from_the_config_and_is_never_worse(toy):
    start = params_from_cfg(toy["cfg"])
    assert start == {"l1": 2.0, "l2": 4.0, "c1": 6.0, "e1": 1}
    result = tune_dcrf(toy["slices"], start, **FAST)
    assert result.trials[0].params == start  # probed first
    assert result.start_dice == pytest.approx(mean_dice(toy["slices"], crf_from_params(start)))
    assert result.no_crf_dice == pytest.approx(mean_dice(toy["slices"], None))
    assert result.best_dice >= result.start_dice
    assert result.best_dice == max(t.dice for t in result.trials)
    assert len(result.trials) >= 2 and all(isinstance(t.params["e1"], int) for t in result.trials)


def test_seeded_tuning_is_reproducible(toy):
    start = params_from_cfg(toy["cfg"])
    a = tune_dcrf(toy["slices"], start, **FAST)
    b = tune_dcrf(toy["slices"], start, **FAST)
    assert a.best_params == b.best_params and a.best_dice == b.best_dice
    assert [t.params for t in a.trials] == [t.params for t in b.trials]


def test_start_outside_the_bounds_is_still_scored(toy):
    start = {"l1": 50.0, "l2": 4.0, "c1": 6.0, "e1": 1}
    result = tune_dcrf(toy["slices"], start, init_points=1, n_iter=0, seed=1)
    assert result.trials[0].params == start and result.best_dice >= result.start_dice


def test_params_rounding_and_bounds():
    assert normalize_params({"l1": 1, "l2": 2, "c1": 3, "e1": 2.5})["e1"] == 3  # half up
    assert normalize_params({"l1": 1, "l2": 2, "c1": 3, "e1": 2.49})["e1"] == 2
    assert normalize_params({"l1": 4.860357, "l2": 0.123456, "c1": 17.83816, "e1": 1}) == {
        "l1": 4.86,
        "l2": 0.1235,
        "c1": 17.84,
        "e1": 1,
    }
    with pytest.raises(ValueError, match="bounds of e1"):
        tune_dcrf(
            [],
            {"l1": 1, "l2": 2, "c1": 3, "e1": 1},
            bounds={"l1": (1, 2), "l2": (1, 2), "c1": (1, 2), "e1": (0, 3)},
        )


def test_tuned_config_loads_with_the_best_params(tmp_path):
    best = {"l1": 3.25, "l2": 7.5, "c1": 11.25, "e1": 4}
    out = write_tuned_config(tmp_path / "deep" / "tuned.yaml", TINY_ROWS["D"], best, ["tuned on x"])
    text = out.read_text()
    assert text.startswith("# tuned on x\n") and "_BASE_:" in text
    cfg = get_rsrcnn_cfg(str(out))
    assert cfg.MODEL.DCRF.NAME == "DenseCRFPostprocessor"
    assert (
        cfg.MODEL.DCRF.GAUSSIAN_SXY,
        cfg.MODEL.DCRF.BILATERAL_SXY,
        cfg.MODEL.DCRF.BILATERAL_SRGB,
        cfg.MODEL.DCRF.ITERATIONS,
    ) == (3.25, 7.5, 11.25, 4)
    assert cfg.MODEL.ROI_MASK_HEAD.NAME == "LRSNetHead"  # the rest comes from the base
    assert cfg.MODEL.DCRF.BILATERAL_COMPAT == 10.0


def test_a_tuned_config_copied_to_another_folder_still_loads(tmp_path, monkeypatch):
    """Issue 23: the _BASE_ is absolute; a relative one broke as soon as the file moved."""
    import shutil

    base = tmp_path / "configs" / "base.yaml"
    base.parent.mkdir()
    base.write_text(f"_BASE_: {TINY_ROWS['D']}\n")
    out = write_tuned_config(
        tmp_path / "output" / "run" / "tuned.yaml", base, {"l1": 1.5, "l2": 3.0, "c1": 9.0, "e1": 2}
    )
    assert f"_BASE_: {base}\n" in out.read_text()
    copy = tmp_path / "shared" / "tuned.yaml"
    copy.parent.mkdir()
    shutil.copy(out, copy)
    monkeypatch.chdir(REPO)
    for path in (out, copy):
        cfg = get_rsrcnn_cfg(str(path))
        assert cfg.MODEL.DCRF.ITERATIONS == 2 and cfg.MODEL.ROI_MASK_HEAD.NAME == "LRSNetHead"


def test_prediction_cache_round_trip_and_key(toy, tmp_path):
    path = tmp_path / "probs.pt"
    save_prediction_cache(path, toy["slices"], {"dataset": "toy_val"})
    back = load_prediction_cache(path, {"dataset": "toy_val"})
    assert [s.file_name for s in back] == [s.file_name for s in toy["slices"]]
    assert all(
        torch.equal(a.mask_probs, b.mask_probs) and torch.equal(a.truth, b.truth)
        for a, b in zip(back, toy["slices"])
    )
    with pytest.raises(ValueError, match="probs.pt.*dataset"):
        load_prediction_cache(path, {"dataset": "toy_test"})


def _load_tool():
    """The program behind tools/tune_dcrf.py (the script only calls its ``tune_dcrf_main``)."""
    from rsrcnn_d2.tuning import cli

    return cli


def _one_lesion_found():
    """A hand-made cached slice: a 4x4 lesion that detection 0 covers exactly (score 0.9)."""
    truth = torch.zeros(32, 32, dtype=torch.bool)
    truth[8:12, 8:12] = True
    return CachedSlice(
        file_name="s.npy",
        mask_probs=torch.ones(1, 1, 28, 28),
        network_boxes=torch.tensor([[8.0, 8.0, 12.0, 12.0]]),
        network_image=torch.zeros(32, 32),
        truth=truth,
        scores=torch.tensor([0.9]),
    )


def _found(monkeypatch):
    """The tool's network pass replaced by `_one_lesion_found` (the model is still built)."""
    from rsrcnn_d2.tuning import cli

    monkeypatch.setattr(
        cli, "collect_predictions", lambda model, loader, progress=False: [_one_lesion_found()]
    )


def test_tune_dcrf_says_when_it_found_nothing(toy, tmp_path, capsys):
    """Issue 23: no detection at any point (the threshold 1.0 keeps none) is no calibration:
    exit 1, one line, no tuned config, the trials recorded with no best point."""
    out, cache = tmp_path / "tuned.yaml", tmp_path / "val_probs.pt"
    args = ["--config-file", str(TINY_ROWS["E"]), "--output", str(out), "--cache", str(cache)]
    args += ["--init-points", "1", "--n-iter", "0", "--dataset", "toy_val", "--no-progress"]
    args += ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0"]
    assert _load_tool().tune_dcrf_main(args) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(
            "tune_dcrf: error: toy_val: none of 2 operating points scores above predicting no "
            "lesion (strict mean Dice (slices with a lesion in truth or prediction) 0.0000, "
            "no lesion: 0.0000): nothing to "
            "calibrate, no tuned config written"
        )
    )
    assert not out.exists() and cache.exists()  # the network's pass is kept for a rerun
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["best"] is None and summary["empty_prediction_value"] == 0.0
    assert [t["dice"] for t in summary["trials"]] == [0.0, 0.0]
    assert summary["trials"][0] == {"l1": 2.0, "l2": 4.0, "c1": 6.0, "e1": 1, "dice": 0.0}


def test_tune_dcrf_cli_writes_a_usable_config_and_reuses_its_cache(toy, tmp_path, monkeypatch):
    out, cache = tmp_path / "tuned.yaml", tmp_path / "val_probs.pt"
    args = [
        "--config-file",
        str(TINY_ROWS["E"]),
        "--output",
        str(out),
        "--cache",
        str(cache),
        "--init-points",
        "1",
        "--n-iter",
        "1",
        "--dataset",
        "toy_val",
        "MODEL.DEVICE",
        "cpu",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.5",
    ]
    tool = _load_tool()
    with monkeypatch.context() as patch:
        _found(patch)
        assert tool.tune_dcrf_main(args) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    cfg = get_rsrcnn_cfg(str(out))
    assert cfg.MODEL.DCRF.NAME == "DenseCRFPostprocessor"
    assert cfg.MODEL.DCRF.GAUSSIAN_SXY == summary["best"]["l1"]
    assert cfg.MODEL.DCRF.ITERATIONS == summary["best"]["e1"]
    assert summary["best"]["dice"] >= summary["start"]["dice"] > 0
    assert summary["no_crf_dice"] == 1.0  # the lesion, exactly
    # calibrated with one model, no TTA: recorded so that rsrcnn-predict can check it
    assert (cfg.TEST.FLIP_TTA, dict(cfg.TEST.CALIBRATED_WITH)) == (
        False,
        {"MODELS": 1, "FLIP_TTA": False, "VOTES": 1},
    )
    assert cache.exists()

    # a second run reads the cache: the network is never built
    monkeypatch.setattr(
        tool.LesionPredictor,
        "from_config",
        classmethod(lambda cls, *a, **kw: pytest.fail("network rebuilt")),
    )
    assert tool.tune_dcrf_main(args) == 0
    assert json.loads(out.with_suffix(".json").read_text())["best"] == summary["best"]


# ------------------------------------------------------------------ bad config / weights (issue 11)
def test_tune_dcrf_refuses_weights_of_another_row(toy, tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    weights = tmp_path / "rowE.pth"
    torch.save({"model": build_model(tiny_cfg("E")).state_dict()}, weights)
    out = tmp_path / "tuned.yaml"
    args = [
        "--config-file",
        str(TINY_ROWS["B"]),
        "--weights",
        str(weights),
        "--output",
        str(out),
        "--dataset",
        "toy_val",
        "--init-points",
        "1",
        "--n-iter",
        "0",
        "MODEL.DEVICE",
        "cpu",
    ]
    assert _load_tool().tune_dcrf_main(args) == 4
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(
        f"tune_dcrf: error: {weights}: leaves 8 of the model's 110 weight tensors"
    )
    assert not out.exists()
    # the flag loads what fits and tunes
    _found(monkeypatch)
    assert _load_tool().tune_dcrf_main(["--allow-partial-weights", *args]) == 0
    assert out.is_file()


def test_tune_dcrf_bad_config_and_truncated_weights_are_one_line_errors(toy, tmp_path, capsys):
    evil = tmp_path / "evil.yaml"
    evil.write_text(
        f"_BASE_: {TINY_ROWS['E']}\nOUTPUT_DIR: !!python/object/apply:os.system "
        f'["touch {tmp_path / "pwned"}"]\n'
    )
    tool = _load_tool()
    assert tool.tune_dcrf_main(["--config-file", str(evil), "--dataset", "toy_val"]) == 3
    assert (
        capsys.readouterr().err.splitlines()[-1].startswith(f"tune_dcrf: error: {evil}: YAML tag ")
    )
    assert not (tmp_path / "pwned").exists()
    assert (
        tool.tune_dcrf_main(
            ["--config-file", str(TINY_ROWS["E"]), "--dataset", "toy_val", "MODEL.NOPE", "1"]
        )
        == 3
    )
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith("config override: unknown config key MODEL.NOPE")
    )
    truncated = tmp_path / "w.pth"
    truncated.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    assert (
        tool.tune_dcrf_main(
            [
                "--config-file",
                str(TINY_ROWS["E"]),
                "--dataset",
                "toy_val",
                "--weights",
                str(truncated),
                "--output",
                str(tmp_path / "t.yaml"),
                "MODEL.DEVICE",
                "cpu",
            ]
        )
        == 4
    )
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith(f"tune_dcrf: error: {truncated}: cannot load weights")
    )
