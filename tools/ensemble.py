#!/usr/bin/env python
"""Average folders of saved probability maps and threshold them (= rsrcnn-ensemble); see
rsrcnn_d2/cli/ensemble.py or --help.
"""

import sys

from rsrcnn_d2.cli.ensemble import main

if __name__ == "__main__":
    sys.exit(main())
