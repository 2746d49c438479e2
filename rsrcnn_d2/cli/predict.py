"""``rsrcnn-predict`` / ``tools/predict.py``: lesion masks for NIfTI volumes or slice PNGs.

    rsrcnn-predict -i INPUT -o OUT --config-file CFG.yaml --weights model_best.pth [...]
    rsrcnn-predict -i INPUT -o OUT --config-file CFG.yaml --weights f0.pth f1.pth ...
    rsrcnn-predict -i INPUT -o OUT -m CV_OUTPUT [-f 0 1 2 3 4]      (tools/run_cv.py's folds)
    rsrcnn-predict -i INPUT -o OUT --classical PARAMS.yaml           (row A, no network)
        [--axis axial] [--save-probabilities] [--overlays] [--continue] [--tta | --disable-tta]
        [-device cpu|cuda] [--mask-suffix _lesion] [KEY VALUE ...]

INPUT (``-i`` or the first argument) is a NIfTI volume, a folder of volumes or a
folder of slice PNGs (``<slice>.png`` or ``input/<subject>/<slice>.png``).
Outputs in OUT: ``<case>.nii.gz`` (uint8, the input's affine and header; the name
nnU-Net and rsrcnn-evaluate pair with the label ``<case>.nii.gz``;
``--mask-suffix _lesion`` gives the earlier ``<case>_lesion.nii.gz``) for
``<case>.nii.gz`` or ``<case>_0000.nii.gz``; ``<case>_prob.nii.gz`` with
--save-probabilities; ``<case>_overlays/<axis>_<index>.png`` for each slice with
a predicted lesion with --overlays. Slice PNGs give mask PNGs (0/255) of the
same names, ``<name>_prob.npy`` and ``<name>_overlay.png``.

Several checkpoints (``--weights`` with several files, or the folds of a
cross-validation output with ``-m``) are ensembled, and horizontal-flip
test-time augmentation runs as the config says (TEST.FLIP_TTA; --tta or
--disable-tta override it): the detections of every member are merged, their
per-lesion mask probabilities averaged, and only then come the dense CRF and
the threshold (rsrcnn_d2/inference/ensemble.py). A config written by
tools/tune_operating_point.py runs the inference its threshold was calibrated
with; one line says what runs, and a warning when it is not the calibrated one
(rsrcnn_d2/inference/calibration.py). --continue skips inputs whose outputs exist.
``-device cuda`` on a machine without CUDA stops (exit 2); a config's own "cuda"
falls back to the CPU.

OUT may not lie inside the input folder (--allow-output-in-input permits it);
input files are never overwritten. Weights that leave any of the model's
parameters uninitialised (another row's checkpoint) are refused unless
--allow-partial-weights. Exit status (rsrcnn_d2.errors), errors as one line:

    0  all inputs predicted
    1  some inputs failed (the others' outputs are written)
    2  bad input data, arguments or output location: nothing could start
    3  bad config file (unknown key, unsafe YAML tag, unreadable)
    4  bad weights file (missing, truncated, unsafe pickle, does not fit the model)

The program behind tools/predict.py (also ``rsrcnn-predict``,
``python -m rsrcnn_d2.cli.predict``).
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..errors import EXIT_DATA, EXIT_PARTIAL, PWMLDataError, report_errors
from ..tool_setup import quiet_known_warnings, setup_tool_logging
from ..writable import check_writable
from .common import CONFIG_KEY, add_axis_option

__all__ = ["build_parser", "parse_args", "setup_cfg", "build_predictor", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsrcnn-predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input",
        nargs="?",
        default=None,
        help="NIfTI volume, folder of volumes, or folder of slice PNGs (or -i)",
    )
    p.add_argument(
        "-i",
        "--input",
        dest="input_option",
        metavar="INPUT",
        default=None,
        help="the same as the first argument, as nnU-Net spells it",
    )
    p.add_argument("--output", "-o", required=True, help="output folder (created if missing)")
    model = p.add_mutually_exclusive_group()
    model.add_argument(
        "--config-file",
        metavar="FILE",
        help="the model's config (e.g. the config.yaml train_net wrote)",
    )
    model.add_argument(
        "--classical",
        metavar="PARAMS",
        help="the classical detector's parameters file (row A), instead of a model",
    )
    p.add_argument(
        "--weights",
        nargs="+",
        default=None,
        metavar="FILE",
        help="checkpoint(s) to load; several are ensembled (sets MODEL.WEIGHTS)",
    )
    p.add_argument(
        "-m",
        "--model-folder",
        default=None,
        metavar="CV_OUTPUT",
        help="a tools/run_cv.py output: its folds' checkpoints (and config, unless "
        "--config-file) are ensembled",
    )
    p.add_argument(
        "-f",
        "--folds",
        nargs="+",
        type=int,
        default=None,
        help="folds of --model-folder to use (default: every fold_<i> in it)",
    )
    p.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="load a checkpoint that leaves some of the model's layers at their random "
        "initialisation (refused by default: it predicts near-empty masks)",
    )
    tta = p.add_mutually_exclusive_group()
    tta.add_argument(
        "--tta",
        dest="tta",
        action="store_const",
        const=True,
        default=None,
        help="horizontal-flip test-time augmentation on, whatever the config says "
        "(default: the config's TEST.FLIP_TTA, the inference it was calibrated with)",
    )
    tta.add_argument(
        "--disable-tta",
        dest="tta",
        action="store_const",
        const=False,
        help="horizontal-flip test-time augmentation off, whatever the config says",
    )
    p.add_argument(
        "-device",
        "--device",
        dest="device",
        choices=["cpu", "cuda"],
        default=None,
        help="where the network runs (sets MODEL.DEVICE); cuda without CUDA is an error "
        "(default: the config's, on the CPU when CUDA is absent)",
    )
    add_axis_option(p)
    p.add_argument(
        "--save-probabilities",
        "--save-prob",
        dest="save_prob",
        action="store_true",
        help="also write the probability maps",
    )
    p.add_argument(
        "--overlays",
        action="store_true",
        help="also write a PNG of every slice with a predicted lesion",
    )
    p.add_argument(
        "--continue",
        dest="skip_existing",
        action="store_true",
        help="skip inputs whose outputs already exist in OUT",
    )
    p.add_argument(
        "--mask-suffix",
        default="",
        metavar="SUFFIX",
        help="inserted before .nii.gz in mask names (e.g. _lesion); default none",
    )
    p.add_argument(
        "--allow-output-in-input",
        action="store_true",
        help="permit an output folder inside the input folder",
    )
    p.add_argument("--batch-size", type=int, default=4, help="slices per model call")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "opts",
        nargs="*",
        default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.DEVICE cpu",
    )
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Arguments, with INPUT from -i or the first argument (not both) and the model named once."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.weights:  # `--weights a.pth MODEL.DEVICE cpu`: the overrides are not checkpoints
        first_key = next((i for i, w in enumerate(args.weights) if CONFIG_KEY.fullmatch(w)), None)
        if first_key is not None:
            args.opts = [*args.weights[first_key:], *args.opts]
            args.weights = args.weights[:first_key] or None
    if args.input_option is not None:
        if args.input is not None:  # with -i, a first free word is an override's KEY
            args.opts = [args.input, *args.opts]
        args.input = args.input_option
    if args.input is None:
        parser.error("no input: pass INPUT or -i INPUT")
    if not (args.config_file or args.classical or args.model_folder):
        parser.error("name the model: --config-file, -m/--model-folder or --classical")
    if args.model_folder and (args.classical or args.weights):
        parser.error("-m/--model-folder brings its own checkpoints: no --weights or --classical")
    if args.folds is not None and not args.model_folder:
        parser.error("-f/--folds needs -m/--model-folder")
    return args


def setup_cfg(args: argparse.Namespace):
    """Config from --config-file (or the first fold's config.yaml), the weights, -device and
    the overrides; CPU when the config's CUDA is absent, an error when the user's is. Sets
    ``args.weights`` to the checkpoint list."""
    from ..checkpoint import fold_checkpoints
    from ..config import check_requested_device, device_override, fall_back_to_cpu, get_rsrcnn_cfg

    asked = args.device or device_override(args.opts)  # named by the user: no fall-back
    if asked:
        check_requested_device(asked, "-device" if args.device else "MODEL.DEVICE")
    if args.model_folder:
        args.weights = [str(p) for p in fold_checkpoints(args.model_folder, args.folds)]
    config_file = args.config_file or str(Path(args.weights[0]).parent / "config.yaml")
    opts = list(args.opts) + (["MODEL.WEIGHTS", args.weights[0]] if args.weights else [])
    opts += ["MODEL.DEVICE", args.device] if args.device else []
    cfg = get_rsrcnn_cfg(config_file, opts)
    if fall_back_to_cpu(cfg):
        print("CUDA is not available: predicting on the CPU", file=sys.stderr)
    if not cfg.MODEL.WEIGHTS:
        raise PWMLDataError(config_file, "no trained weights: pass --weights (or MODEL.WEIGHTS)")
    args.weights = args.weights or [cfg.MODEL.WEIGHTS]
    cfg.freeze()
    return cfg


def build_predictor(args: argparse.Namespace):
    """The `LesionPredictor` the run uses (tests replace this with a stand-in): the network of
    the config and weights, or the classical detector (row A) of ``--classical``."""
    if args.classical:
        from ..classical import ClassicalPredictor, load_params

        if args.opts or args.weights or args.allow_partial_weights:
            raise PWMLDataError(
                args.classical,
                "--weights, --allow-partial-weights and config "
                "overrides apply to networks, not to --classical",
            )
        return ClassicalPredictor(load_params(args.classical), batch_size=args.batch_size)
    from ..inference.calibration import log_inference
    from ..inference.predictor import LesionPredictor

    cfg = setup_cfg(args)
    predictor = LesionPredictor.from_config(
        cfg,
        batch_size=args.batch_size,
        allow_partial_weights=args.allow_partial_weights,
        weights=args.weights,
        tta=args.tta,  # None: the config's TEST.FLIP_TTA
    )
    source = {None: "from the config", True: "from --tta", False: "from --disable-tta"}
    log_inference(cfg, predictor.inference, source[args.tta])
    return predictor


@report_errors("rsrcnn-predict")
def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    quiet_known_warnings()
    check_writable(args.output)  # once, before torch loads: not one failure per input
    from tqdm import tqdm

    from ..data.output_lock import output_lock
    from ..inference.inputs import check_output_location, find_inputs
    from ..inference.predictor import predict_inputs

    setup_tool_logging()  # our warnings (unlike slices, partial weights) on the console
    try:  # the project's errors (bad data, config, weights) are reported by report_errors
        inputs = find_inputs(args.input)
        check_output_location(args.input, args.output, args.allow_output_in_input)
        predictor = build_predictor(args)
    except FileNotFoundError as e:
        print(f"rsrcnn-predict: error: {e}", file=sys.stderr)
        return EXIT_DATA
    with output_lock(args.output, "rsrcnn-predict"):  # a second run into -o: exit 2
        report = predict_inputs(
            predictor,
            inputs,
            args.output,
            axis=args.axis,
            save_prob=args.save_prob,
            overlays=args.overlays,
            progress=not args.no_progress,
            log=tqdm.write,
            skip_existing=args.skip_existing,
            mask_suffix=args.mask_suffix,
        )
    done = len(report.written)
    skipped = f" ({len(report.skipped)} skipped: outputs exist)" if report.skipped else ""
    print(
        f"{done} of {len(inputs)} input(s) predicted{skipped}, outputs in "
        f"{Path(args.output).resolve()}"
    )
    if report.failures:
        print(f"{len(report.failures)} failed:", file=sys.stderr)
        for _, message in report.failures:
            print(f"  {message}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
