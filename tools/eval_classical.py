#!/usr/bin/env python
"""Evaluate the classical detector (row A) on a registered dataset; see
rsrcnn_d2/classical/eval_cli.py or --help.
"""

import sys

from rsrcnn_d2.classical.eval_cli import main

if __name__ == "__main__":
    sys.exit(main())
