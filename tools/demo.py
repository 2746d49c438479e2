#!/usr/bin/env python
"""The main job end to end on an embedded synthetic default, on CPU; see
rsrcnn_d2/experiments/demo.py or --help.
"""

import sys

from rsrcnn_d2.experiments.demo import main

if __name__ == "__main__":
    sys.exit(main())
