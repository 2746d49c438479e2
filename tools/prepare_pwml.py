#!/usr/bin/env python
"""Check PWML data (--check: every problem at once, the cohort's fingerprint) and convert it
into a registered COCO-style dataset (= rsrcnn-prepare); see rsrcnn_d2/cli/prepare.py or --help.
"""

import sys

from rsrcnn_d2.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main())
