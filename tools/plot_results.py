#!/usr/bin/env python
"""Box plots of per-slice metrics of several models side by side (the paper's Fig. 2); see
rsrcnn_d2/visualization/plot_cli.py or --help.
"""

import sys

from rsrcnn_d2.visualization.plot_cli import main

if __name__ == "__main__":
    sys.exit(main())
