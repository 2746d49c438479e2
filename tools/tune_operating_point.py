#!/usr/bin/env python
"""Calibrate a trained row's score threshold (and dense CRF) on validation subjects; see
rsrcnn_d2/tuning/cli.py or --help."""

import sys

from rsrcnn_d2.tuning.cli import main

if __name__ == "__main__":
    sys.exit(main())
