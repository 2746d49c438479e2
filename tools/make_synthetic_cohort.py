#!/usr/bin/env python
"""Write a seeded synthetic PWML cohort (NIfTI, nnU-Net raw layout); see
rsrcnn_d2/data/cohort_cli.py or --help.
"""

import sys

from rsrcnn_d2.data.cohort_cli import main

if __name__ == "__main__":
    sys.exit(main())
