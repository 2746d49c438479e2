#!/usr/bin/env python
"""Cross-validate a config over the folds of a prepared cohort, resumably (= rsrcnn-cv); see
rsrcnn_d2/cli/run_cv.py or --help.
"""

import sys

from rsrcnn_d2.cli.run_cv import main

if __name__ == "__main__":
    sys.exit(main())
