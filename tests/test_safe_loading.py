"""No code runs from a config or weights file, and weights that do not fit the model are refused."""

import logging
import pickle

import numpy as np
import pytest
import torch

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.errors import ConfigError, WeightsError

from conftest import TINY_ROWS, whole_slices_at


def _payload(marker):
    """A YAML value that, loaded unsafely, creates ``marker``."""
    return f'!!python/object/apply:os.system ["touch {marker}"]'


# ------------------------------------------------------------------ configs (item 6)
def test_python_tag_in_a_base_config_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    base = tmp_path / "base.yaml"
    base.write_text(f"_BASE_: {TINY_ROWS['B']}\nMODEL:\n  WEIGHTS: {_payload(marker)}\n")
    top = tmp_path / "top.yaml"
    top.write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 3\n")
    with pytest.raises(ConfigError) as info:
        get_rsrcnn_cfg(str(top))
    message = str(info.value)
    assert message.startswith(f"{base}: YAML tag tag:yaml.org,2002:python/object/apply:os.system")
    assert "(line 3)" in message and "safe loader" in message
    assert not marker.exists()


def test_python_tag_in_the_top_config_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    top = tmp_path / "top.yaml"
    top.write_text(
        f'_BASE_: {TINY_ROWS["B"]}\nOUTPUT_DIR: !!python/object/new:os.system ["touch {marker}"]\n'
    )
    with pytest.raises(ConfigError, match=f"^{top}: YAML tag .*python/object/new:os.system"):
        get_rsrcnn_cfg(str(top))
    assert not marker.exists()


def test_a_safe_config_chain_still_loads():
    cfg = get_rsrcnn_cfg(str(TINY_ROWS["E"]), ["SOLVER.MAX_ITER", "7"])
    assert cfg.MODEL.DCRF.NAME == "DenseCRFPostprocessor" and cfg.SOLVER.MAX_ITER == 7


