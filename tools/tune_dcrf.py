#!/usr/bin/env python
"""Deprecated alias of tools/tune_operating_point.py --search crf (the dense CRF's l1, l2, c1, e1
alone at the config's score threshold): prints one deprecation line, then runs it; see --help."""

import sys

from rsrcnn_d2.cli.tune_operating_point import tune_dcrf_alias

if __name__ == "__main__":
    sys.exit(tune_dcrf_alias())
