#!/usr/bin/env python
"""Score a folder of predicted NIfTI lesion masks against reference labels (= rsrcnn-evaluate)."""

import sys

from rsrcnn_d2.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
