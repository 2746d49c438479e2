"""Calibrated operating points: score threshold (+ CRF) on a cache of one network pass."""

import pytest
import torch
from detectron2.modeling import build_model

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.cli.tune_operating_point import main as tune_main
from rsrcnn_d2.data import (
    build_pwml_test_loader,
    convert_pwml,
    register_pwml_root,
)
from rsrcnn_d2.inference.ensemble import LesionEnsemble, member_scores, votes
from rsrcnn_d2.synth import write_synthetic_cohort
from rsrcnn_d2.tuning import CachedSlice, collect_predictions
from rsrcnn_d2.tuning.dcrf_search import (
    crf_from_params,
    mean_dice,
    objective_value,
    objective_values,
    params_from_cfg,
    slice_prediction,
)
from rsrcnn_d2.tuning.operating_point import DEFAULT_SCORE_GRID, tune_operating_point

from conftest import TINY_ROWS, tiny_cfg

SIZE = 32


def _square(x0, y0, side=4):
    return [float(x0), float(y0), float(x0 + side), float(y0 + side)]


def _slice(scores, member=None, min_votes=1):
    """A 32x32 slice with one true 4x4 lesion at (8, 8): detection 0 covers it exactly,
    detection 1 is a false positive at (20, 20); both masks certain."""
    truth = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    truth[8:12, 8:12] = True
    return CachedSlice(
        file_name="s.npy",
        mask_probs=torch.ones(2, 1, 28, 28),
        network_boxes=torch.tensor([_square(8, 8), _square(20, 20)]),
        network_image=torch.zeros(SIZE, SIZE),
        truth=truth,
        scores=torch.tensor(scores),
        member_scores=None if member is None else torch.tensor(member),
        min_votes=min_votes,
    )


def test_the_threshold_selects_detections_exactly():
    s = _slice([0.6, 0.3])
    assert s.kept(0.7).tolist() == [False, False]
    assert s.kept(0.5).tolist() == [True, False]
    assert s.kept(0.3).tolist() == [True, True]  # >= the threshold, as scores above it
    assert s.kept(None).tolist() == [True, True]
    # hand-computed objectives: nothing (Dice 0), the lesion alone (1), lesion + 16-px FP
    assert objective_value([s], "dice", score_threshold=0.7) == 0.0
    assert objective_value([s], "dice", score_threshold=0.5) == 1.0
    assert objective_value([s], "dice", score_threshold=0.1) == pytest.approx(32 / 48)
    assert objective_value([s], "lesion_f1", score_threshold=0.1) == pytest.approx(2 / 3)
    assert objective_value([s], "lesion_f1", score_threshold=0.7) == 0.0
    assert slice_prediction(s, score_threshold=0.5).sum() == 16


def test_an_ensembles_vote_is_recounted_at_each_threshold():
    # flip TTA: two members; the lesion scored 0.6 and 0.5, the FP 0.3 by one member only
    s = _slice([0.6, 0.3], member=[[0.6, 0.5], [0.3, 0.0]], min_votes=2)
    assert s.kept(0.45).tolist() == [True, False]
    assert s.kept(0.55).tolist() == [False, False]  # one vote left for the lesion
    assert s.kept(0.2).tolist() == [True, False]  # the FP never had two votes


def test_member_scores_and_votes_by_hand():
    merged = torch.tensor([_square(0, 0, 10), _square(50, 50, 10)])
    member_a = torch.tensor([_square(1, 0, 10), _square(0, 1, 10)])  # both overlap box 0
    member_b = torch.tensor([_square(50, 50, 10)])
    got = member_scores(
        merged, [member_a, member_b], [torch.tensor([0.4, 0.9]), torch.tensor([0.7])], 0.5
    )
    assert got.tolist() == [[pytest.approx(0.9), 0.0], [0.0, pytest.approx(0.7)]]
    assert votes(merged, [member_a, member_b], 0.5).tolist() == [1, 1]
    assert votes(merged, [member_a, member_b, torch.zeros(0, 4)], 0.5).tolist() == [1, 1]


