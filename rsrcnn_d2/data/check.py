"""Checking a PWML cohort before conversion: every problem at once, and the cohort's fingerprint.

nnU-Net's ``--verify_dataset_integrity`` habit: one pass over the whole cohort
lists every problem, one line each naming the file, instead of stopping at the
first. `check_dataset` is what ``tools/prepare_pwml.py --check`` prints and what
`convert.convert_pwml` runs before it writes anything. It uses the converter's own
readers (sources.py for discovery, nifti.py and slice_pairs.py for the files),
so the check and the conversion cannot disagree about a file; the fingerprint
(fingerprint.py) comes from the same reading.

Errors (the conversion refuses, exit 2): whatever the readers reject (missing or
unpaired files, files without nnU-Net's ``_0000``, unreadable, empty or non-3-D
volumes, shape or affine mismatches, NaN, non-binary masks, colour voxels), no
subject left to convert, fractions or folds that do not fit the cohort, and a
validation or test split whose subjects are all lesion-free (every figure on a
test split without lesions is undefined; another ``--seed`` or ``--fractions``
draws another split).

Warnings (printed, the conversion goes on): a lesion-free subject in the default
lesion-slices mode (it has no slice to convert and is left out; ``--all-slices``
keeps it), a voxel spacing more than `SPACING_OUTLIER_FACTOR` times larger or
smaller than the cohort's median along any axis (from 3 readable NIfTI subjects
on), a cross-validation fold whose validation subjects are all lesion-free, and a
val or test split with a fraction above 0 that a small cohort leaves empty.
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import PWMLDataError
from .fingerprint import (
    SPACING_AXES,
    SubjectFacts,
    cohort_fingerprint,
    format_fingerprint,
    subject_facts,
)
from .nifti import axis_index, axis_name
from .sources import SubjectSource, discover_subjects
from .splits import default_num_folds, make_splits
from .subject_pool import map_subjects

__all__ = [
    "Problem",
    "DatasetReport",
    "DatasetCheckError",
    "find_subjects",
    "check_dataset",
    "format_report",
    "SPACING_OUTLIER_FACTOR",
]

SPACING_OUTLIER_FACTOR = 2.0  # a spacing over twice, or under half, the cohort median is odd
SPACING_MIN_SUBJECTS = 3  # a median of fewer subjects says nothing about an outlier


@dataclass(frozen=True)
class Problem:
    """One problem: the file it is about, what is wrong, and "error" or "warning"."""

    file: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}: {self.severity}: {self.message}"


@dataclass
class DatasetReport:
    """The check's result. ``kept``: the subjects a conversion with ``options`` writes;
    ``splits``: their splits.json content (None when errors keep it from being drawn)."""

    source: str
    options: dict
    problems: list[Problem]
    fingerprint: dict
    subjects: list[SubjectSource]
    kept: list[SubjectSource]
    splits: Optional[dict]

    @property
    def errors(self) -> list[Problem]:
        """The problems that stop a conversion."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems that are only printed."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No error: the cohort converts (warnings or not)."""
        return not self.errors

    def as_dict(self) -> dict:
        """The report for ``--check --json``: source, options, ok, problems, fingerprint."""
        return {
            "source": self.source,
            "options": self.options,
            "ok": self.ok,
            "problems": [vars(p) for p in self.problems],
            "fingerprint": self.fingerprint,
        }


class DatasetCheckError(PWMLDataError):
    """The check found errors and nothing was written; ``report`` holds every problem.

    One error reads as that file's error; several are listed one per line."""

    def __init__(self, report: DatasetReport):
        errors = report.errors
        if len(errors) == 1:
            super().__init__(errors[0].file, errors[0].message)
        else:
            listed = "\n".join(f"  {p.file}: {p.message}" for p in errors)
            super().__init__(report.source, f"{len(errors)} errors, nothing was written:\n{listed}")
        self.report = report

    def __reduce__(self):  # as the plain data error it is, across processes
        return (PWMLDataError, (self.path, self.problem))


def _source_name(source) -> str:
    return "subjects" if isinstance(source, (list, tuple)) else str(source)


