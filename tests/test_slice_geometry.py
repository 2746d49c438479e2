"""Test-time scale equal to the training's for slices of another shape, and the unlike-input
warning."""

import importlib.util
import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from PIL import Image

from rsrcnn_d2 import get_rsrcnn_cfg
from rsrcnn_d2.data.augmentation import TrainingScaleResize, build_pwml_augmentations
from rsrcnn_d2.data.fileio import save_slice
from rsrcnn_d2.data.mapper import PWMLDatasetMapper
from rsrcnn_d2.data.slice_geometry import SliceGeometry, record_training_geometry, training_geometry
from rsrcnn_d2.errors import ConfigError
from rsrcnn_d2.inference import LesionPredictor, find_inputs, predict_inputs

from conftest import REPO, TINY_ROWS, tiny_cfg

# a model trained on 128 x 128 whole slices (no head crop), tested with the same sizes
WHOLE_128 = (
    "INPUT.CROP_TO_HEAD",
    "False",
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "128",
)


def whole_slice_cfg(*opts):
    return tiny_cfg("E", *WHOLE_128, "INPUT.TRAIN_SLICE_SIZE", "[128, 128]", *opts)


class RecordingModel:
    """Stand-in for RSRCNN that keeps what it was given and predicts nothing."""

    def __init__(self):
        self.inputs = []

    def __call__(self, batch):
        self.inputs += batch
        return [
            {
                "lesion_mask": torch.zeros(x["height"], x["width"], dtype=torch.bool),
                "lesion_prob": torch.zeros(x["height"], x["width"]),
            }
            for x in batch
        ]


def resize_of(image, cfg):
    """The test-time transform cfg gives ``image`` (one resize)."""
    augs = T.AugmentationList(build_pwml_augmentations(cfg, is_train=False))
    aug = T.AugInput(image)
    tfm = augs(aug).transforms
    assert len(tfm) == 1 and isinstance(tfm[0], T.ResizeTransform)
    return (tfm[0].h, tfm[0].w), (tfm[0].new_h, tfm[0].new_w)


# ------------------------------------------------------------------ the scale
def test_a_200x130_slice_keeps_the_training_scale():
    image = np.random.default_rng(0).uniform(0, 100, (200, 130)).astype(np.float32)
    assert resize_of(image, whole_slice_cfg()) == (
        (200, 130),
        (200, 130),
    )  # scale 1, as in training
    assert resize_of(image[:128, :128], whole_slice_cfg()) == ((128, 128), (128, 128))
    # detectron2's resize (unknown geometry, or asked for) caps the long side: 0.64x
    assert resize_of(image, tiny_cfg("E", *WHOLE_128)) == ((200, 130), (128, 83))
    assert resize_of(image, whole_slice_cfg("INPUT.TEST_RESIZE", "shortest_edge")) == (
        (200, 130),
        (128, 83),
    )


def test_the_scale_is_the_one_the_test_sizes_give_the_median_training_slice():
    cfg = whole_slice_cfg(
        "INPUT.TRAIN_SLICE_SIZE", "[100, 64]"
    )  # 64 -> 128 (2x), 100 -> 200 <= 256
    cfg.INPUT.MAX_SIZE_TEST = 256
    (resize,) = build_pwml_augmentations(cfg, False)
    assert isinstance(resize, TrainingScaleResize) and resize.scale == 2.0
    assert resize_of(np.ones((150, 90), np.float32), cfg)[1] == (300, 180)


def test_spacing_keeps_the_millimetres_per_network_pixel():
    (resize,) = build_pwml_augmentations(
        whole_slice_cfg("INPUT.TRAIN_SLICE_SPACING", "[1.0, 0.8]"), False
    )
    image = np.ones((200, 130), np.float32)
    tfm = resize.get_transform(image, spacing=(0.5, 1.2))  # finer rows, coarser columns
    assert (tfm.new_h, tfm.new_w) == (100, 195)
    assert (resize.get_transform(image).new_h, resize.get_transform(image).new_w) == (200, 130)


def test_head_crop_keeps_the_reference_resize():
    cfg = get_rsrcnn_cfg(
        str(REPO / "configs" / "Base-RSRCNN.yaml"), ["INPUT.TRAIN_SLICE_SIZE", "[128, 128]"]
    )
    (resize,) = build_pwml_augmentations(cfg, False)
    assert isinstance(resize, T.ResizeShortestEdge) and resize.short_edge_length == (512, 512)


def test_bad_geometry_keys_are_config_errors():
    with pytest.raises(ConfigError, match="INPUT.TRAIN_SLICE_SIZE: must be two positive numbers"):
        build_pwml_augmentations(whole_slice_cfg("INPUT.TRAIN_SLICE_SIZE", "[128, 0]"), False)
    with pytest.raises(ConfigError, match="INPUT.TEST_RESIZE: must be"):
        build_pwml_augmentations(whole_slice_cfg("INPUT.TEST_RESIZE", "square"), False)


