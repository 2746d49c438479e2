"""The training program: train and evaluate RS R-CNN (any row of Table 1) on registered
PWML datasets.

detectron2's idiom: ``--config-file``, ``--num-gpus`` (on a CPU-only machine
``launch`` starts that many GLOO workers), ``--num-machines``, ``--resume``,
``--eval-only`` and trailing ``KEY VALUE`` overrides; ``--dataset-root
[NAME=]DIR`` registers another prepared cohort in every worker. It lives in the
package (run it as ``python -m rsrcnn_d2.engine.train_net`` or through the thin
``tools/train_net.py``) so that the library's own drivers (`rsrcnn_d2.experiments`)
start the installed program, never a script of the repository.
"""

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

import torch

from detectron2.data import build_detection_test_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import rsrcnn_d2
from rsrcnn_d2.checkpoint import (
    SafeCheckpointer,
    input_form,
    load_model_weights,
    load_trainer_weights,
)
from rsrcnn_d2.config import check_requested_device, device_override, fall_back_to_cpu
from rsrcnn_d2.data import PWMLDatasetMapper, build_pwml_test_loader, build_pwml_train_loader
from rsrcnn_d2.data.augmentation import build_pwml_augmentations
from rsrcnn_d2.data.mapper import head_crop_margin
from rsrcnn_d2.data.output_lock import output_lock
from rsrcnn_d2.data.register import register_dataset_roots
from rsrcnn_d2.errors import ConfigError, PWMLDataError, exit_code_of, report_errors
from rsrcnn_d2.evaluation import PWMLEvaluator
from rsrcnn_d2.inference.calibration import InferenceSettings, log_inference
from rsrcnn_d2.inference.ensemble import with_flip_tta
from rsrcnn_d2.parent_death import arm_parent_death
from rsrcnn_d2.solver import PlateauTracker, build_lr_scheduler, build_optimizer
from rsrcnn_d2.tool_setup import logged_step, plain_log_files, quiet_known_warnings

from .ddp import cpu_ddp_support, prepare_cpu_workers, set_worker_threads
from .health import HeadHealthHook
from .validation_dice import validation_dice
from .validation_loss import BEST_CHECKPOINT, ValidationLossHook, insert_before_evaluation

__all__ = [
    "Trainer",
    "setup",
    "main",
    "argument_parser",
    "cli",
    "die_with_launcher",
    "evaluate_weights",
]