@pytest.mark.parametrize(
    "body, problem",
    [
        ("MODEL:\n  NO_SUCH_KEY: 1\n", "unknown config key MODEL.NO_SUCH_KEY"),
        ("MODEL: [1, 2\n", "not valid YAML"),
        ("SOLVER:\n  MAX_ITER: many\n", "cannot merge this config: Type mismatch"),
        ("_BASE_: missing_base.yaml\n", "cannot read config file"),
    ],
)
def test_bad_config_files_are_config_errors_naming_the_file(tmp_path, body, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        get_rsrcnn_cfg(str(path))
    expected = tmp_path / "missing_base.yaml" if "_BASE_" in body else path
    assert str(info.value).startswith(f"{expected}: {problem}")
    assert "\n" not in str(info.value)


def test_a_base_cycle_is_a_config_error_naming_the_cycle(tmp_path, capsys):
    """a -> b -> a: one line naming the chain (exit 3), not detectron2's RecursionError."""
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\nSEED: 1\n")
    (tmp_path / "b.yaml").write_text("_BASE_: ./a.yaml\n")
    with pytest.raises(ConfigError) as e:
        get_rsrcnn_cfg(str(tmp_path / "a.yaml"))
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert str(e.value) == f"{a}: the _BASE_ chain is a cycle: {a} -> {b} -> {a}"
    (tmp_path / "c.yaml").write_text("_BASE_: c.yaml\n")  # itself
    with pytest.raises(ConfigError, match="cycle: .*c.yaml -> .*c.yaml$"):
        get_rsrcnn_cfg(str(tmp_path / "c.yaml"))


def test_missing_config_and_unknown_override_are_config_errors(tmp_path):
    with pytest.raises(
        ConfigError, match=f"^{tmp_path / 'nope.yaml'}: config file does not exist$"
    ):
        get_rsrcnn_cfg(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r": config override: unknown config key MODEL\.NOPE$"):
        get_rsrcnn_cfg(str(TINY_ROWS["B"]), ["MODEL.NOPE", "1"])
    with pytest.raises(
        ConfigError, match=r"config override: .*odd length: \['SOLVER.MAX_ITER'\]; it must"
    ):
        get_rsrcnn_cfg(str(TINY_ROWS["B"]), ["SOLVER.MAX_ITER"])


# ------------------------------------------------------------------ .pkl / .pth files (item 7)
class _TouchOnLoad:
    """Unpickling this creates a file: what a malicious weights file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _model_zoo_state():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": np.arange(4, dtype=np.float32),
        "bn.num": np.array(7, dtype=np.int64),
        "fc.weight": np.asfortranarray(rng.standard_normal((2, 5))).astype(np.float64),
    }


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(5, 2, bias=False).double()
        self.bn = torch.nn.Module()
        self.bn.register_buffer("num", torch.tensor(0))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_model_zoo_pkl_loads_with_the_same_values(tmp_path, protocol):
    from rsrcnn_d2.checkpoint import load_model_weights

    state = _model_zoo_state()
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump(
            {
                "model": state,
                "__author__": "Detectron2 Model Zoo",
                "matching_heuristics": False,
                "scale": np.float32(0.5),
            },
            f,
            protocol=protocol,
        )
    model = _Tiny()
    incompatible = load_model_weights(model, str(path))
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    loaded = model.state_dict()
    for name, value in state.items():
        assert (
            np.array_equal(loaded[name].numpy(), value)
            and loaded[name].numpy().dtype == value.dtype
        )


def test_pkl_written_by_numpy_1_loads(tmp_path):
    """numpy 1.x names its reconstructor numpy.core.multiarray: the zoo's files use that name."""
    from rsrcnn_d2.checkpoint import restricted_unpickle

    state = _model_zoo_state()
    data = pickle.dumps({"model": state, "__author__": "zoo"}, protocol=2)
    path = tmp_path / "old.pkl"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray\n_reconstruct" in path.read_bytes()
    back = restricted_unpickle(str(path))
    assert back["__author__"] == "zoo"
    assert all(np.array_equal(back["model"][k], v) for k, v in state.items())


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pkl_is_refused_and_does_not_run(tmp_path, protocol):
    from rsrcnn_d2.checkpoint import load_model_weights

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    state = _model_zoo_state()
    state["conv.bias"] = _TouchOnLoad(marker)
    path.write_bytes(pickle.dumps({"model": state, "__author__": "x"}, protocol=protocol))
    with pytest.raises(
        WeightsError,
        match=f"^{path}: unsafe or corrupt pickle: refusing to load "
        r"io\.open: ",
    ):
        load_model_weights(_Tiny(), str(path))
    assert not marker.exists()


def test_codecs_encode_only_makes_latin1_bytes(tmp_path):
    from rsrcnn_d2.checkpoint import restricted_unpickle

    path = tmp_path / "codec.pkl"
    # _codecs.encode('x', 'rot13') is harmless but is not how a numpy array's bytes are stored
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(WeightsError, match="'rot13' is not a numpy array's bytes"):
        restricted_unpickle(str(path))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_truncated_weights_are_a_weights_error(tmp_path, suffix):
    from rsrcnn_d2.checkpoint import load_model_weights

    model = _Tiny()
    path = tmp_path / f"w{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps({"model": _model_zoo_state(), "__author__": "x"}, protocol=2))
    else:
        torch.save({"model": model.state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=f"^{path}: "):
        load_model_weights(model, str(path))
    with pytest.raises(
        WeightsError, match=f"^{tmp_path / 'none.pth'}: weights file does not exist$"
    ):
        load_model_weights(model, str(tmp_path / "none.pth"))


def test_pth_with_a_payload_is_refused_by_weights_only(tmp_path):
    from rsrcnn_d2.checkpoint import load_model_weights

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _Tiny().state_dict(), "extra": _TouchOnLoad(marker)}, path)
    with pytest.raises(WeightsError, match=f"^{path}: cannot load weights"):
        load_model_weights(_Tiny(), str(path))
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".pyth"])
def test_torch_files_load_weights_only_even_when_the_environment_says_otherwise(
    tmp_path, monkeypatch, suffix
):
    """detectron2 reads .pyth with a bare torch.load, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
    makes unsafe."""
    from rsrcnn_d2.checkpoint import load_model_weights

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    key = "model_state" if suffix == ".pyth" else "model"
    good, evil = tmp_path / f"good{suffix}", tmp_path / f"evil{suffix}"
    source = _Tiny()
    torch.save({key: source.state_dict()}, good)
    torch.save({key: source.state_dict(), "extra": _TouchOnLoad(marker)}, evil)
    with pytest.raises(WeightsError, match=f"^{evil}: cannot load weights"):
        load_model_weights(_Tiny(), str(evil))
    assert not marker.exists()
    model = _Tiny()
    load_model_weights(model, str(good))
    assert torch.equal(model.conv.weight, source.conv.weight)


# ------------------------------------------------------------------ foreign weights (item 8)
def _saved_row(row, path):
    from detectron2.modeling import build_model

    from conftest import tiny_cfg

    torch.manual_seed(0)
    model = build_model(tiny_cfg(row))
    torch.save({"model": model.state_dict()}, path)
    return model


@pytest.fixture(scope="module")
def row_e_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("rowE") / "model_final.pth"
    _saved_row("E", path)
    return path


