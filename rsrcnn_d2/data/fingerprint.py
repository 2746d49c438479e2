"""What reading a subject tells about it, and the cohort's fingerprint made of that.

`subject_facts` reads one subject with the converter's own readers (nifti.py,
slice_pairs.py) and keeps every problem instead of raising it; the dataset check
(check.py) runs it per subject. `cohort_fingerprint` sums the readable subjects
up as nnU-Net's dataset fingerprint does: slices along the axis, lesions per
subject (2-D connected components, exactly the converter's annotations), lesion
sizes in pixels, voxel spacing of the converted slices (row, column,
through-plane; none for PNG slices), and what the conversion writes. A figure
with nothing to count is NaN (null in JSON, "n/a" in `format_fingerprint`).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import PWMLDataError
from .instances import label_lesions
from .nifti import read_nifti_pair, slice_spacing, volume_slice
from .slice_pairs import read_slice_pair
from .sources import SubjectSource

__all__ = [
    "SubjectFacts",
    "subject_facts",
    "cohort_fingerprint",
    "format_fingerprint",
    "SPACING_AXES",
    "SIZE_PERCENTILES",
]

SPACING_AXES = ("row", "column", "through_plane")  # of a converted slice (nifti.slice_spacing)
SIZE_PERCENTILES = (5, 25, 50, 75, 95)


@dataclass
class SubjectFacts:
    """What reading one subject found: its problems, or its slices, lesions and spacing."""

    subject: str
    problems: list[PWMLDataError] = field(default_factory=list)
    slices: int = 0
    lesion_slices: int = 0
    lesion_areas: list[int] = field(default_factory=list)  # pixels of each 2-D lesion
    spacing: Optional[tuple[float, float, float]] = None  # SPACING_AXES, mm; None for PNG
    shear_degrees: float = 0.0  # largest departure of two voxel axes from perpendicular


def _count_lesions(facts: SubjectFacts, mask: np.ndarray) -> None:
    labels, count = label_lesions(mask)
    facts.lesion_slices += 1
    facts.lesion_areas += np.bincount(labels.ravel(), minlength=count + 1)[1:].tolist()


def subject_facts(source: SubjectSource, axis: Optional[int], binarize: bool) -> SubjectFacts:
    """Read one subject with the converter's readers; every problem is kept, none raised.

    Args:
        source: the subject's files.
        axis: canonical slice axis of a NIfTI subject (unused for slice folders).
        binarize: as the conversion: any non-zero mask value is lesion.

    Returns:
        `SubjectFacts`; with ``problems`` set, the figures cover what could be read.
    """
    facts = SubjectFacts(source.subject)
    if source.kind == "slices":
        facts.slices = len(source.slices)
        for _, image_path, mask_path in source.slices:
            try:
                _, mask = read_slice_pair(image_path, mask_path, binarize=binarize)
            except PWMLDataError as e:
                facts.problems.append(e)
                continue
            if mask.any():
                _count_lesions(facts, mask)
        return facts
    pair = read_nifti_pair(source.image, source.mask, binarize=binarize, problems=facts.problems)
    if pair is None:
        return facts
    facts.slices = int(pair.mask.shape[axis])
    facts.spacing = slice_spacing(pair.zooms, axis)
    facts.shear_degrees = shear_degrees(pair.affine)
    other = tuple(a for a in (0, 1, 2) if a != axis)
    for k in np.flatnonzero(pair.mask.any(axis=other)).tolist():
        _count_lesions(facts, volume_slice(pair.mask, axis, k))
    return facts


def shear_degrees(affine: np.ndarray) -> float:
    """How far the voxel axes of ``affine`` are from perpendicular, in degrees (0: an
    orthogonal grid, however rotated)."""
    axes = np.asarray(affine, float)[:3, :3]
    norms = np.linalg.norm(axes, axis=0)
    if not np.all(norms > 0):
        return 0.0  # a degenerate affine is the header check's problem
    unit = axes / norms
    cosines = np.abs(unit.T @ unit - np.eye(3)).max()
    return float(np.degrees(np.arcsin(min(cosines, 1.0))))


def _summary(values: Sequence[float]) -> dict:
    if not len(values):
        return {"min": math.nan, "median": math.nan, "max": math.nan}
    return {
        "min": float(np.min(values)),
        "median": float(np.median(values)),
        "max": float(np.max(values)),
    }


def cohort_fingerprint(
    num_found: int, readable: list[SubjectFacts], kept: set, lesion_slices_only: bool
) -> dict:
    """The fingerprint of the ``readable`` subjects, as check and conversion report it.

    Args:
        num_found: subjects discovered, readable or not.
        readable: `subject_facts` of the subjects read without a problem.
        kept: the ids the conversion writes.
        lesion_slices_only: whether the conversion writes only lesion slices (the
            ``converted`` slice count follows it).

    Returns:
        A JSON-ready dict (NaN where there is nothing to count; `format_fingerprint`
        prints it).
    """
    areas = [a for f in readable for a in f.lesion_areas]
    spaced = [f.spacing for f in readable if f.spacing is not None]
    converted = [f for f in readable if f.subject in kept]
    return {
        "subjects": num_found,
        "subjects_readable": len(readable),
        "subjects_lesion_free": sum(1 for f in readable if not f.lesion_areas),
        "slices": sum(f.slices for f in readable),
        "lesion_slices": sum(f.lesion_slices for f in readable),
        "lesions": len(areas),
        "lesions_per_subject": _summary([len(f.lesion_areas) for f in readable]),
        "lesion_size_px": {
            f"p{q}": float(np.percentile(areas, q)) if areas else math.nan for q in SIZE_PERCENTILES
        },
        "spacing_mm": {
            name: _summary([s[i] for s in spaced]) for i, name in enumerate(SPACING_AXES)
        },
        "converted": {
            "subjects": len(converted),
            "slices": sum(f.lesion_slices if lesion_slices_only else f.slices for f in converted),
            "lesions": sum(len(f.lesion_areas) for f in converted),
        },
    }


def _figure(value, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _spread(summary: dict) -> str:
    """ "0.6-0.8 (median 0.7)", or one figure when all are equal (or none is defined)."""
    low, high = _figure(summary["min"]), _figure(summary["max"])
    return low if low == high else f"{low}-{high} (median {_figure(summary['median'])})"


def format_fingerprint(fingerprint: dict) -> str:
    """The fingerprint as a short table (undefined figures as n/a; JSON's null too)."""
    fp, per, size = fingerprint, fingerprint["lesions_per_subject"], fingerprint["lesion_size_px"]
    spacing = ", ".join(
        f"{name.replace('_', '-')} {_spread(s)}" for name, s in fp["spacing_mm"].items()
    )
    done = fp["converted"]
    rows = [
        (
            "subjects",
            f"{fp['subjects']} found, {fp['subjects_readable']} readable, "
            f"{fp['subjects_lesion_free']} lesion-free",
        ),
        ("slices", f"{fp['slices']}, {fp['lesion_slices']} with lesions"),
        (
            "lesions (2-D)",
            f"{fp['lesions']}; per subject {_figure(per['min'])} / {_figure(per['median'])} / "
            f"{_figure(per['max'])} (min / median / max)",
        ),
        (
            "lesion size, px",
            " / ".join(_figure(v) for v in size.values()) + f" ({' / '.join(size)})",
        ),
        ("spacing, mm", spacing),
        (
            "conversion writes",
            f"{done['subjects']} subjects, {done['slices']} slices, {done['lesions']} lesions",
        ),
    ]
    return "\n".join(f"  {name:<18} {text}" for name, text in rows)