class Trainer(DefaultTrainer):
    """DefaultTrainer with the PWML mapper, evaluator and plateau LR schedule."""

    def __init__(self, cfg):
        with cpu_ddp_support():  # GLOO workers on a CPU-only machine
            super().__init__(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_pwml_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_pwml_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return PWMLEvaluator(dataset_name, folder)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)  # CLIP_TYPE global_norm too

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation, with horizontal-flip TTA when TEST.FLIP_TTA is on; one line
        says what runs and whether the operating point was calibrated with it."""
        model = with_flip_tta(cfg, model)
        log_inference(cfg, InferenceSettings.of_model(model))
        return super().test(cfg, model, evaluators)

    def build_hooks(self):
        # before detectron2's hooks take the checkpointer: every checkpoint records the input form
        old = self.checkpointer
        self.checkpointer = SafeCheckpointer(
            old.model,
            old.save_dir,
            input_form=input_form(self.cfg),
            save_to_disk=old.save_to_disk,
            **old.checkpointables,
        )
        hooks = super().build_hooks()
        cfg = self.cfg
        health = cfg.SOLVER.HEALTH
        period = cfg.SOLVER.PLATEAU.PERIOD or cfg.TEST.EVAL_PERIOD
        scale = getattr(self.scheduler, "plateau_scale", None)
        if scale is not None and (period <= 0 or not cfg.DATASETS.VAL):
            raise ValueError(
                "SOLVER.LR_SCHEDULER_NAME WarmupPlateauLR needs DATASETS.VAL and "
                "SOLVER.PLATEAU.PERIOD or TEST.EVAL_PERIOD > 0"
            )
        heads = HeadHealthHook(health.WARN_PERIOD, cfg.OUTPUT_DIR, health.MAX_EMPTY_SHARE)
        if period > 0 and cfg.DATASETS.VAL:
            val = cfg.DATASETS.VAL[0]
            # annotated, un-augmented validation batches for the loss
            mapper = PWMLDatasetMapper(
                True,
                augmentations=build_pwml_augmentations(cfg, False),
                head_crop_margin=head_crop_margin(cfg),
            )

            def batches():
                return build_detection_test_loader(cfg, val, mapper=mapper)

            def dice(model):
                return validation_dice(model, build_pwml_test_loader(cfg, val), val)

            plateau = cfg.SOLVER.PLATEAU
            hook = ValidationLossHook(
                period,
                batches,
                scale,
                PlateauTracker(plateau.PATIENCE, plateau.MIN_DELTA),
                plateau.FACTOR,
                monitor=plateau.MONITOR,
                output_dir=cfg.OUTPUT_DIR,
                criterion=cfg.SOLVER.BEST_CHECKPOINT,
                dice_fn=dice,
                health=heads,
                head_iters=health.HEAD_ITERS_BEFORE_BEST,
                max_empty_share=health.MAX_EMPTY_SHARE,
            )
            heads.validation = hook
            # by type, the same place among the collective hooks on every rank (else the workers
            # hang); before the periodic checkpointer, so that a checkpoint written at an
            # evaluation's iteration holds it (--resume then continues the same LR
            # schedule), and before the final evaluation, which then scores model_best
            insert_before_evaluation(hooks, hook)
        # after the validation hook (its after_train gives the validation figures), before the
        # checkpointer (the first foreground iteration is in every checkpoint)
        insert_before_evaluation(hooks, heads)
        return hooks


def setup(args):
    """The frozen config of ``args``, with detectron2's output folder, logging and seed set up."""
    cfg = rsrcnn_d2.get_rsrcnn_cfg(args.config_file, args.opts)
    cpu = fall_back_to_cpu(cfg)
    if not args.eval_only:  # new weights: a tuned config's calibration is not theirs
        cfg.TEST.CALIBRATED_WITH.MODELS = 0
    # the training slices' size and spacing, into the config.yaml: prediction resizes and
    # checks by them
    rsrcnn_d2.data.slice_geometry.record_training_geometry(cfg, overwrite=not args.eval_only)
    cfg.freeze()
    # detectron2's logger, made here with default_setup's own arguments (it is cached), so
    # that log.txt gets the config dump without the console's colour codes
    plain_log_files(setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank()))
    default_setup(cfg, args)
    # our own log lines (LR cuts, best checkpoint) to the console and log.txt, as detectron2's
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="rsrcnn_d2")
    if cpu:
        logging.getLogger("detectron2").warning("no CUDA device: running on CPU (MODEL.DEVICE cpu)")
    if cfg.MODEL.DEVICE == "cpu":  # each worker its share of the cores, not a pool of all of them
        threads = set_worker_threads(comm.get_local_size())
        logging.getLogger("rsrcnn_d2").info("per-worker threads: %d", threads)
    return cfg


def main(args):
    """One worker's job: train (or, with ``--eval-only``, evaluate) and return the results."""
    die_with_launcher(args)
    quiet_known_warnings()  # in every worker
    register_dataset_roots(getattr(args, "dataset_root", ()))  # here: every worker needs the names
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        weights = cfg.MODEL.WEIGHTS
        best = os.path.join(cfg.OUTPUT_DIR, BEST_CHECKPOINT)
        if not weights and not args.resume and os.path.isfile(best):
            weights = best  # the lowest-validation-loss weights, unless told otherwise
            logging.getLogger("detectron2").info("--eval-only: evaluating %s", best)
        load_model_weights(
            model,
            weights,
            save_dir=cfg.OUTPUT_DIR,
            resume=args.resume,  # refuses a misfit
            allow_partial=getattr(args, "allow_partial_weights", False),
            input_form=input_form(cfg),
        )
        return Trainer.test(cfg, model)
    try:
        trainer = Trainer(cfg)
    except AssertionError as e:  # detectron2's loader: every training image was filtered out
        if "No valid data" not in str(e):
            raise
        raise PWMLDataError(
            ", ".join(cfg.DATASETS.TRAIN),
            "holds no lesion to train on (every slice is lesion-free, and detectron2 drops "
            "those for training); prepare a cohort with lesions, or check DATASETS.TRAIN",
        ) from None
    load_trainer_weights(
        trainer, resume=args.resume
    )  # logs a table of what a foreign checkpoint fills
    results = trainer.train()
    if comm.is_main_process():
        say_where_results_are(cfg)
    return results


