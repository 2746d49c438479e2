"""add_rsrcnn_config(cfg): every config key the project adds;
get_rsrcnn_cfg: a config read safely.

Both register the project's components first (`register_components`): a config names them
(``RSRCNN``, ``HRPN``, ``pwml_train``, ...), so whoever makes one can build its model and
loaders, without ``import rsrcnn_d2`` having loaded anything.
"""

import os
import re
from typing import Optional

from detectron2.config import CfgNode as CN


def register_components() -> None:
    """Import `rsrcnn_d2.modeling` and `rsrcnn_d2.data`: the model's components in
    detectron2's registries, ``$DETECTRON2_DATASETS/pwml`` as pwml_* in its catalog.

    Once per process (later calls find the modules imported); detectron2's import-time
    warnings hidden (`rsrcnn_d2.tool_setup.known_warnings_hidden`).
    """
    from .tool_setup import known_warnings_hidden

    with known_warnings_hidden():  # (``from . import data`` would ask the lazy package)
        from .data import register_all_pwml  # noqa: F401
        from .modeling import DCRF_REGISTRY  # noqa: F401


def add_rsrcnn_config(cfg: CN) -> None:
    """Add RS R-CNN's keys to a detectron2 config (call before merge_from_file); registers the
    components they name."""
    register_components()
    # --- the meta-architecture (RSRCNN) -----------------------------------------
    cfg.MODEL.RSRCNN = CN()
    # How the model normalises each input image (RSRCNN._normalize in
    # rsrcnn_d2/modeling/meta_arch.py; zscore_image, minmax_uint8_image in postprocessing.py):
    # "minmax_uint8": stretch the image's min..max onto 0..255, then subtract
    #   MODEL.PIXEL_MEAN and divide by MODEL.PIXEL_STD (the reference: 8-bit head
    #   crops minus 56.49; the scale COCO-initialised weights expect);
    # "zscore": zero mean, unit variance per image (PIXEL_MEAN/STD unused);
    # "none": detectron2's (x - PIXEL_MEAN) / PIXEL_STD on the raw intensities.
    cfg.MODEL.RSRCNN.NORMALIZATION = "zscore"
    # Probability above which a pasted mask pixel is lesion (paper: 0.5).
    cfg.MODEL.RSRCNN.MASK_THRESHOLD = 0.5

    # --- H-RPN (proposal generator "HRPN") ----------------------------------------
    cfg.MODEL.HRPN = CN()
    # ReLU on the objectness classifier's two logits (background, lesion) before the
    # softmax, as the reference code's H-RPN; False gives a 2-logit softmax RPN.
    cfg.MODEL.HRPN.OBJECTNESS_RELU = True
    # (How many proposals H-RPN keeps is MODEL.RPN.POST_NMS_TOPK_TRAIN/TEST; the
    # reference: 100 and 100.)

    # --- the RPN's box loss (rsrcnn_d2/modeling/rpn.py; proposal generators SingleNMSRPN, HRPN)
    # What the summed box regression loss is divided by: "sampled_anchors" (detectron2's:
    # MODEL.RPN.BATCH_SIZE_PER_IMAGE x images) or "positive_coordinates" (the reference's: the
    # mean over the positive anchors' 4 coordinates, 16-32x stronger per positive anchor).
    cfg.MODEL.RPN.LOC_LOSS_AVERAGE = "sampled_anchors"

    # --- the reference's ROI sampler (ROI heads "ReferenceSamplingROIHeads" and
    # "ExpandedROIHeads") ----------------------------------------------------------
    # Cap the negatives at int(P / f) - P for P sampled positives, f =
    # MODEL.ROI_HEADS.POSITIVE_FRACTION (the reference: f = 0.33, about 2 negatives
    # per positive), instead of filling BATCH_SIZE_PER_IMAGE up with negatives.
    cfg.MODEL.ROI_HEADS.CAP_NEGATIVES = True

    # --- expanded mask branch (ROI heads "ExpandedROIHeads") ----------------------
    # Expansion factor k of the boxes both branches see (paper: k = 1.3; 1 = none).
    cfg.MODEL.ROI_MASK_HEAD.EXPANSION_K = 1.3
    # The box branch (RoIAlign1) pools the k-expanded proposals too, its deltas still
    # relative to the unexpanded ones (the reference); False pools the proposals.
    cfg.MODEL.ROI_BOX_HEAD.EXPAND_PROPOSALS = True
    # RoIAlign2 output side N; 0 means round(14 * k) as in the paper (k = 1.3 -> 18).
    cfg.MODEL.ROI_MASK_HEAD.EXPANDED_RESOLUTION = 0
    # Number of 3x3 conv layers of the LRS-Net mask head (paper: 2).
    cfg.MODEL.ROI_MASK_HEAD.LRS_NUM_CONV = 2

    # --- augmentation (rsrcnn_d2/data/augmentation.py) --------------------------
    # Range of the random width scale d applied in training (paper: 0.85 < d < 1.15);
    # (1.0, 1.0) disables it. Flip: detectron2's INPUT.RANDOM_FLIP.
    cfg.INPUT.WIDTH_SCALE_RANGE = (0.85, 1.15)

    # --- validation set -----------------------------------------------------------
    # Dataset(s) whose loss drives the plateau LR schedule and picks model_best.pth;
    # kept apart from DATASETS.TEST so the final evaluation never steers training.
    cfg.DATASETS.VAL = ()

    # --- head crop (rsrcnn_d2/data/head_crop.py) ----------------------------------
    # Crop each slice to the bounding box of the head before the resize, as the
    # reference's data were; every output is pasted back at the slice's full size.
    cfg.INPUT.CROP_TO_HEAD = False
    # Margin (pixels of the original slice) added around the head's bounding box.
    cfg.INPUT.HEAD_CROP_MARGIN = 2

    # --- 2.5-D input (rsrcnn_d2/data/mapper.py, rsrcnn_d2/inference/predictor.py) -----
    # Feed the backbone slices z-1, z, z+1 of the volume as its three input channels (in
    # that order; an edge slice repeats itself) instead of three copies of slice z. The
    # network still reads 3 channels, so COCO-initialised weights load unchanged. Needs
    # data converted with the neighbour files (tools/prepare_pwml.py since 2.5-D); 2-D
    # inputs (PNG slices) have no neighbours and get three copies.
    cfg.INPUT.NEIGHBOR_SLICES = False

    # --- training slice geometry (rsrcnn_d2/data/slice_geometry.py) ----------------
    # Median (height, width) in pixels of DATASETS.TRAIN's slices; tools/train_net.py
    # records it in the config.yaml it writes. Empty: unknown (no check, detectron2's resize).
    cfg.INPUT.TRAIN_SLICE_SIZE = []
    # Median in-plane (row, column) spacing in mm of those slices; empty: unknown.
    cfg.INPUT.TRAIN_SLICE_SPACING = []
    # Test-time resize of slices that are not head-cropped, once TRAIN_SLICE_SIZE is known:
    # "training_scale" gives every slice the scale MIN/MAX_SIZE_TEST give the training's
    # median slice (times slice / training spacing), so the same anatomy reaches the
    # network at the same size whatever the slice's shape; "shortest_edge" is
    # detectron2's ResizeShortestEdge, which scales each slice by its own size.
    cfg.INPUT.TEST_RESIZE = "training_scale"

    # --- test-time augmentation (rsrcnn_d2/inference/ensemble.py) -----------------
    # Horizontal-flip TTA in evaluation, CRF tuning, CV prediction and rsrcnn-predict:
    # detections of the slice and of its mirror merged by the test NMS, their mask
    # probabilities averaged before the CRF and the threshold. Off: the paper has none.
    # rsrcnn-predict follows it (--tta / --disable-tta override it, with a warning when the
    # config was calibrated otherwise). (detectron2's multi-scale TEST.AUG is not used.)
    cfg.TEST.FLIP_TTA = False
    # Members (checkpoints x views) that must detect a lesion for an ensemble or TTA to keep
    # it: 0 = a majority (more than half; with one model and flip TTA, both views), n >= 1 =
    # at least n (1: any member's detection counts, detectron2's TTA; capped at the members).
    cfg.TEST.ENSEMBLE_MIN_VOTES = 0
    # --- the inference an operating point was calibrated with (rsrcnn_d2/tuning) ----------
    # tools/tune_operating_point.py writes these with the tuned SCORE_THRESH_TEST (and
    # MODEL.DCRF): a threshold calibrated on one model's scores is not the threshold of a
    # flip-TTA vote or a fold ensemble, so rsrcnn-predict warns when it runs otherwise.
    cfg.TEST.CALIBRATED_WITH = CN()
    # Checkpoints ensembled during the calibration; 0: the operating point was not calibrated.
    cfg.TEST.CALIBRATED_WITH.MODELS = 0
    # TEST.FLIP_TTA during the calibration.
    cfg.TEST.CALIBRATED_WITH.FLIP_TTA = False
    # Members (checkpoints x views) that had to detect a lesion to keep it (1: one model, no TTA).
    cfg.TEST.CALIBRATED_WITH.VOTES = 0

    # --- LR halving on a validation-loss plateau (SOLVER.LR_SCHEDULER_NAME: WarmupPlateauLR)
    cfg.SOLVER.PLATEAU = CN()
    # Evaluations of the validation loss without improvement before the LR is cut (paper: 10).
    cfg.SOLVER.PLATEAU.PATIENCE = 10
    # Factor applied to the LR at each cut (paper: 0.5, "halved").
    cfg.SOLVER.PLATEAU.FACTOR = 0.5
    # Minimum decrease of the validation loss that counts as an improvement (reference: 1e-4).
    cfg.SOLVER.PLATEAU.MIN_DELTA = 0.0
    # Iterations between validation-loss evaluations; 0 means TEST.EVAL_PERIOD.
    cfg.SOLVER.PLATEAU.PERIOD = 0
    # The validation loss watched for the LR cut: one of the model's loss names (the
    # reference: "loss_rpn_cls") or "total_loss" (their sum). model_best.pth: BEST_CHECKPOINT.
    cfg.SOLVER.PLATEAU.MONITOR = "loss_rpn_cls"

    # --- model_best.pth and the run's health (rsrcnn_d2/engine/validation_loss.py, health.py)
    # What makes a validation evaluation's weights model_best.pth (the final evaluation and
    # --eval-only use it): "val_loss", the lowest total validation loss (the reference: Keras'
    # ModelCheckpoint(save_best_only=True) on val_loss); "val_dice", the highest strict Dice
    # of the validation slices at the config's operating point (one inference pass per
    # evaluation, as nnU-Net's pseudo-Dice); "" none (the final weights are used).
    cfg.SOLVER.BEST_CHECKPOINT = "val_loss"
    cfg.SOLVER.HEALTH = CN()
    # No evaluation before the box and mask heads have trained this many iterations since
    # their first foreground ROI can give model_best.pth: before it they predict nothing, and
    # their zero losses make any loss look best.
    cfg.SOLVER.HEALTH.HEAD_ITERS_BEFORE_BEST = 50
    # Iterations between the warnings while the heads have had no foreground ROI.
    cfg.SOLVER.HEALTH.WARN_PERIOD = 200
    # Weights that leave more than this share of the validation slices with lesions without
    # any prediction never become model_best.pth (heads that have not learned yet predict
    # nothing, and their small losses look best), and the evaluated weights doing so get the
    # verdict "no_predictions". 1.0 turns both off.
    cfg.SOLVER.HEALTH.MAX_EMPTY_SHARE = 0.9

    # --- gradient clipping (rsrcnn_d2/solver/clipping.py) -------------------------------
    # SOLVER.CLIP_GRADIENTS.CLIP_TYPE also takes "global_norm": every gradient scaled by one
    # factor when their joint L2 norm exceeds CLIP_VALUE (Keras 2's clipnorm, the reference);
    # detectron2's "norm" clips each parameter's gradient alone.

    # --- dense CRF postprocessor (registry DCRF_REGISTRY) -------------------------
    cfg.MODEL.DCRF = CN()
    # Registered postprocessor name, e.g. "DenseCRFPostprocessor"; "" disables it.
    cfg.MODEL.DCRF.NAME = ""
    # All in the reference's units: pixels and grey levels of the 8-bit image at the
    # network's input scale, on the patch under the expanded box (the CRF runs there).
    # Gaussian pairwise term: spatial std `l1` (pixels) and its compatibility.
    cfg.MODEL.DCRF.GAUSSIAN_SXY = 2.0
    cfg.MODEL.DCRF.GAUSSIAN_COMPAT = 3.0
    # Bilateral pairwise term: spatial std `l2`, intensity std `c1` (0-255 scale).
    cfg.MODEL.DCRF.BILATERAL_SXY = 4.0
    cfg.MODEL.DCRF.BILATERAL_SRGB = 6.0
    cfg.MODEL.DCRF.BILATERAL_COMPAT = 10.0
    # Mean-field inference steps `e1`.
    cfg.MODEL.DCRF.ITERATIONS = 1


