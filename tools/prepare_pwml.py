#!/usr/bin/env python
"""Check PWML data (--check: every problem at once, the cohort's fingerprint) and convert it
into a registered COCO-style dataset; see rsrcnn_d2/data/prepare_cli.py or --help.
"""

import sys

from rsrcnn_d2.data.prepare_cli import main

if __name__ == "__main__":
    sys.exit(main())
