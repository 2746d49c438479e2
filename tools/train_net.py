#!/usr/bin/env python
"""Train and evaluate RS R-CNN (any row of Table 1) on registered PWML datasets (= rsrcnn-train).

detectron2's idiom: ``--config-file``, ``--num-gpus`` (on a CPU-only machine
``launch`` starts that many GLOO workers), ``--num-machines``, ``--resume``,
``--eval-only`` and trailing ``KEY VALUE`` overrides. For example:

    python tools/train_net.py --config-file configs/PWML/E_rsrcnn_R_101_FPN.yaml \\
        DATASETS.TRAIN "('pwml_fold0_train',)" DATASETS.TEST "('pwml_fold0_val',)"

``--dataset-root [NAME=]DIR`` (repeatable, before the overrides) registers another
prepared cohort as ``NAME_train``, ``NAME_fold0_val``, ... (NAME defaults to the
folder's name) in every worker; a missing or unprepared root exits with status 2.
The program itself is `rsrcnn_d2.cli.train_net` (also ``rsrcnn-train``, ``python -m
rsrcnn_d2.cli.train_net``); ``Trainer``, ``setup`` and ``main`` can be taken from here, as
from detectron2's tools/train_net.py; they load torch and detectron2 on first use, so
``--help`` answers at once.
"""

import sys

from rsrcnn_d2.cli.train_net import (  # its __getattr__ loads Trainer and setup on first use
    __getattr__,
    argument_parser,
    cli,
    default_argument_parser,
    main,
)

if __name__ == "__main__":
    sys.exit(cli())
