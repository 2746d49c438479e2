#!/usr/bin/env python
"""Lesion masks for NIfTI volumes or slice PNGs; see rsrcnn_d2/inference/cli.py or --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsrcnn_d2.inference.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
