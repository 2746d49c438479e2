#!/usr/bin/env python
"""Calibrate a trained row's score threshold (and dense CRF) on validation subjects
(= rsrcnn-tune); see rsrcnn_d2/cli/tune_operating_point.py or --help."""

import sys

from rsrcnn_d2.cli.tune_operating_point import main

if __name__ == "__main__":
    sys.exit(main())
