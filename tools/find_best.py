#!/usr/bin/env python
"""The best row, or pair of rows ensembled, on cross-validation (= rsrcnn-find-best); see
rsrcnn_d2/cli/find_best.py or --help.
"""

import sys

from rsrcnn_d2.cli.find_best import main

if __name__ == "__main__":
    sys.exit(main())
