"""``rsrcnn-predict`` / ``tools/predict.py``: lesion masks for NIfTI volumes or slice PNGs.

    rsrcnn-predict INPUT --output OUT --config-file CFG.yaml --weights model_final.pth
                   [--axis axial] [--save-prob] [--overlays] [KEY VALUE ...]
    rsrcnn-predict INPUT --output OUT --classical PARAMS.yaml [--axis axial] ...

--classical runs the classical baseline (row A, rsrcnn_d2.classical) with the
parameters tools/tune_classical.py wrote, instead of a network.

INPUT is a NIfTI volume, a folder of volumes or a folder of slice PNGs
(``<slice>.png`` or ``input/<subject>/<slice>.png``). Outputs in OUT:
``<case>_lesion.nii.gz`` (uint8, the input's affine and header) for
``<case>.nii.gz`` or ``<case>_0000.nii.gz``; ``<case>_prob.nii.gz`` with
--save-prob; ``<case>_overlays/<axis>_<index>.png`` for each slice with a
predicted lesion with --overlays. Slice PNGs give mask PNGs (0/255) of the
same names, ``<name>_prob.npy`` and ``<name>_overlay.png``.

OUT may not lie inside the input folder (--allow-output-in-input permits it);
input files are never overwritten. Weights that leave any of the model's
parameters uninitialised (another row's checkpoint) are refused unless
--allow-partial-weights. Exit status (rsrcnn_d2.errors), errors as one line:

    0  all inputs predicted
    1  some inputs failed (the others' outputs are written)
    2  bad input data, arguments or output location: nothing could start
    3  bad config file (unknown key, unsafe YAML tag, unreadable)
    4  bad weights file (missing, truncated, unsafe pickle, does not fit the model)
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ..data.errors import PWMLDataError
from ..errors import EXIT_DATA, EXIT_PARTIAL, report_errors

__all__ = ["build_parser", "setup_cfg", "build_predictor", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rsrcnn-predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="NIfTI volume, folder of volumes, or folder of slice PNGs")
    p.add_argument("--output", "-o", required=True, help="output folder (created if missing)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", metavar="FILE",
                       help="the model's config (e.g. the config.yaml train_net wrote)")
    model.add_argument("--classical", metavar="PARAMS",
                       help="the classical detector's parameters file (row A), instead of a model")
    p.add_argument("--weights", default=None, help="checkpoint to load (sets MODEL.WEIGHTS)")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="load a checkpoint that leaves some of the model's layers at their random "
                        "initialisation (refused by default: it predicts near-empty masks)")
    p.add_argument("--axis", default="axial", choices=["axial", "coronal", "sagittal"],
                   help="slice axis in canonical (RAS+) orientation, as in prepare_pwml")
    p.add_argument("--save-prob", action="store_true", help="also write the probability maps")
    p.add_argument("--overlays", action="store_true",
                   help="also write a PNG of every slice with a predicted lesion")
    p.add_argument("--allow-output-in-input", action="store_true",
                   help="permit an output folder inside the input folder")
    p.add_argument("--batch-size", type=int, default=4, help="slices per model call")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("opts", nargs="*", default=[],
                   help="config overrides as KEY VALUE pairs, e.g. MODEL.DEVICE cpu")
    return p


def setup_cfg(args: argparse.Namespace):
    """Config from --config-file, --weights and the overrides; CPU when CUDA is absent."""
    from .. import get_rsrcnn_cfg
    from ..config import fall_back_to_cpu

    opts = list(args.opts) + (["MODEL.WEIGHTS", args.weights] if args.weights else [])
    cfg = get_rsrcnn_cfg(args.config_file, opts)
    if fall_back_to_cpu(cfg):
        print("CUDA is not available: predicting on the CPU", file=sys.stderr)
    if not cfg.MODEL.WEIGHTS:
        raise PWMLDataError(args.config_file, "no trained weights: pass --weights (or MODEL.WEIGHTS)")
    cfg.freeze()
    return cfg


def build_predictor(args: argparse.Namespace):
    """The `LesionPredictor` the run uses (tests replace this with a stand-in)."""
    from .predictor import LesionPredictor

    if args.classical:
        from ..classical import ClassicalPredictor, load_params

        if args.opts or args.weights or args.allow_partial_weights:
            raise PWMLDataError(args.classical, "--weights, --allow-partial-weights and config "
                                                "overrides apply to networks, not to --classical")
        return ClassicalPredictor(load_params(args.classical), batch_size=args.batch_size)
    return LesionPredictor.from_config(setup_cfg(args), batch_size=args.batch_size,
                                       allow_partial_weights=args.allow_partial_weights)


@report_errors("rsrcnn-predict")
def main(argv: Optional[List[str]] = None) -> int:
    from tqdm import tqdm

    from . import io
    from .predictor import predict_inputs

    args = build_parser().parse_intermixed_args(argv)
    try:  # the project's errors (bad data, config, weights) are reported by report_errors
        inputs = io.find_inputs(args.input)
        io.check_output_location(args.input, args.output, args.allow_output_in_input)
        predictor = build_predictor(args)
    except FileNotFoundError as e:
        print(f"rsrcnn-predict: error: {e}", file=sys.stderr)
        return EXIT_DATA
    report = predict_inputs(predictor, inputs, args.output, axis=args.axis,
                            save_prob=args.save_prob, overlays=args.overlays,
                            progress=not args.no_progress, log=tqdm.write)
    done = len(report.written)
    print(f"{done} of {len(inputs)} input(s) predicted, outputs in {Path(args.output).resolve()}")
    if report.failures:
        print(f"{len(report.failures)} failed:", file=sys.stderr)
        for _, message in report.failures:
            print(f"  {message}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0
