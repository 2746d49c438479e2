#!/usr/bin/env python
"""Write a seeded synthetic PWML cohort (NIfTI, nnU-Net raw layout) (= rsrcnn-make-cohort); see
rsrcnn_d2/cli/make_cohort.py or --help.
"""

import sys

from rsrcnn_d2.cli.make_cohort import main

if __name__ == "__main__":
    sys.exit(main())