def get_rsrcnn_cfg(config_file: str = "", opts=None) -> CN:
    """detectron2's default config + RS R-CNN's keys, merged with a YAML and overrides.

    The YAML and its whole ``_BASE_`` chain are read with a safe loader only:
    configs are passed around (tuned configs, shared runs), and detectron2's own
    loader would fall back to a YAML load that runs the Python a tag names. Any
    problem of the file or the overrides raises `rsrcnn_d2.errors.ConfigError`.
    """
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_rsrcnn_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)
    if opts:
        merge_overrides(cfg, opts, config_file)
    return cfg


def merge_config_file(cfg: CN, config_file: str) -> None:
    """Merge a YAML config (and its _BASE_ chain) into ``cfg``; no tag may construct Python
    objects."""
    import yaml

    from .config_file import check_config_file
    from .errors import ConfigError

    check_config_file(config_file)
    try:
        loaded = load_config_chain(config_file)
        if loaded is not None and loaded.get("VERSION") == cfg.VERSION:
            cfg.merge_from_other_cfg(type(cfg)(loaded))
        else:  # another config version (detectron2 upgrades it) or a base behind a URL
            cfg.merge_from_file(config_file, allow_unsafe=False)
    except ConfigError:  # already names the file and the problem
        raise
    except yaml.constructor.ConstructorError as e:
        tag = re.search(r"tag '([^']*)'", str(e.problem))
        raise ConfigError(
            _yaml_file(e, config_file),
            f"YAML tag {tag.group(1) if tag else ''} is not allowed{_yaml_line(e)}: "
            "configs are read with a safe loader, which constructs no Python "
            "objects",
        ) from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            _yaml_file(e, config_file), f"not valid YAML{_yaml_line(e)}: {problem}"
        ) from None
    except OSError as e:  # a _BASE_ that cannot be read
        raise ConfigError(
            e.filename or config_file,
            f"cannot read config file ({e.strerror or e}), named by the _BASE_ "
            f"chain of {config_file}",
        ) from None
    except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
        raise ConfigError(
            config_file, _key_problem(e) or f"cannot merge this config: {e}"
        ) from None


