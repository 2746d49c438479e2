#!/usr/bin/env python
"""Cross-validate a config over the folds of a prepared cohort, resumably; see
rsrcnn_d2/experiments/cv_cli.py or --help.
"""

import sys

from rsrcnn_d2.experiments.cv_cli import main

if __name__ == "__main__":
    sys.exit(main())