def find_subjects(
    source: Union[str, Path, Sequence[SubjectSource]],
) -> tuple[list[SubjectSource], list[Problem]]:
    """Discovery that goes on past a problem: (the subjects that pair up, every problem)."""
    if isinstance(source, (list, tuple)):
        return list(source), []
    found: list[PWMLDataError] = []
    subjects = discover_subjects(source, problems=found)
    return subjects, [Problem(e.path, e.problem) for e in found]


def _mask_place(source: SubjectSource) -> str:
    """The file or folder that names a subject's lesions: its mask, or its gt/ folder."""
    return str(source.mask if source.kind == "nifti" else source.slices[0][2].parent)


def _spacing_outliers(facts: list[SubjectFacts], images: dict) -> list[Problem]:
    spaced = [f for f in facts if f.spacing is not None]
    problems = [
        Problem(images[f.subject], f"voxel size {_mm(f.spacing)} mm is not positive", "warning")
        for f in spaced
        if not all(math.isfinite(s) and s > 0 for s in f.spacing)
    ]
    spaced = [f for f in spaced if all(math.isfinite(s) and s > 0 for s in f.spacing)]
    if len(spaced) < SPACING_MIN_SUBJECTS:
        return problems
    median = np.median([f.spacing for f in spaced], axis=0)
    for f in spaced:
        ratio = np.maximum(np.divide(f.spacing, median), np.divide(median, f.spacing))
        axes = [
            name.replace("_", "-")
            for name, r in zip(SPACING_AXES, ratio)
            if r > SPACING_OUTLIER_FACTOR
        ]
        if axes:
            problems.append(
                Problem(
                    images[f.subject],
                    f"spacing {_mm(f.spacing)} mm (row x column x through-plane) differs from "
                    f"the cohort median {_mm(median)} mm by more than a factor of "
                    f"{SPACING_OUTLIER_FACTOR:g} ({', '.join(axes)}); check its header or "
                    "resample it",
                    "warning",
                )
            )
    return problems


SHEAR_TOLERANCE_DEGREES = 0.1  # float32 header rounding stays far below this


def _sheared(facts: list[SubjectFacts], images: dict) -> list[Problem]:
    """A warning for each volume whose voxel axes are not perpendicular: slices are cut along
    the voxel grid, so in-plane distances in mm (HD_mm, spacing) are then approximate."""
    return [
        Problem(
            images[f.subject],
            f"affine is sheared (voxel axes {f.shear_degrees:.2g} degrees from perpendicular): "
            "slices follow the voxel grid, so mm figures are approximate; resample it to an "
            "orthogonal grid",
            "warning",
        )
        for f in facts
        if f.shear_degrees > SHEAR_TOLERANCE_DEGREES
    ]


def _names(subjects: Sequence[str], most: int = 10) -> str:
    more = len(subjects) - most
    return ", ".join(subjects[:most]) + (f" and {more} more" if more > 0 else "")


def _mm(spacing) -> str:
    return " x ".join(f"{float(s):g}" for s in spacing)


def _split_problems(splits: dict, with_lesions: set, where: str, options: dict) -> list[Problem]:
    """Refuse a val or test split without any lesion; warn about such a fold and about a
    val or test split that a small cohort leaves empty."""
    problems = []
    drawn = f"seed {options['seed']}, fractions {' '.join(f'{f:g}' for f in options['fractions'])}"
    for name, why in (
        ("val", "the validation loss and model selection would see no lesion"),
        ("test", "every figure on it would be undefined"),
    ):
        members = splits[name]
        share = splits["fractions"][name]
        if not members and share > 0:  # asked for, but too few subjects to give it one
            problems.append(
                Problem(
                    where,
                    f"the {name} split ({drawn}) is empty: {len(splits['subjects'])} subjects "
                    f"give it none, so {why}",
                    "warning",
                )
            )
        elif members and not set(members) & with_lesions:
            problems.append(
                Problem(
                    where,
                    f"the {name} split ({drawn}) holds only lesion-free subjects "
                    f"({_names(members)}): {why}; draw another split with --seed or "
                    "--fractions",
                )
            )
    for i, fold in enumerate(splits["folds"]):
        if fold["val"] and not set(fold["val"]) & with_lesions:
            problems.append(
                Problem(
                    where,
                    f"fold {i}'s validation subjects ({_names(fold['val'])}) are all "
                    "lesion-free: that fold's figures will be undefined (NaN)",
                    "warning",
                )
            )
    return problems


