#!/usr/bin/env python
"""Leave-one-subject-out cross-validation of rows A, B and E on a slice folder (input/ + gt/)
(= rsrcnn-loso); see rsrcnn_d2/cli/run_loso.py or --help.
"""

import sys

from rsrcnn_d2.cli.run_loso import main

if __name__ == "__main__":
    sys.exit(main())
