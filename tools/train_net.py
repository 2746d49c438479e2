#!/usr/bin/env python
"""Train and evaluate RS R-CNN (any row of Table 1) on registered PWML datasets.

detectron2's idiom: ``--config-file``, ``--num-gpus`` (on a CPU-only machine
``launch`` starts that many GLOO workers), ``--num-machines``, ``--resume``,
``--eval-only`` and trailing ``KEY VALUE`` overrides. For example:

    python tools/train_net.py --config-file configs/PWML/E_rsrcnn_R_101_FPN.yaml \\
        DATASETS.TRAIN "('pwml_fold0_train',)" DATASETS.TEST "('pwml_fold0_val',)"

``--dataset-root [NAME=]DIR`` (repeatable, before the overrides) registers another
prepared cohort as ``NAME_train``, ``NAME_fold0_val``, ... (NAME defaults to the
folder's name) in every worker; a missing or unprepared root exits with status 2.
The program itself is `rsrcnn_d2.engine.train_net` (also ``python -m rsrcnn_d2.engine.train_net``).
"""

import sys

# the package first: it imports detectron2 without the deprecation noise of torch.jit
from rsrcnn_d2.engine.train_net import (
    Trainer,
    argument_parser,
    cli,
    default_argument_parser,  # noqa: F401
    main,
    setup,
)

if __name__ == "__main__":
    sys.exit(cli())