# _BASE_ values that name no local file: left to detectron2's reader (fvcore's PathManager)
_REMOTE_BASES = ("https://", "http://", "catalog://")


def load_config_chain(config_file: str) -> Optional[dict]:
    """The YAML of ``config_file`` over its ``_BASE_`` chain, as one dict; None when the chain
    leaves what this reads (a URL base, a list of bases: detectron2 reads those).

    detectron2's rule (fvcore's ``load_yaml_with_base``): a relative base is relative to the
    file naming it; a file's keys override its base's, mappings merged key by key. Read with
    libyaml's safe loader where PyYAML has it (about 10x faster than the pure-Python one,
    which every config of every run and test went through), so no tag constructs an object.
    A chain that leads back to one of its own files is a `ConfigError` naming the cycle.
    """
    import yaml

    from .errors import ConfigError

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    chain, named, documents = [], str(config_file), []
    while True:
        real = os.path.realpath(named)  # the cycle check compares files; bases follow names
        if real in chain:
            cycle = " -> ".join([*chain[chain.index(real) :], real])
            raise ConfigError(config_file, f"the _BASE_ chain is a cycle: {cycle}")
        chain.append(real)
        document = _read_yaml(named, loader)
        if not isinstance(document, dict):
            raise TypeError(f"{named} holds no mapping of config keys")
        documents.append(document)
        if "_BASE_" not in document:
            break
        base = document.pop("_BASE_")
        if not isinstance(base, str) or base.startswith(_REMOTE_BASES):
            return None  # a list of bases, a URL: detectron2's reader follows those
        base = os.path.expanduser(base)
        # relative to the file as named, as fvcore resolves it (a link's own folder)
        named = base if os.path.isabs(base) else os.path.join(os.path.dirname(named), base)
    merged = {}
    for document in reversed(documents):  # the deepest base first
        _merge_into(document, merged)
    return merged