def evaluate_weights(config, weights, output_dir, opts: Sequence = (), dataset: str = "pwml_test"):
    """``train_net --eval-only`` in this process: ``weights`` under ``config`` (+ ``opts``) on
    ``dataset``; the evaluator's CSVs, ``config.yaml`` and ``log.txt`` in ``output_dir``; its
    results (detectron2's ``{task: {metric: value}}``).

    For the experiment drivers, which evaluate many checkpoints: no interpreter started and
    no imports repeated per evaluation. The weights are loaded with the same checks as
    ``--eval-only`` (`WeightsError` for a partial fit or another input form).
    """
    from pathlib import Path

    from rsrcnn_d2.data.fileio import atomic_write_bytes

    extra = ["MODEL.WEIGHTS", str(weights), "DATASETS.TEST", f"('{dataset}',)"]
    cfg = rsrcnn_d2.get_rsrcnn_cfg(str(config), [*map(str, opts), *extra])
    cfg.OUTPUT_DIR = str(output_dir)
    fall_back_to_cpu(cfg)
    rsrcnn_d2.data.slice_geometry.record_training_geometry(cfg, overwrite=False)
    cfg.freeze()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output / "config.yaml", cfg.dump().encode())  # as default_setup does
    with logged_step(output / "log.txt"):
        model = Trainer.build_model(cfg)
        load_model_weights(model, str(weights), input_form=input_form(cfg))
        return Trainer.test(cfg, model)


def die_with_launcher(args) -> None:
    """In a worker that ``launch`` spawned (``--num-gpus`` > 1): die when the launcher dies.

    A SIGKILLed launcher cannot stop its workers, which would go on training and writing
    ``model_final.pth`` into a folder a re-run trains again. ``args.launcher_pid`` is set by
    `cli`; in the launcher's own process (one worker) nothing is armed.
    """
    launcher = getattr(args, "launcher_pid", None)
    if launcher and launcher != os.getpid():
        arm_parent_death(launcher)


def say_where_results_are(cfg) -> None:
    """The training console's last lines: where the per-slice figures and health.json are."""
    logger = logging.getLogger("rsrcnn_d2")
    for name in cfg.DATASETS.TEST:
        csv = os.path.join(cfg.OUTPUT_DIR, "inference", name, "pwml_slices.csv")
        if os.path.isfile(csv):
            logger.info("per-slice figures of %s: %s", name, csv)
    health = os.path.join(cfg.OUTPUT_DIR, "health.json")
    if os.path.isfile(health):
        logger.info("training health: %s", health)


def _trains_on_cpu(args) -> bool:
    """Whether the workers will train on the CPU: no CUDA, or MODEL.DEVICE cpu."""
    if not torch.cuda.is_available():
        return True
    return rsrcnn_d2.get_rsrcnn_cfg(args.config_file, args.opts).MODEL.DEVICE == "cpu"


def argument_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` with this program's own options."""
    parser = default_argument_parser()
    parser.add_argument(
        "--dataset-root",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="register a prepared cohort (tools/prepare_pwml.py) as NAME_<split>; repeatable",
    )
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="--eval-only: evaluate a checkpoint that leaves some layers uninitialised or was "
        "trained for another input form",
    )
    return parser


def cli(argv: Optional[Sequence[str]] = None, prog: str = "train_net.py") -> int:
    """The command line: check the inputs once, then ``launch`` the workers; the exit status.

    A bad ``--dataset-root`` (2) or config file (3) is refused before any worker
    starts; an error of the worker run here (weights that do not fit: 4) is one line.
    """
    args = argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    try:
        register_dataset_roots(args.dataset_root)
        output_dir = rsrcnn_d2.get_rsrcnn_cfg(args.config_file, args.opts).OUTPUT_DIR
        check_requested_device(device_override(args.opts), "MODEL.DEVICE")  # asked: no fallback
        if os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise PWMLDataError(output_dir, "OUTPUT_DIR is a file; it must be a folder")
    except (PWMLDataError, ConfigError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_code_of(e)
    args.launcher_pid = os.getpid()  # the workers die with this process (die_with_launcher)
    if args.num_gpus > 1 and _trains_on_cpu(args):
        prepare_cpu_workers(args.num_gpus)  # read by the workers' thread pools as they start
    try:  # one live trainer per run folder (a second one would mix two runs' checkpoints)
        with output_lock(output_dir, prog):
            return (
                report_errors(prog)(launch)(
                    main,
                    args.num_gpus,
                    num_machines=args.num_machines,
                    machine_rank=args.machine_rank,
                    dist_url=args.dist_url,
                    args=(args,),
                )
                or 0
            )
    except PWMLDataError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_code_of(e)


if __name__ == "__main__":
    sys.exit(cli())