def test_the_predictor_and_the_evaluation_mapper_agree(tmp_path):
    cfg = whole_slice_cfg("INPUT.TRAIN_SLICE_SPACING", "[1.0, 1.0]")
    image = np.random.default_rng(1).uniform(0, 100, (200, 130)).astype(np.float32)
    model = RecordingModel()
    LesionPredictor(model, build_pwml_augmentations(cfg, False))(image)
    save_slice(tmp_path / "s.npy", image)
    record = {"file_name": str(tmp_path / "s.npy"), "height": 200, "width": 130, "image_id": 1}
    mapped = PWMLDatasetMapper(cfg, False)(record)
    assert model.inputs[0]["image"].shape == mapped["image"].shape == (3, 200, 130)
    assert torch.equal(model.inputs[0]["image"], mapped["image"])
    # a converted record's own spacing counts as the predictor's volume spacing does
    mapped = PWMLDatasetMapper(cfg, False)({**record, "spacing": [0.5, 1.0, 2.0]})
    assert mapped["image"].shape == (3, 100, 130)


# ------------------------------------------------------------------ prediction runs
def _volume(path, shape, zooms):
    data = np.random.default_rng(2).uniform(1, 100, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([*zooms, 1.0])), path)


def test_a_volume_is_resized_with_its_own_spacing(tmp_path):
    # canonical axial slices of a (X, Y, Z) volume are Y rows x X columns
    _volume(tmp_path / "fine.nii.gz", (130, 200, 2), (0.8, 0.5, 2.0))
    model = RecordingModel()
    predictor = LesionPredictor(
        model,
        build_pwml_augmentations(whole_slice_cfg("INPUT.TRAIN_SLICE_SPACING", "[1.0, 1.0]"), False),
        batch_size=2,
    )
    report = predict_inputs(
        predictor, find_inputs(tmp_path / "fine.nii.gz"), tmp_path / "out", progress=False
    )
    assert report.failures == []
    assert [tuple(x["image"].shape) for x in model.inputs] == [(3, 100, 104)] * 2
    assert [(x["height"], x["width"]) for x in model.inputs] == [(200, 130)] * 2


def _png(path, shape):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(
        np.random.default_rng(3).integers(1, 200, shape).astype(np.uint8), mode="L"
    ).save(path)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def rsrcnn_warnings():
    """The "rsrcnn_d2" logger's warnings, whether or not an earlier setup_logger stopped
    propagation."""
    logger, handler = logging.getLogger("rsrcnn_d2"), _Collect()
    level = logger.level
    logger.setLevel(logging.WARNING if level == logging.NOTSET else min(level, logging.WARNING))
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_warns_once_per_input_whose_size_is_more_than_20_percent_off(tmp_path, rsrcnn_warnings):
    _png(tmp_path / "in" / "wide.png", (200, 130))  # 1.56 x 1.02 the training's
    _png(tmp_path / "in" / "close.png", (140, 118))  # 1.09 x 0.92
    predictor = LesionPredictor(
        RecordingModel(), build_pwml_augmentations(whole_slice_cfg(), False)
    )
    report = predict_inputs(
        predictor, find_inputs(tmp_path / "in"), tmp_path / "out", progress=False
    )
    assert report.failures == []
    assert rsrcnn_warnings == [
        f"{tmp_path / 'in' / 'wide.png'}: slice size 200x130 px "
        "(training: 128x128 px) "
        "differs by more than 20 % from the training data's; it is resized to the "
        "training's scale, but results on unlike data may be poorer"
    ]


def test_warns_once_per_volume_whose_spacing_is_more_than_20_percent_off(tmp_path, rsrcnn_warnings):
    (tmp_path / "in").mkdir()
    _volume(
        tmp_path / "in" / "coarse.nii.gz", (128, 128, 3), (1.0, 1.3, 2.0)
    )  # rows 1.3 mm: 30 % coarser
    _volume(tmp_path / "in" / "near.nii.gz", (128, 128, 3), (1.1, 0.9, 2.0))
    cfg = whole_slice_cfg("INPUT.TRAIN_SLICE_SPACING", "[1.0, 1.0]")
    predictor = LesionPredictor(
        RecordingModel(), build_pwml_augmentations(cfg, False), batch_size=3
    )
    predict_inputs(predictor, find_inputs(tmp_path / "in"), tmp_path / "out", progress=False)
    assert len(rsrcnn_warnings) == 1
    assert rsrcnn_warnings[0].startswith(
        f"{tmp_path / 'in' / 'coarse.nii.gz'}: slice spacing 1.3x1 mm "
        "(training: 1x1 mm) differs by more than 20 %"
    )