def test_row_e_weights_into_row_b_are_refused(row_e_weights):
    from rsrcnn_d2.inference import LesionPredictor

    from conftest import tiny_cfg

    cfg = tiny_cfg("B", "MODEL.WEIGHTS", str(row_e_weights))
    with pytest.raises(WeightsError) as info:
        LesionPredictor.from_config(cfg)
    message = str(info.value)
    # row E's H-RPN has 2 objectness logits per anchor, its LRS-Net head 2 convs, not 4
    assert message == (
        f"{row_e_weights}: leaves 8 of the model's 110 weight tensors uninitialised "
        "(proposal_generator.rpn_head.objectness_logits.weight, "
        "proposal_generator.rpn_head.objectness_logits.bias, "
        "roi_heads.mask_head.mask_fcn3.weight, roi_heads.mask_head.mask_fcn3.bias, "
        "roi_heads.mask_head.mask_fcn4.weight, ...): weights of another model? "
        "(--allow-partial-weights loads them anyway)"
    )


def test_allow_partial_weights_loads_and_logs_one_table(row_e_weights, caplog):
    from rsrcnn_d2.inference import LesionPredictor

    from conftest import tiny_cfg

    cfg = tiny_cfg("B", "MODEL.WEIGHTS", str(row_e_weights))
    with caplog.at_level(logging.INFO, logger="rsrcnn_d2"):
        predictor = LesionPredictor.from_config(cfg, allow_partial_weights=True)
    tables = [
        r.getMessage() for r in caplog.records if "fit the model only in part" in r.getMessage()
    ]
    assert len(tables) == 1
    lines = tables[0].splitlines()
    assert lines[1].split() == ["module", "loaded", "re-initialised", "unused"]
    rows = {line.split()[0]: [int(n) for n in line.split()[1:]] for line in lines[2:-1]}
    assert rows == {
        "backbone.fpn_lateral*": [12, 0, 0],
        "backbone.fpn_output*": [12, 0, 0],
        "backbone.bottom_up": [60, 0, 0],
        "proposal_generator.rpn_head": [4, 2, 2],
        "roi_heads.box_head": [4, 0, 0],
        "roi_heads.box_predictor": [4, 0, 0],
        "roi_heads.mask_head": [6, 6, 0],
        "total": [102, 8, 2],
    }
    assert lines[-1].startswith("(2 re-initialised for a shape mismatch")
    state = predictor.model.state_dict()
    source = torch.load(row_e_weights, weights_only=True)["model"]
    key = "backbone.bottom_up.stem.conv1.weight"
    assert torch.equal(state[key], source[key])


# ------------------------------------------------------------------ weights of another input form
@pytest.fixture(scope="module")
def row_e_weights_with_form(tmp_path_factory):
    """Row E's weights as train_net saves them: with the input form of row E's config."""
    from detectron2.modeling import build_model

    from rsrcnn_d2.checkpoint import SafeCheckpointer, input_form

    from conftest import tiny_cfg

    folder = tmp_path_factory.mktemp("rowE_form")
    torch.manual_seed(0)
    cfg = tiny_cfg("E")
    SafeCheckpointer(build_model(cfg), str(folder), input_form=input_form(cfg)).save("model_e")
    return folder / "model_e.pth"


def test_saved_checkpoints_record_the_input_form(row_e_weights_with_form):
    form = torch.load(row_e_weights_with_form, weights_only=True)["input_form"]
    assert form["INPUT.NEIGHBOR_SLICES"] is False and form["INPUT.CROP_TO_HEAD"] is True
    assert form["MODEL.RSRCNN.NORMALIZATION"] == "zscore"
    assert form["MODEL.ROI_HEADS.NAME"] == "ExpandedROIHeads"
    assert form["MODEL.ROI_MASK_HEAD.EXPANSION_K"] == 1.3
    assert form["MODEL.PIXEL_MEAN"] == [0.0, 0.0, 0.0]  # the tiny rows z-score


