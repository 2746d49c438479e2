"""What the training program runs: `Trainer` (detectron2's DefaultTrainer with the PWML
mapper, evaluator, plateau LR schedule and run-health hooks), `setup` (a worker's config,
logging and threads), `evaluate_weights` (``--eval-only`` in the caller's process, for the
experiment drivers) and `die_with_launcher`.

The program itself, its command line and the per-worker ``main`` that detectron2's
``launch`` runs, is `rsrcnn_d2.cli.train_net` (``rsrcnn-train``, ``python -m
rsrcnn_d2.cli.train_net``, tools/train_net.py), the module the drivers start.
"""

import logging
import os
from collections.abc import Sequence

from detectron2.data import build_detection_test_loader
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from rsrcnn_d2.checkpoint import SafeCheckpointer, input_form, load_model_weights
from rsrcnn_d2.config import fall_back_to_cpu, get_rsrcnn_cfg
from rsrcnn_d2.data import PWMLDatasetMapper, build_pwml_test_loader, build_pwml_train_loader
from rsrcnn_d2.data.augmentation import build_pwml_augmentations
from rsrcnn_d2.data.mapper import head_crop_margin
from rsrcnn_d2.data.slice_geometry import record_training_geometry
from rsrcnn_d2.evaluation import PWMLEvaluator
from rsrcnn_d2.inference.calibration import InferenceSettings, log_inference
from rsrcnn_d2.inference.ensemble import with_flip_tta
from rsrcnn_d2.parent_death import die_with_launcher  # re-exported: the workers' first act
from rsrcnn_d2.solver import PlateauTracker, build_lr_scheduler, build_optimizer
from rsrcnn_d2.tool_setup import logged_step, plain_log_files

from .ddp import cpu_ddp_support, set_worker_threads
from .health import HeadHealthHook
from .validation_dice import validation_dice
from .validation_loss import ValidationLossHook, insert_before_evaluation

__all__ = [
    "Trainer",
    "setup",
    "die_with_launcher",
    "evaluate_weights",
    "say_where_results_are",
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
    cfg = get_rsrcnn_cfg(args.config_file, args.opts)
    cpu = fall_back_to_cpu(cfg)
    if not args.eval_only:  # new weights: a tuned config's calibration is not theirs
        cfg.TEST.CALIBRATED_WITH.MODELS = 0
    # the training slices' size and spacing, into the config.yaml: prediction resizes and
    # checks by them
    record_training_geometry(cfg, overwrite=not args.eval_only)
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
    cfg = get_rsrcnn_cfg(str(config), [*map(str, opts), *extra])
    cfg.OUTPUT_DIR = str(output_dir)
    fall_back_to_cpu(cfg)
    record_training_geometry(cfg, overwrite=False)
    cfg.freeze()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output / "config.yaml", cfg.dump().encode())  # as default_setup does
    with logged_step(output / "log.txt"):
        model = Trainer.build_model(cfg)
        load_model_weights(model, str(weights), input_form=input_form(cfg))
        return Trainer.test(cfg, model)


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
