#!/usr/bin/env python
"""Tune the dense CRF's l1, l2, c1, e1 by Bayesian optimisation; see rsrcnn_d2/tuning/cli.py
or --help."""

import sys

from rsrcnn_d2.tuning.cli import main

if __name__ == "__main__":
    sys.exit(main())