def check_dataset(
    source: Union[str, Path, Sequence[SubjectSource]],
    *,
    axis: Union[str, int] = "axial",
    lesion_slices_only: bool = True,
    binarize: bool = False,
    seed: int = 0,
    fractions=(0.7, 0.15, 0.15),
    num_folds: Optional[int] = None,
    workers: int = 1,
    progress: bool = False,
    found: Optional[tuple[list[SubjectSource], list[Problem]]] = None,
) -> DatasetReport:
    """Check a cohort as `convert.convert_pwml` would convert it with these options.

    Reads every subject (in ``workers`` processes); writes nothing.

    Args:
        source, axis, lesion_slices_only, binarize, seed, fractions, num_folds: as
            `convert.convert_pwml`; the split is drawn as the conversion would draw it.
        workers: processes reading subjects.
        progress: show a progress bar.
        found: the result of `find_subjects` when the caller has it already.

    Returns:
        A `DatasetReport` with every problem; ``splits`` is None when the cohort has
        errors that would change the split.
    """
    where = _source_name(source)
    subjects, problems = found if found is not None else find_subjects(source)
    problems = list(problems)
    if not subjects and not problems:  # an empty list of subjects
        problems.append(Problem(where, "no subjects to convert"))
    # a bad axis is a bad argument (ValueError), not a data problem; slice folders have none
    index = axis_index(axis) if any(s.kind == "nifti" for s in subjects) else None
    task = functools.partial(subject_facts, axis=index, binarize=binarize)
    facts = map_subjects(task, subjects, workers, progress, desc="checking")
    by_id = {s.subject: s for s in subjects}
    for f in facts:
        problems += [Problem(e.path, e.problem) for e in f.problems]
    readable = [f for f in facts if not f.problems]
    lesion_free = [f.subject for f in readable if not f.lesion_areas]
    if lesion_slices_only:
        for subject in lesion_free:
            problems.append(
                Problem(
                    _mask_place(by_id[subject]),
                    f"subject {subject!r} has no lesion: no lesion slice to convert, so it is "
                    "left out (--all-slices keeps it)",
                    "warning",
                )
            )
    kept_ids = [
        f.subject for f in readable if f.subject not in lesion_free or not lesion_slices_only
    ]
    problems += _spacing_outliers(readable, {s.subject: str(s.image) for s in subjects})
    problems += _sheared(readable, {s.subject: str(s.image) for s in subjects})
    options = {
        "axis": None if index is None else axis_name(index),
        "lesion_slices_only": lesion_slices_only,
        "binarize": binarize,
        "seed": int(seed),
        "fractions": [float(f) for f in fractions],
        "num_folds": num_folds,
    }
    splits = None
    if readable and not kept_ids:
        problems.append(
            Problem(
                where,
                f"no subject has a lesion slice to convert (lesion-free: "
                f"{_names(lesion_free)}); --all-slices converts them with every slice",
            )
        )
    elif kept_ids and len(readable) == len(subjects):  # a split of a broken cohort would change
        folds = num_folds if num_folds is not None else default_num_folds(len(kept_ids))
        try:
            splits = make_splits(kept_ids, seed, fractions, folds)
        except ValueError as e:  # fractions or fold count that do not fit the cohort
            problems.append(Problem(where, str(e)))
        else:
            with_lesions = {f.subject for f in readable if f.lesion_areas}
            problems += _split_problems(splits, with_lesions, where, options)
    return DatasetReport(
        source=where,
        options=options,
        problems=problems,
        fingerprint=cohort_fingerprint(len(subjects), readable, set(kept_ids), lesion_slices_only),
        subjects=subjects,
        kept=[by_id[s] for s in kept_ids],
        splits=splits,
    )


def count(n: int, noun: str) -> str:
    """ "1 error", "2 errors": counts in messages."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def format_report(report: DatasetReport) -> str:
    """Every problem, errors first, one line each naming the file; then the fingerprint."""
    errors, warnings = report.errors, report.warnings
    counts = f"{count(len(errors), 'error')}, {count(len(warnings), 'warning')}"
    lines = [f"dataset check of {report.source}: {counts}"]
    lines += [str(p) for p in errors + warnings]
    lines += ["fingerprint:", format_fingerprint(report.fingerprint)]
    return "\n".join(lines)
