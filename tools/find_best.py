#!/usr/bin/env python
"""The best row, or pair of rows ensembled, on cross-validation (= rsrcnn-find-best); see
rsrcnn_d2/experiments/find_best_cli.py or --help.
"""

import sys

from rsrcnn_d2.experiments.find_best_cli import main

if __name__ == "__main__":
    sys.exit(main())