# -------------------------------------------------------- recording the training data's geometry
RECORDS = [
    {"height": 128, "width": 128, "spacing": [1.0, 0.9, 2.0]},
    {"height": 128, "width": 140, "spacing": [1.0, 0.9, 2.0]},
    {"height": 120, "width": 150, "spacing": [0.8, 1.0, 2.0]},
    {"height": 128, "width": 120, "spacing": None},
]


def test_training_geometry_is_the_median_slice():
    assert training_geometry(RECORDS) == SliceGeometry(128.0, 134.0, (1.0, 0.9))
    assert training_geometry([{"height": 64, "width": 80}]) == SliceGeometry(64.0, 80.0, None)
    assert training_geometry([]) is None
    assert training_geometry(
        [{"file_name": "a.png"}, {"height": 10, "width": 12}]
    ) == SliceGeometry(10.0, 12.0)


@pytest.fixture
def registered_train_set():
    name = "slice_geometry_test_train"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [dict(r) for r in RECORDS])
    yield name
    DatasetCatalog.remove(name)


def test_record_training_geometry_fills_the_config(registered_train_set):
    cfg = tiny_cfg("E", "DATASETS.TRAIN", f"('{registered_train_set}',)")
    record_training_geometry(cfg)
    assert (cfg.INPUT.TRAIN_SLICE_SIZE, cfg.INPUT.TRAIN_SLICE_SPACING) == (
        [128.0, 134.0],
        [1.0, 0.9],
    )
    cfg.INPUT.TRAIN_SLICE_SIZE = [64.0, 64.0]
    record_training_geometry(cfg, overwrite=False)  # a trained model's config keeps its own
    assert cfg.INPUT.TRAIN_SLICE_SIZE == [64.0, 64.0]
    unknown = tiny_cfg("E", "DATASETS.TRAIN", "('no_such_dataset',)")
    assert record_training_geometry(unknown) is None and unknown.INPUT.TRAIN_SLICE_SIZE == []


@pytest.fixture
def loggers_restored():
    """setup() attaches detectron2's handlers and stops propagation: undo that for later tests."""
    names = ("rsrcnn_d2", "detectron2", "fvcore")
    saved = {
        n: (
            logging.getLogger(n).propagate,
            list(logging.getLogger(n).handlers),
            logging.getLogger(n).level,
        )
        for n in names
    }
    yield
    for n, (propagate, handlers, level) in saved.items():
        logger = logging.getLogger(n)
        for h in logger.handlers:
            if h not in handlers:
                h.close()
        logger.propagate, logger.handlers[:], logger.level = propagate, handlers, level


def test_train_net_writes_the_geometry_into_its_config_yaml(
    registered_train_set, tmp_path, loggers_restored
):
    spec = importlib.util.spec_from_file_location(
        "train_net_geometry", REPO / "tools" / "train_net.py"
    )
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    args = train_net.default_argument_parser().parse_args(
        [
            "--config-file",
            str(TINY_ROWS["E"]),
            "MODEL.DEVICE",
            "cpu",
            "OUTPUT_DIR",
            str(tmp_path),
            "DATASETS.TRAIN",
            f"('{registered_train_set}',)",
        ]
    )
    cfg = train_net.setup(args)
    assert cfg.INPUT.TRAIN_SLICE_SIZE == [128.0, 134.0]
    written = get_rsrcnn_cfg(str(tmp_path / "config.yaml"))
    assert (written.INPUT.TRAIN_SLICE_SIZE, written.INPUT.TRAIN_SLICE_SPACING) == (
        [128.0, 134.0],
        [1.0, 0.9],
    )


def test_size_and_spacing_off_together_are_one_warning(rsrcnn_warnings):
    from rsrcnn_d2.data.slice_geometry import warn_if_unlike

    train = SliceGeometry(128.0, 128.0, (1.0, 1.0))
    assert warn_if_unlike(train, (200, 130), (1.5, 1.0), "scan.nii.gz")
    assert not warn_if_unlike(
        train, (150, 105), (1.19, 0.81), "near.nii.gz"
    )  # 17 %, 18 %, 19 %, 19 %
    assert not warn_if_unlike(
        SliceGeometry(128.0, 128.0), (128, 128), (3.0, 3.0), "unknown spacing"
    )
    assert rsrcnn_warnings == [
        "scan.nii.gz: slice size 200x130 px (training: 128x128 px) "
        "and spacing 1.5x1 mm "
        "(training: 1x1 mm) differ by more than 20 % from the training data's; it is "
        "resized to the training's scale, but results on unlike data may be poorer"
    ]
