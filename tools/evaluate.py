#!/usr/bin/env python
"""Score a folder of predicted NIfTI lesion masks against reference labels (= rsrcnn-evaluate);
see rsrcnn_d2/cli/evaluate.py or --help.
"""

import sys

from rsrcnn_d2.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
