#!/usr/bin/env python
"""The main job end to end on an embedded synthetic default, on CPU (= rsrcnn-demo); see
rsrcnn_d2/cli/demo.py or --help.
"""

import sys

from rsrcnn_d2.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
