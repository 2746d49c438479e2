#!/usr/bin/env python
"""Evaluate the classical detector (row A) on a registered dataset (= rsrcnn-eval-classical);
see rsrcnn_d2/cli/eval_classical.py or --help.
"""

import sys

from rsrcnn_d2.cli.eval_classical import main

if __name__ == "__main__":
    sys.exit(main())