def test_the_grid_finds_the_threshold_the_config_misses():
    s = _slice([0.6, 0.3])
    for objective in ("dice", "lesion_f1"):
        result = tune_operating_point([s], 0.7, None, objective=objective)
        assert result.start == {"score": 0.7} and result.start_value == 0.0
        assert result.trials[0] == ({"score": 0.7}, 0.0)  # the config's point first
        # the first grid point keeping the lesion and dropping the FP
        assert result.best == {"score": 0.35} and result.best_value == 1.0


def test_the_config_point_wins_ties():
    s = _slice([0.9, 0.3])
    result = tune_operating_point([s], 0.7, None)
    assert result.best == {"score": 0.7} and result.best_value == 1.0


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    base = tmp_path_factory.mktemp("op")
    write_synthetic_cohort(
        base / "raw", num_subjects=5, size=64, depth=4, seed=0, lesion_fraction=0.5
    )
    convert_pwml(base / "raw", base / "pwml", workers=1)
    register_pwml_root(base / "pwml", prefix="op")
    return base


SMALL = ("INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "MODEL.DCRF.NAME", "")


@pytest.mark.parametrize("tta", [False, True])
def test_a_cache_at_a_low_threshold_reproduces_the_model_at_any_higher_one(cohort, tta):
    """The whole point of the cache: one pass at the floor, then each threshold exactly as a
    model built with it (single model and flip TTA with its majority vote)."""
    torch.manual_seed(0)
    floor_cfg = tiny_cfg("E", *SMALL, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    net = build_model(floor_cfg).eval()

    def wrapped(cfg):  # the same weights, the config's score threshold
        model = build_model(cfg).eval()
        model.load_state_dict(net.state_dict())
        return LesionEnsemble.from_config(cfg, [model], flip=True).eval() if tta else model

    slices = collect_predictions(wrapped(floor_cfg), build_pwml_test_loader(floor_cfg, "op_val"))
    scores = torch.cat([s.scores for s in slices])
    assert len(scores) > 0
    for t in (float(scores.quantile(0.3)), float(scores.quantile(0.7))):
        t = round(t, 3)
        cfg = tiny_cfg("E", *SMALL, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", str(t))
        model = wrapped(cfg)
        by_file = {s.file_name: s for s in slices}
        with torch.no_grad():
            for batch in build_pwml_test_loader(cfg, "op_val"):
                out = model(batch)[0]
                got = slice_prediction(by_file[batch[0]["file_name"]], score_threshold=t)
                assert torch.equal(torch.from_numpy(got), out["lesion_mask"])


def _args(config, out, *extra):
    return [
        "--config-file",
        str(config),
        "--dataset",
        "op_val",
        "--output",
        str(out),
        "--init-points",
        "1",
        "--n-iter",
        "1",
        *extra,
        "MODEL.DEVICE",
        "cpu",
        *SMALL[:4],
    ]


def test_the_tool_writes_the_calibrated_point_and_never_a_worse_one(cohort, tmp_path):
    import json

    torch.manual_seed(0)
    weights = tmp_path / "e.pth"
    torch.save({"model": build_model(tiny_cfg("E")).state_dict()}, weights)
    out = tmp_path / "E_tuned.yaml"
    assert tune_main(_args(TINY_ROWS["E"], out, "--weights", str(weights))) == 0
    trials = json.loads(out.with_suffix(".json").read_text())
    assert trials["search"] == ["score", "crf"] and trials["objective"] == "dice"
    assert trials["start"]["score"] == 0.7 and trials["start"]["l1"] == 2.0
    assert trials["best"]["value"] >= trials["start"]["value"]
    assert trials["best"]["value"] == max(t["value"] for t in trials["trials"])
    cfg = get_rsrcnn_cfg(str(out))
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == trials["best"]["score"]
    assert cfg.MODEL.DCRF.NAME == "DenseCRFPostprocessor"
    assert cfg.MODEL.DCRF.ITERATIONS == trials["best"]["e1"]

    # row B has no CRF: its threshold alone, and the tuned config adds none
    torch.save({"model": build_model(tiny_cfg("B")).state_dict()}, weights)
    out_b = tmp_path / "B_tuned.yaml"
    assert (
        tune_main(
            _args(TINY_ROWS["B"], out_b, "--weights", str(weights), "--objective", "lesion_f1")
        )
        == 0
    )
    trials_b = json.loads(out_b.with_suffix(".json").read_text())
    assert set(trials_b["best"]) == {"score", "value"}
    assert [t["score"] for t in trials_b["trials"]] == [
        0.7,
        *(t for t in DEFAULT_SCORE_GRID if t != 0.7),
    ]
    assert "DCRF" not in out_b.read_text()
    assert get_rsrcnn_cfg(str(out_b)).MODEL.DCRF.NAME == ""
    assert trials_b["best"]["value"] >= trials_b["start"]["value"]


# ------------------------------------------------ issue 23: nothing found; the calibrated inference
def _cached(monkeypatch, slices):
    """The tool's network pass replaced by hand-made cached slices (the model is still built
    and its weights loaded): the calibration's figures are then known exactly."""
    from rsrcnn_d2.tuning import calibrate

    monkeypatch.setattr(
        calibrate, "collect_predictions", lambda model, loader, progress=False: slices
    )


def _row_b_weights(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "b.pth"
    torch.save({"model": build_model(tiny_cfg("B")).state_dict()}, weights)
    return weights


def test_a_calibration_that_finds_nothing_writes_no_tuned_config(
    cohort, tmp_path, monkeypatch, capsys
):
    import json

    # the only detection is the false positive: every threshold scores Dice 0
    lonely = _slice([0.3, 0.9])
    lonely.mask_probs, lonely.network_boxes = lonely.mask_probs[1:], lonely.network_boxes[1:]
    lonely.scores = lonely.scores[1:]
    _cached(monkeypatch, [lonely])
    out = tmp_path / "B_tuned.yaml"
    args = _args(TINY_ROWS["B"], out, "--weights", str(_row_b_weights(tmp_path)))
    assert tune_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "tune_operating_point: error: op_val: none of 23 operating points scores above "
        "predicting no lesion (strict mean Dice (slices with a lesion in truth or prediction) "
        "0.0000, no lesion: 0.0000): "
        "nothing to calibrate, no tuned config written"
    )
    assert not out.exists()
    trials = json.loads(out.with_suffix(".json").read_text())
    assert trials["best"] is None and trials["empty_prediction_value"] == 0.0
    assert {t["value"] for t in trials["trials"]} == {0.0}


def test_the_empty_prediction_is_what_a_calibration_must_beat():
    from rsrcnn_d2.tuning.operating_point import empty_prediction_value

    s = _slice([0.6, 0.3])
    assert empty_prediction_value([s], "dice") == 0.0  # a lesion slice, nothing predicted
    assert empty_prediction_value([s], "lesion_f1") == 0.0  # one lesion missed
    found = tune_operating_point([s], 0.7, None)
    assert found.empty_value == 0.0 and not found.found_nothing
    nothing = tune_operating_point([_slice([0.01, 0.02])], 0.7, None)  # below every grid point
    assert nothing.best_value == 0.0 and nothing.found_nothing


@pytest.mark.parametrize(
    "tta, best, record",
    [
        # one model: the false positive (0.3) is dropped from 0.35 up
        (False, 0.35, {"MODELS": 1, "FLIP_TTA": False, "VOTES": 1}),
        # flip TTA: the false positive has one view's vote of two, the lesion both from 0.05 up
        (True, 0.05, {"MODELS": 1, "FLIP_TTA": True, "VOTES": 2}),
    ],
)
def test_the_tuned_config_runs_the_inference_it_was_calibrated_with(
    cohort, tmp_path, monkeypatch, capsys, tta, best, record
):
    import shutil

    from rsrcnn_d2.inference import LesionPredictor
    from rsrcnn_d2.inference.calibration import (
        InferenceSettings,
        calibrated_with,
        calibration_mismatch,
    )

    member = [[0.6, 0.5], [0.3, 0.0]] if tta else None
    _cached(monkeypatch, [_slice([0.6, 0.3], member=member, min_votes=2 if tta else 1)])
    out = tmp_path / "run" / "B_tuned.yaml"
    args = _args(TINY_ROWS["B"], out, "--weights", str(_row_b_weights(tmp_path)))
    assert tune_main([*args, "TEST.FLIP_TTA", str(tta)]) == 0
    assert "score thresholds" in capsys.readouterr().err  # the grid's progress bar
    # point 4: an absolute _BASE_, so a copy in another folder loads the same config
    elsewhere = tmp_path / "shared" / "copy.yaml"
    elsewhere.parent.mkdir()
    shutil.copy(out, elsewhere)
    for path in (out, elsewhere):
        cfg = get_rsrcnn_cfg(str(path), ["MODEL.DEVICE", "cpu"])
        assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == best
        assert cfg.MODEL.ROI_HEADS.NAME == "ReferenceSamplingROIHeads"  # from the base
        assert cfg.TEST.FLIP_TTA is tta and dict(cfg.TEST.CALIBRATED_WITH) == record
    text = out.read_text()
    assert ("ENSEMBLE_MIN_VOTES: 0" in text) is tta  # only where members vote
    assert f"# calibrated with: flip TTA {'on' if tta else 'off'}, 1 model" in text
    # point 5: built from the tuned config, the predictor runs what was calibrated
    settings = calibrated_with(cfg)
    assert settings == InferenceSettings(tta, 1, 2 if tta else 1)
    assert LesionPredictor.from_config(cfg).inference == settings
    assert calibration_mismatch(cfg, settings) is None
    other = InferenceSettings(not tta, 1, 1 if tta else 2)
    assert f"was calibrated with flip TTA {'on' if tta else 'off'}" in calibration_mismatch(
        cfg, other
    )


def test_a_calibration_record_does_not_invalidate_a_prediction_cache(cohort):
    """TEST.CALIBRATED_WITH says how an earlier point was calibrated; the network's outputs do
    not depend on it, so re-tuning a tuned config reuses the cache of its base."""
    from rsrcnn_d2.tuning import prediction_cache_key

    plain = tiny_cfg("B")
    recorded = tiny_cfg("B", "TEST.CALIBRATED_WITH.MODELS", "1", "TEST.CALIBRATED_WITH.VOTES", "1")
    flipped = tiny_cfg("B", "TEST.FLIP_TTA", "True")
    key = prediction_cache_key(plain, "op_val", "")
    assert prediction_cache_key(recorded, "op_val", "") == key
    assert prediction_cache_key(flipped, "op_val", "")["config_sha256"] != key["config_sha256"]


def test_an_output_that_is_a_folder_is_refused_before_any_trial(tmp_path, capsys):
    folder = tmp_path / "tuned"
    folder.mkdir()
    args = ["--config-file", str(TINY_ROWS["E"]), "--dataset", "no_such_dataset"]
    assert tune_main([*args, "--output", str(folder), "MODEL.DEVICE", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"tune_operating_point: error: {folder}: is a folder; --output takes the tuned config "
        "file to write"
    )  # the dataset, which does not exist, was never reached
    assert list(folder.iterdir()) == []


# ------------------------------------- the CRF's search (tools/tune_dcrf.py's, now --search crf)
FAST = dict(init_points=2, n_iter=2, seed=0)


@pytest.fixture(scope="module")
def crf_slices(cohort):
    """A seeded untrained row E's cached outputs on op_val, every detection kept."""
    cfg = tiny_cfg("E", *SMALL, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    torch.manual_seed(0)
    slices = collect_predictions(build_model(cfg).eval(), build_pwml_test_loader(cfg, "op_val"))
    assert sum(len(s.scores) for s in slices) > 0
    return slices


@pytest.mark.parametrize("objective", ["dice", "lesion_f1"])
def test_one_pass_over_the_grid_gives_each_thresholds_own_value(crf_slices, objective):
    """Each slice pasted once (through the CRF) for every threshold: the values are those of
    one pass per threshold, exactly."""
    crf = crf_from_params({"l1": 3.0, "l2": 5.0, "c1": 10.0, "e1": 2})
    grid = [None, 0.0, 0.05, 0.3, 0.99]
    alone = [objective_value(crf_slices, objective, crf, 0.5, t) for t in grid]
    assert objective_values(crf_slices, objective, crf, 0.5, grid) == alone
    assert len(set(alone)) > 1  # the thresholds select different detections
    by_hand = objective_values([_slice([0.6, 0.3])], objective, None, 0.5, [0.7, 0.5, 0.1])
    assert by_hand == (
        [0.0, 1.0, pytest.approx(32 / 48)]
        if objective == "dice"
        else [0.0, 1.0, pytest.approx(2 / 3)]
    )


def _crf_alone(slices, start, **kwargs):
    """The CRF's parameters searched at one fixed threshold (0: every cached detection)."""
    return tune_operating_point(slices, 0.0, start, score_grid=[0.0], **kwargs)


def test_the_crf_search_starts_from_the_config_and_is_never_worse(crf_slices):
    start = params_from_cfg(tiny_cfg("E"))
    assert start == {"l1": 2.0, "l2": 4.0, "c1": 6.0, "e1": 1}
    result = _crf_alone(crf_slices, start, **FAST)
    assert result.trials[0][0] == {"score": 0.0, **start}  # probed first
    assert result.start_value == pytest.approx(
        mean_dice(crf_slices, crf_from_params(start), score_threshold=0.0)
    )
    assert result.best_value >= result.start_value
    assert result.best_value == max(v for _, v in result.trials)
    assert len(result.trials) >= 2
    assert all(isinstance(p["e1"], int) and p["score"] == 0.0 for p, _ in result.trials)


def test_the_seeded_crf_search_is_reproducible(crf_slices):
    start = params_from_cfg(tiny_cfg("E"))
    a, b = _crf_alone(crf_slices, start, **FAST), _crf_alone(crf_slices, start, **FAST)
    assert a.best == b.best and a.best_value == b.best_value
    assert [p for p, _ in a.trials] == [p for p, _ in b.trials]


def test_a_crf_start_outside_the_bounds_is_still_scored(crf_slices):
    start = {"l1": 50.0, "l2": 4.0, "c1": 6.0, "e1": 1}
    result = _crf_alone(crf_slices, start, init_points=1, n_iter=0, seed=1)
    assert result.trials[0][0] == {"score": 0.0, **start}
    assert result.best_value >= result.start_value


def test_crf_bounds_the_crf_cannot_run_in_are_refused_before_any_trial(capsys):
    crf = {"l1": 1, "l2": 2, "c1": 3, "e1": 1}
    bad = {"l1": (1, 2), "l2": (1, 2), "c1": (1, 2), "e1": (0, 3)}
    with pytest.raises(ValueError, match="bounds of e1"):
        _crf_alone([], crf, bounds=bad)  # no slices: refused before any scoring
    from rsrcnn_d2.cli.tune_operating_point import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args(["--config-file", str(TINY_ROWS["E"]), "--l1", "0", "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "tune_operating_point: error: search bounds of l1: need 0 < low <= high, got (0.0, 2.0) "
        "(--l1 .. --e1)"
    )


# ------------------------------------------------------------------ bad config / weights (issue 11)
def test_the_tool_refuses_weights_of_another_row(cohort, tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    weights = tmp_path / "rowE.pth"
    torch.save({"model": build_model(tiny_cfg("E")).state_dict()}, weights)
    out = tmp_path / "tuned.yaml"
    args = _args(TINY_ROWS["B"], out, "--weights", str(weights))
    assert tune_main(args) == 4
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(
        f"tune_operating_point: error: {weights}: leaves 8 of the model's 110 weight tensors"
    )
    assert not out.exists()
    # the flag loads what fits and tunes
    _cached(monkeypatch, [_slice([0.6, 0.3])])
    assert tune_main(["--allow-partial-weights", *args]) == 0
    assert out.is_file()


def test_a_bad_config_and_truncated_weights_are_one_line_errors(cohort, tmp_path, capsys):
    evil = tmp_path / "evil.yaml"
    evil.write_text(
        f"_BASE_: {TINY_ROWS['E']}\nOUTPUT_DIR: !!python/object/apply:os.system "
        f'["touch {tmp_path / "pwned"}"]\n'
    )
    assert tune_main(["--config-file", str(evil), "--dataset", "op_val"]) == 3
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith(f"tune_operating_point: error: {evil}: YAML tag ")
    )
    assert not (tmp_path / "pwned").exists()
    args = ["--config-file", str(TINY_ROWS["E"]), "--dataset", "op_val"]
    assert tune_main([*args, "MODEL.NOPE", "1"]) == 3
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith("config override: unknown config key MODEL.NOPE")
    )
    truncated = tmp_path / "w.pth"
    truncated.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    args += ["--weights", str(truncated), "--output", str(tmp_path / "t.yaml")]
    assert tune_main([*args, "MODEL.DEVICE", "cpu"]) == 4
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith(f"tune_operating_point: error: {truncated}: cannot load weights")
    )
