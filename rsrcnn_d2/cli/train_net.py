"""The training program: train and evaluate RS R-CNN (any row of Table 1) on registered
PWML datasets.

detectron2's idiom: ``--config-file``, ``--num-gpus`` (on a CPU-only machine
``launch`` starts that many GLOO workers), ``--num-machines``, ``--resume``,
``--eval-only`` and trailing ``KEY VALUE`` overrides; ``--dataset-root
[NAME=]DIR`` registers another prepared cohort in every worker. For example:

    rsrcnn-train --config-file configs/PWML/E_rsrcnn_R_101_FPN.yaml \\
        DATASETS.TRAIN "('pwml_fold0_train',)" DATASETS.TEST "('pwml_fold0_val',)"

As detectron2's tools/train_net.py, `cli` is the command line (it checks the inputs once,
then ``launch``es the workers) and `main` one worker's job; `Trainer` and `setup` are the
library's (`rsrcnn_d2.engine.train_net`), also reachable here. The program behind
tools/train_net.py (also ``rsrcnn-train``, ``python -m rsrcnn_d2.cli.train_net``): installed
with the package, so that the experiment drivers (`rsrcnn_d2.experiments.runner`) start it
as ``python -m``, never a script of the repository.
"""

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Optional

from ..config_file import check_config_file
from ..errors import ConfigError, PWMLDataError, exit_code_of, report_errors
from ..parent_death import die_with_launcher
from ..tool_setup import quiet_known_warnings
from .common import add_dataset_root_option

# (and, loaded on first access, the library's Trainer and setup: `__getattr__`)
__all__ = [
    "main",
    "default_argument_parser",
    "argument_parser",
    "cli",
]

# names of the library's training module, loaded on first access (`__getattr__`)
_LIBRARY = ("Trainer", "setup")


def __getattr__(name: str):
    """``Trainer`` and ``setup`` of `rsrcnn_d2.engine.train_net`, loaded on first access:
    tools/train_net.py re-exports them (detectron2's habit) without this program's ``--help``
    waiting for torch and detectron2."""
    if name in _LIBRARY:
        from ..tool_setup import known_warnings_hidden

        with known_warnings_hidden():  # detectron2's import-time notices: not the user's
            from ..engine import train_net as engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` (detectron2/engine/defaults.py), the same
    options and defaults, built without importing detectron2 (and torch) so that ``--help``
    answers at once; tests/test_tools_layout.py checks that the two still agree."""
    parser = argparse.ArgumentParser(
        epilog=epilog
        or f"""
Examples:

Run on single machine:
    $ {sys.argv[0]} --num-gpus 8 --config-file cfg.yaml

Change some config options:
    $ {sys.argv[0]} --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth SOLVER.BASE_LR 0.001

Run on multiple machines:
    (machine0)$ {sys.argv[0]} --machine-rank 0 --num-machines 2 --dist-url <URL> [--other-flags]
    (machine1)$ {sys.argv[0]} --machine-rank 1 --num-machines 2 --dist-url <URL> [--other-flags]
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Whether to attempt to resume from the checkpoint directory. "
        "See documentation of `DefaultTrainer.resume_or_load()` for what it means.",
    )
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    parser.add_argument("--num-gpus", type=int, default=1, help="number of gpus *per machine*")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)"
    )
    # detectron2's deterministic port: an orphan process of an earlier run shows as a port in use
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14
    parser.add_argument(
        "--dist-url",
        default=f"tcp://127.0.0.1:{port}",
        help="initialization URL for pytorch distributed backend. See "
        "https://pytorch.org/docs/stable/distributed.html for details.",
    )
    parser.add_argument(
        "opts",
        help="Modify config options at the end of the command. For Yacs configs, use\n"
        'space-separated "PATH.KEY VALUE" pairs.\n'
        'For python-based LazyConfig, use "path.key=value".',
        default=None,
        nargs=argparse.REMAINDER,
    )
    return parser


def argument_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` with this program's own options."""
    parser = default_argument_parser()
    add_dataset_root_option(parser)
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="--eval-only: evaluate a checkpoint that leaves some layers uninitialised or was "
        "trained for another input form",
    )
    return parser


def main(args):
    """One worker's job: train (or, with ``--eval-only``, evaluate) and return the results."""
    die_with_launcher(args)  # first: a worker still importing dies with its launcher too
    quiet_known_warnings()  # in every worker, before detectron2 is imported
    from detectron2.utils import comm

    from ..checkpoint import input_form, load_model_weights, load_trainer_weights
    from ..data.register import register_dataset_roots
    from ..engine.train_net import Trainer, say_where_results_are, setup
    from ..engine.validation_loss import BEST_CHECKPOINT

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
    # logs a table of what a foreign checkpoint fills
    load_trainer_weights(trainer, resume=args.resume)
    log_repeatability(cfg)
    results = trainer.train()
    if comm.is_main_process():
        say_where_results_are(cfg)
    return results


def log_repeatability(cfg) -> None:
    """Say what a bit-for-bit repeat of this training needs: the same seed, config, data and
    torch thread count (measured: 20 iterations with SEED 7 twice at one thread give equal
    weights; at one thread and at two they differ by 4e-3 after 20 iterations, and more later)."""
    import torch

    threads = torch.get_num_threads()
    if cfg.SEED < 0:
        what = f"SEED {cfg.SEED}: a new random seed each run, so no run repeats another"
    else:
        what = (
            f"SEED {cfg.SEED}, {threads} torch thread(s) per worker: the same config, data and "
            "thread count (OMP_NUM_THREADS) repeat this training exactly on a CPU"
        )
    logging.getLogger("rsrcnn_d2").info("repeatability: %s", what)


def _trains_on_cpu(args) -> bool:
    """Whether the workers will train on the CPU: no CUDA, or MODEL.DEVICE cpu."""
    import torch

    from ..config import get_rsrcnn_cfg

    if not torch.cuda.is_available():
        return True
    return get_rsrcnn_cfg(args.config_file, args.opts).MODEL.DEVICE == "cpu"


def cli(argv: Optional[Sequence[str]] = None, prog: str = "train_net.py") -> int:
    """The command line: check the inputs once, then ``launch`` the workers; the exit status.

    A bad ``--dataset-root`` (2) or config file (3) is refused before any worker
    starts; an error of the worker run here (weights that do not fit: 4) is one line.
    """
    args = argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    try:  # a mistyped path answered before torch and detectron2 load
        if args.config_file:
            check_config_file(args.config_file)
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_code_of(e)
    quiet_known_warnings()  # this process imports detectron2 too
    from detectron2.engine import launch

    from ..config import check_requested_device, device_override, get_rsrcnn_cfg
    from ..data.output_lock import output_lock
    from ..data.register import register_dataset_roots
    from ..engine.ddp import prepare_cpu_workers

    try:
        register_dataset_roots(args.dataset_root)
        output_dir = get_rsrcnn_cfg(args.config_file, args.opts).OUTPUT_DIR
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
