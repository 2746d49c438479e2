#!/usr/bin/env python
"""Lesion masks for NIfTI volumes or slice PNGs; see rsrcnn_d2/inference/cli.py or --help."""

import sys

from rsrcnn_d2.inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