@pytest.mark.parametrize(
    "opts, difference",
    [
        (
            ["INPUT.NEIGHBOR_SLICES", "True"],
            "INPUT.NEIGHBOR_SLICES: False in the weights, True here",
        ),
        (
            ["MODEL.RSRCNN.NORMALIZATION", "minmax_uint8"],
            "MODEL.RSRCNN.NORMALIZATION: zscore in the weights, minmax_uint8 here",
        ),
        (
            ["MODEL.ROI_MASK_HEAD.EXPANSION_K", "2.0"],
            "MODEL.ROI_MASK_HEAD.EXPANSION_K: 1.3 in the weights, 2.0 here",
        ),
    ],
    ids=["2.5-D", "normalisation", "k"],
)
def test_weights_of_another_input_form_are_refused(row_e_weights_with_form, opts, difference):
    """Every tensor fits (same shapes), yet the network would see inputs it never trained on."""
    from rsrcnn_d2.inference import LesionPredictor

    from conftest import tiny_cfg

    cfg = tiny_cfg("E", "MODEL.WEIGHTS", str(row_e_weights_with_form), *opts)
    with pytest.raises(WeightsError) as info:
        LesionPredictor.from_config(cfg)
    assert str(info.value) == (
        f"{row_e_weights_with_form}: weights trained for another input form ({difference}) "
        "(--allow-partial-weights loads them anyway)"
    )


def test_the_pixel_mean_counts_only_where_the_normalisation_uses_it(row_e_weights_with_form):
    from rsrcnn_d2.inference import LesionPredictor

    from conftest import tiny_cfg

    weights = ["MODEL.WEIGHTS", str(row_e_weights_with_form)]
    mean = ["MODEL.PIXEL_MEAN", "[100.0, 100.0, 100.0]"]
    LesionPredictor.from_config(tiny_cfg("E", *weights, *mean))  # z-scored: the mean is unused
    with pytest.raises(
        WeightsError,
        match=r"MODEL.PIXEL_MEAN: \[0.0, 0.0, 0.0\] in the weights, \[100.0, 100.0, 100.0\] here",
    ):
        LesionPredictor.from_config(
            tiny_cfg("E", *weights, *mean, "MODEL.RSRCNN.NORMALIZATION", "none")
        )


def test_row_plus_with_row_e_weights_loads_only_when_allowed(row_e_weights_with_form, caplog):
    from rsrcnn_d2.inference import LesionPredictor

    from conftest import tiny_cfg

    cfg = tiny_cfg("plus", "MODEL.WEIGHTS", str(row_e_weights_with_form))
    with pytest.raises(WeightsError, match="INPUT.NEIGHBOR_SLICES: False in the weights, True"):
        LesionPredictor.from_config(cfg)
    with caplog.at_level(logging.WARNING, logger="rsrcnn_d2"):
        LesionPredictor.from_config(cfg, allow_partial_weights=True)
    assert any(
        "weights trained for another input form (INPUT.NEIGHBOR_SLICES" in r.getMessage()
        for r in caplog.records
    )


def test_row_e_weights_into_row_e_load_silently(row_e_weights, caplog):
    from rsrcnn_d2.inference import LesionPredictor

    from conftest import tiny_cfg

    with caplog.at_level(logging.INFO, logger="rsrcnn_d2"):
        LesionPredictor.from_config(tiny_cfg("E", "MODEL.WEIGHTS", str(row_e_weights)))
    assert any(r.getMessage().startswith("loaded all ") for r in caplog.records)


def test_a_whole_model_as_a_model_zoo_pkl_loads_after_detectron2s_renaming(row_e_weights, tmp_path):
    """The check counts the model's tensors after align_and_update_state_dicts, not the file's
    names."""
    from detectron2.modeling import build_model

    from rsrcnn_d2.checkpoint import load_model_weights

    from conftest import tiny_cfg

    source = torch.load(row_e_weights, weights_only=True)["model"]
    path = tmp_path / "zoo.pkl"
    path.write_bytes(
        pickle.dumps(
            {
                "model": {k: v.numpy() for k, v in source.items()},
                "__author__": "zoo",
                "matching_heuristics": True,
            },
            protocol=2,
        )
    )
    model = build_model(tiny_cfg("E"))
    incompatible = load_model_weights(model, str(path))
    assert incompatible.missing_keys == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.items())


def test_detectron2s_matching_heuristics_query_still_works(tmp_path):
    from rsrcnn_d2.checkpoint import load_model_weights

    source, path = _Tiny(), tmp_path / "w.pth"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = _Tiny()
    assert load_model_weights(model, f"{path}?matching_heuristics=True").missing_keys == []
    assert torch.equal(model.fc.weight, source.fc.weight)


def test_pkl_with_no_matching_keys_is_refused(tmp_path):
    from detectron2.modeling import build_model

    from rsrcnn_d2.checkpoint import load_model_weights

    from conftest import tiny_cfg

    path = tmp_path / "other.pkl"
    path.write_bytes(
        pickle.dumps(
            {"model": _model_zoo_state(), "__author__": "zoo", "matching_heuristics": True}
        )
    )
    model = build_model(tiny_cfg("B"))
    with pytest.raises(
        WeightsError, match=f"^{path}: leaves (\\d+) of the model's \\1 weight tensors"
    ):
        load_model_weights(model, str(path))


