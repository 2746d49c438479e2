"""The CRF's side of the tuning: one network pass whose cache re-pastes exactly what the model
outputs (CRF on or off), the CRF's parameters, the tuned config, and tools/tune_dcrf.py, the
deprecated alias of tools/tune_operating_point.py --search crf (the search itself:
test_tune_operating_point.py)."""

import json
from collections import Counter

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.data import (
    build_pwml_test_loader,
    convert_pwml,
    register_pwml_root,
)
from rsrcnn_d2.modeling.postprocessing import paste_lesions
from rsrcnn_d2.synth import write_synthetic_cohort
from rsrcnn_d2.tuning import (
    CachedSlice,
    collect_predictions,
    crf_from_params,
    load_prediction_cache,
    normalize_params,
    params_from_cfg,
    save_prediction_cache,
    write_tuned_config,
)

from conftest import REPO, TINY_ROWS, tiny_cfg

# every detection kept: an untrained network's scores are low
OPTS = ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.DCRF.NAME", "")


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


def test_params_rounding():
    assert normalize_params({"l1": 1, "l2": 2, "c1": 3, "e1": 2.5})["e1"] == 3  # half up
    assert normalize_params({"l1": 1, "l2": 2, "c1": 3, "e1": 2.49})["e1"] == 2
    assert normalize_params({"l1": 4.860357, "l2": 0.123456, "c1": 17.83816, "e1": 1}) == {
        "l1": 4.86,
        "l2": 0.1235,
        "c1": 17.84,
        "e1": 1,
    }


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
    from rsrcnn_d2.tuning import calibrate

    monkeypatch.setattr(
        calibrate,
        "collect_predictions",
        lambda model, loader, progress=False: [_one_lesion_found()],
    )


def _run_alias(monkeypatch, capsys, args):
    """tools/tune_dcrf.py run as a script with ``args``: (exit status, stdout, stderr)."""
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["tune_dcrf.py", *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / "tools" / "tune_dcrf.py"), run_name="__main__")
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


DEPRECATED = (
    "tune_dcrf: warning: tools/tune_dcrf.py is deprecated, use tools/tune_operating_point.py "
    "--search crf (running it now; default output: <config>_tuned.yaml, no longer "
    "<config>_dcrf_tuned.yaml)"
)
CONFIG_CRF = {"l1": 2.0, "l2": 4.0, "c1": 6.0, "e1": 1}  # the tiny row E's MODEL.DCRF


def test_the_deprecated_alias_tunes_the_crf_alone(toy, tmp_path, monkeypatch, capsys):
    """tools/tune_dcrf.py: one deprecation line, then tune_operating_point --search crf: the
    CRF's l1..e1 at the config's threshold, written as a usable config; its cache reused."""
    out, cache = tmp_path / "tuned.yaml", tmp_path / "val_probs.pt"
    args = ["--config-file", str(TINY_ROWS["E"]), "--output", str(out), "--cache", str(cache)]
    args += ["--init-points", "1", "--n-iter", "1", "--dataset", "toy_val"]
    args += ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.5"]
    with monkeypatch.context() as patch:
        _found(patch)
        code, stdout, err = _run_alias(monkeypatch, capsys, args)
    assert code == 0, err[-2000:]
    assert err.splitlines().count(DEPRECATED) == 1
    assert "operating points tried" in stdout and f"tuned config: {out}" in stdout
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["search"] == ["crf"] and summary["objective"] == "dice"
    assert {t["score"] for t in summary["trials"]} == {0.5}  # the config's threshold only
    assert summary["start"] == {"score": 0.5, **CONFIG_CRF, "value": summary["start"]["value"]}
    assert summary["best"]["value"] >= summary["start"]["value"] > 0
    cfg = get_rsrcnn_cfg(str(out))
    assert cfg.MODEL.DCRF.NAME == "DenseCRFPostprocessor"
    assert cfg.MODEL.DCRF.GAUSSIAN_SXY == summary["best"]["l1"]
    assert cfg.MODEL.DCRF.ITERATIONS == summary["best"]["e1"]
    # the threshold was not tuned: the config file's stays (the override is not repeated)
    assert "SCORE_THRESH_TEST:" not in out.read_text()
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == tiny_cfg("E").MODEL.ROI_HEADS.SCORE_THRESH_TEST
    # calibrated with one model, no TTA: recorded so that rsrcnn-predict can check it
    assert (cfg.TEST.FLIP_TTA, dict(cfg.TEST.CALIBRATED_WITH)) == (
        False,
        {"MODELS": 1, "FLIP_TTA": False, "VOTES": 1},
    )
    assert cache.exists()

    # a second run reads the cache: the network is never built
    from rsrcnn_d2.tuning import calibrate

    monkeypatch.setattr(
        calibrate.LesionPredictor,
        "from_config",
        classmethod(lambda cls, *a, **kw: pytest.fail("network rebuilt")),
    )
    assert _run_alias(monkeypatch, capsys, args)[0] == 0
    assert json.loads(out.with_suffix(".json").read_text())["best"] == summary["best"]


def test_the_deprecated_alias_says_when_it_found_nothing(toy, tmp_path, monkeypatch, capsys):
    """Issue 23 through the alias: no detection at any point (the threshold 1.0 keeps none) is
    no calibration: exit 1, no tuned config, the trials recorded with no best point, at
    tune_operating_point's default name (OUTPUT_DIR/<config>_tuned.json)."""
    out = tmp_path / "run" / f"{TINY_ROWS['E'].stem}_tuned.yaml"
    args = ["--config-file", str(TINY_ROWS["E"]), "--init-points", "1", "--n-iter", "0"]
    args += ["--dataset", "toy_val", "--no-progress", "MODEL.DEVICE", "cpu"]
    args += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0", "OUTPUT_DIR", str(out.parent)]
    code, _, err = _run_alias(monkeypatch, capsys, args)
    assert code == 1
    lines = err.strip().splitlines()
    assert lines.count(DEPRECATED) == 1
    assert lines[-1].startswith(
        "tune_operating_point: error: toy_val: none of 2 operating points scores above "
        "predicting no lesion (strict mean Dice (slices with a lesion in truth or prediction) "
        "0.0000, no lesion: 0.0000): nothing to calibrate, no tuned config written"
    )
    assert not out.exists()
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["best"] is None and summary["empty_prediction_value"] == 0.0
    assert [t["value"] for t in summary["trials"]] == [0.0, 0.0]
    assert summary["trials"][0] == {"score": 1.0, **CONFIG_CRF, "value": 0.0}