def _read_yaml(path: str, loader):
    """``path`` parsed by ``loader``; on a YAML error, parsed again by PyYAML's own safe
    loader, whose error names the file, line and problem as the programs always said."""
    import yaml

    with open(path) as f:
        try:
            return yaml.load(f, Loader=loader)
        except yaml.YAMLError:
            f.seek(0)
            return yaml.safe_load(f)


def _merge_into(source: dict, target: dict) -> None:
    """``source``'s keys over ``target``'s, nested mappings merged key by key (fvcore's rule;
    a mapping over a non-mapping is an error, as there)."""
    for key, value in source.items():
        if isinstance(value, dict) and key in target:
            if not isinstance(target[key], dict):
                raise TypeError(f"cannot inherit key {key!r} from base")
            _merge_into(value, target[key])
        else:
            target[key] = value


def merge_overrides(cfg: CN, opts, config_file: str = "") -> None:
    """Merge ``KEY VALUE`` overrides; a wrong key or value is a `ConfigError` naming them."""
    from .errors import ConfigError

    opts = list(opts)
    where = config_file or "config overrides"
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        problem = _key_problem(e) or str(e)
        raise ConfigError(
            where, f"config override: {problem}" if config_file else problem
        ) from None


def _key_problem(error: Exception) -> str:
    """yacs's 'Non-existent (config) key: X' as 'unknown config key X'; '' for other errors."""
    message = str(error.args[0]) if error.args else ""
    if not message.startswith("Non-existent"):
        return ""
    return f"unknown config key {message.split(':', 1)[1].strip()}"


