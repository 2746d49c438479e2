#!/usr/bin/env python
"""Tune the classical detector (row A) by Bayesian optimisation on a registered dataset
(= rsrcnn-tune-classical); see rsrcnn_d2/cli/tune_classical.py or --help.
"""

import sys

from rsrcnn_d2.cli.tune_classical import main

if __name__ == "__main__":
    sys.exit(main())
