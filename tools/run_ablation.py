#!/usr/bin/env python
"""Table 1's ablation rows and a k sweep on the synthetic cohort, several seeds, resumable
(= rsrcnn-ablation); see rsrcnn_d2/cli/run_ablation.py or --help.
"""

import sys

from rsrcnn_d2.cli.run_ablation import main

if __name__ == "__main__":
    sys.exit(main())
