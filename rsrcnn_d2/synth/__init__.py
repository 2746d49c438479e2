"""Synthetic PWML cohorts: the anatomy-based generator and the fast phantom.

A package of its own, above `rsrcnn_d2.data`: the generator (MNI152 template, neonatal
contrast, 3-D lesions, cohort writer, realism measures) makes demo and test data; it is no
part of reading, converting or training on a dataset, so ``import rsrcnn_d2`` does not load
it. What needs it imports it: the program `rsrcnn_d2.cli.make_cohort`
(tools/make_synthetic_cohort.py), the drivers, tests and benchmarks. It uses `rsrcnn_d2.data`
(NIfTI reading and writing, atomic files, the head crop); no lower layer imports it
(tests/test_layering.py).

- `write_anatomical_cohort` (`cohort`), `simulate_subject`, `AnatomyParams` (`anatomy`):
  the anatomy-based cohort, datasets/README.md section 7;
- `synthetic_slice`, `synthetic_volume`, `write_synthetic_cohort` (`phantom`): the cartoon
  phantom for unit tests.
"""

from .anatomy import COARSE_GRID, AnatomyParams, simulate_subject
from .cohort import write_anatomical_cohort
from .phantom import synthetic_slice, synthetic_volume, write_synthetic_cohort

__all__ = [
    "synthetic_slice",
    "synthetic_volume",
    "write_synthetic_cohort",
    "write_anatomical_cohort",
    "simulate_subject",
    "AnatomyParams",
    "COARSE_GRID",
]
