#!/usr/bin/env python
"""Pre-train one Mask R-CNN on a source cohort for every row to fine-tune from
(= rsrcnn-pretrain); see rsrcnn_d2/cli/pretrain.py or --help.
"""

import sys

from rsrcnn_d2.cli.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
