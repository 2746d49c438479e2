"""Data: conversion, registration, the mapper (synthetic cohorts: `rsrcnn_d2.synth`)."""

# PWML conversion, subject splits, dataset registration, the mapper. The synthetic-cohort
# generator is rsrcnn_d2.synth, above this package: importing rsrcnn_d2 does not load it.
# Importing this package registers $DETECTRON2_DATASETS/pwml as pwml_train, pwml_val,
# pwml_test, pwml_fold{i}_{train,val} (lazily; a missing root is fine, see register.py).
from ..tool_setup import known_warnings_hidden

# the first import of detectron2 on most paths into the package: its import-time notices
# (it and fvcore script functions, which torch flags as deprecated) are not the user's to see
with known_warnings_hidden():
    import detectron2.modeling  # noqa: F401

from .convert import convert_pwml, resplit_pwml
from .errors import PWMLDataError
from .mapper import PWMLDatasetMapper, build_pwml_test_loader, build_pwml_train_loader
from .register import register_all_pwml, register_pwml_root, register_pwml_split

register_all_pwml()

__all__ = [
    "convert_pwml",
    "resplit_pwml",
    "PWMLDataError",
    "PWMLDatasetMapper",
    "build_pwml_train_loader",
    "build_pwml_test_loader",
    "register_all_pwml",
    "register_pwml_root",
    "register_pwml_split",
]
