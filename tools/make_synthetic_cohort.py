#!/usr/bin/env python
"""Write a seeded synthetic PWML cohort (NIfTI, nnU-Net raw layout); see
rsrcnn_d2/synth/cli.py or --help.
"""

import sys

from rsrcnn_d2.synth.cli import main

if __name__ == "__main__":
    sys.exit(main())
