#!/usr/bin/env python
"""Leave-one-subject-out cross-validation of rows A, B and E on a slice folder (input/ + gt/); see
rsrcnn_d2/experiments/loso.py or --help.
"""

import sys

from rsrcnn_d2.experiments.loso import main

if __name__ == "__main__":
    sys.exit(main())