def _yaml_file(error, default: str) -> str:
    mark = getattr(error, "problem_mark", None)
    return mark.name if mark is not None and not mark.name.startswith("<") else default


def _yaml_line(error) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def fall_back_to_cpu(cfg: CN) -> bool:
    """Set MODEL.DEVICE to "cpu" when it asks for CUDA that this machine lacks.

    Returns True when it changed the config (the caller logs it). The configs
    keep detectron2's default "cuda" so that GPU users need no override; a device
    the user names (``-device``, a ``MODEL.DEVICE`` override) goes through
    `check_requested_device` instead, which refuses rather than falls back.
    """
    import torch

    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.MODEL.DEVICE = "cpu"
        if frozen:
            cfg.freeze()
        return True
    return False


def device_override(opts) -> str:
    """The MODEL.DEVICE a ``KEY VALUE`` override list sets (the last one wins); "" for none."""
    opts = [str(o) for o in opts or ()]
    found = [opts[i + 1] for i in range(0, len(opts) - 1, 2) if opts[i] == "MODEL.DEVICE"]
    return found[-1] if found else ""


def check_requested_device(device: str, option: str = "-device") -> None:
    """Refuse a CUDA device the user asked for by name that this machine cannot give.

    nnU-Net's behaviour: ``-device cuda`` without CUDA stops (exit 2, one line naming
    ``option`` and ``device``; ``option`` is how the user asked: "-device" or
    "MODEL.DEVICE") instead of quietly running for hours on the CPU; "cpu" works everywhere.
    """
    import torch

    from .errors import PWMLDataError

    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise PWMLDataError(
            f"{option} {device}", f"CUDA is not available on this machine; use {option} cpu"
        )
    index = device.partition(":")[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        raise PWMLDataError(
            f"{option} {device}",
            f"this machine has {torch.cuda.device_count()} CUDA device(s), no {device}",
        )
