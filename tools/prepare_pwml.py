#!/usr/bin/env python
"""Convert PWML data into a registered COCO-style dataset; see rsrcnn_d2/data/prepare_cli.py
or --help.
"""

import sys

from rsrcnn_d2.data.prepare_cli import main

if __name__ == "__main__":
    sys.exit(main())
