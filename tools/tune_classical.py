#!/usr/bin/env python
"""Tune the classical detector (row A) by Bayesian optimisation on a registered dataset;
see rsrcnn_d2/classical/tune_cli.py or --help.
"""

import sys

from rsrcnn_d2.classical.tune_cli import main

if __name__ == "__main__":
    sys.exit(main())
