#!/usr/bin/env python
"""Lesion masks for NIfTI volumes or slice PNGs (= rsrcnn-predict); see rsrcnn_d2/cli/predict.py
or --help."""

import sys

from rsrcnn_d2.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
