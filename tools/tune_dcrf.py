#!/usr/bin/env python
"""The old name of tools/tune_operating_point.py: tunes the dense CRF's l1, l2, c1, e1 alone at
the config's score threshold; see rsrcnn_d2/tuning/cli.py or --help."""

import sys

from rsrcnn_d2.tuning.cli import tune_dcrf_main

if __name__ == "__main__":
    sys.exit(tune_dcrf_main())