# ------------------------------------------------------------------ train_net (items 8, 13)
# train_net's command line (rsrcnn_d2.cli.train_net.cli) called in-process: one worker runs in
# the calling process, and what is checked here (messages, exit codes) needs no fresh interpreter
SMALL = [
    "MODEL.DEVICE",
    "cpu",
    *whole_slices_at(64),
    "SOLVER.IMS_PER_BATCH",
    "1",
    "TEST.EVAL_PERIOD",
    "0",
    "SOLVER.CHECKPOINT_PERIOD",
    "1000",
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from test_data_fixtures import converted_cohort

    return converted_cohort(
        tmp_path_factory.mktemp("cohort"),
        num_subjects=5,
        size=64,
        depth=3,
        seed=0,
        lesion_fraction=0.5,
    )


@pytest.fixture
def registered(cohort):
    """pwml_* pointing at the cohort, as $DETECTRON2_DATASETS would; the process's torch threads
    (train_net sets a worker's share) and the default registration restored after."""
    import torch

    from rsrcnn_d2.data.register import register_all_pwml

    threads = torch.get_num_threads()
    register_all_pwml(cohort / "pwml")
    yield cohort
    torch.set_num_threads(threads)
    register_all_pwml()


def _train_net(capsys, config, *extra):
    """(exit status, stdout + stderr, stderr) of train_net's command line."""
    from rsrcnn_d2.cli.train_net import cli

    extra = [str(e) for e in extra]
    flags = [e for e in extra if e.startswith("--")]
    opts = [e for e in extra if not e.startswith("--")]
    code = cli(["--config-file", str(config), *flags, *SMALL, *opts])
    out, err = capsys.readouterr()
    return code, out + err, err


def test_train_net_from_a_foreign_checkpoint_logs_one_fit_table(
    registered, row_e_weights, tmp_path, capsys
):
    code, log, _ = _train_net(
        capsys,
        TINY_ROWS["B"],
        "MODEL.WEIGHTS",
        row_e_weights,
        "SOLVER.MAX_ITER",
        "1",
        "OUTPUT_DIR",
        tmp_path / "out",
    )
    assert code == 0, log[-3000:]
    assert f"weights {row_e_weights} fit the model only in part (tensors per module):" in log
    rows = [line.split() for line in log.splitlines()]
    assert ["proposal_generator.rpn_head", "4", "2", "2"] in rows
    assert ["roi_heads.mask_head", "6", "6", "0"] in rows and ["total", "102", "8", "2"] in rows
    # instead of detectron2's scattered per-key warnings
    assert "Some model parameters or buffers are not found in the checkpoint" not in log
    assert "Skip loading parameter" not in log
    assert (tmp_path / "out" / "model_final.pth").is_file()


def test_train_net_eval_only_refuses_another_rows_weights_with_exit_4(
    registered, row_e_weights, tmp_path, capsys
):
    code, log, err = _train_net(
        capsys,
        TINY_ROWS["B"],
        "--eval-only",
        "MODEL.WEIGHTS",
        row_e_weights,
        "OUTPUT_DIR",
        tmp_path / "out",
    )
    assert code == 4, log[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        f"train_net.py: error: {row_e_weights}: leaves 8 of the model's 110 weight"
    )
    assert "Traceback" not in err


def test_train_net_eval_only_refuses_weights_of_another_input_form_with_exit_4(
    registered, row_e_weights_with_form, tmp_path, capsys
):
    code, log, err = _train_net(
        capsys,
        TINY_ROWS["E"],
        "--eval-only",
        "MODEL.WEIGHTS",
        row_e_weights_with_form,
        "MODEL.RSRCNN.NORMALIZATION",
        "minmax_uint8",
        "OUTPUT_DIR",
        tmp_path / "out",
    )
    assert code == 4, log[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"train_net.py: error: {row_e_weights_with_form}: weights trained for another input "
        "form (INPUT.CROP_TO_HEAD: True in the weights, False here; "  # SMALL's whole slices
        "MODEL.RSRCNN.NORMALIZATION: zscore in the weights, minmax_uint8 here) "
        "(--allow-partial-weights loads them anyway)"
    )
    assert "Traceback" not in err


def test_train_net_bad_config_exits_3_in_one_line(capsys):
    code, _, err = _train_net(capsys, TINY_ROWS["B"], "MODEL.NOPE", "1")
    assert code == 3 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"train_net.py: error: {TINY_ROWS['B']}: config override: unknown config key MODEL.NOPE"
    ]
