#!/usr/bin/env python
"""Box plots of per-slice metrics of several models side by side, the paper's Fig. 2
(= rsrcnn-plot); see rsrcnn_d2/cli/plot_results.py or --help.
"""

import sys

from rsrcnn_d2.cli.plot_results import main

if __name__ == "__main__":
    sys.exit(main())
