"""Data: conversion, registration, the mapper, synthetic cohorts (anatomy-based and phantom)."""

# PWML conversion, subject splits, dataset registration, the mapper, synthetic data.
# Importing this package registers $DETECTRON2_DATASETS/pwml as pwml_train, pwml_val,
# pwml_test, pwml_fold{i}_{train,val} (lazily; a missing root is fine, see register.py).
from .anatomical_cohort import write_anatomical_cohort
from .anatomy import AnatomyParams, simulate_subject
from .convert import convert_pwml, resplit_pwml
from .errors import PWMLDataError
from .mapper import PWMLDatasetMapper, build_pwml_test_loader, build_pwml_train_loader
from .register import register_all_pwml, register_pwml_root, register_pwml_split
from .synthetic import synthetic_slice, synthetic_volume, write_synthetic_cohort

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
    "synthetic_slice",
    "synthetic_volume",
    "write_synthetic_cohort",
    "write_anatomical_cohort",
    "simulate_subject",
    "AnatomyParams",
]
