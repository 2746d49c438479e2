"""Finding subjects: which image goes with which mask, under which subject id.

Three layouts are understood (datasets/README.md shows them):

- nnU-Net raw: ``imagesTr/<case>_0000.nii[.gz]`` + ``labelsTr/<case>.nii[.gz]``;
  the case name is the subject id. Only channel 0000 (T1w) is used.
- a pair list, CSV (header ``subject,image,mask``) or JSON (a list of objects
  with those keys); relative paths are relative to the list's folder.
- the reference implementation's slice folders: ``input/<subject>/<slice>.png``
  + ``gt/<subject>/<slice>.png``.

Discovery checks only that the files exist and pair up; reading them is the
converter's job, so a subject id or missing-file error comes before any work.
Subject ids become folder and file names of the output, so they are restricted
to letters, digits, ``_``, ``-`` and ``.`` (not ``.`` or ``..`` alone).
"""

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple, Union

from .errors import PWMLDataError
from .nifti import NNUNET_T1_CHANNEL, case_name, split_nifti_name

__all__ = [
    "SubjectSource",
    "nnunet_subjects",
    "pair_list_subjects",
    "slice_folder_subjects",
    "discover_subjects",
    "check_subject_id",
]

_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")

PNG_ENDINGS = (".png", ".tif", ".tiff")


@dataclass
class SubjectSource:
    """One subject's input files.

    kind "nifti": ``image`` and ``mask`` are one volume each. kind "slices":
    ``slices`` lists (slice index, image file, mask file) of 2-D images.
    """

    subject: str
    kind: str
    image: Path = None
    mask: Path = None
    slices: List[Tuple[int, Path, Path]] = field(default_factory=list)


def check_subject_id(subject, where: Union[str, Path], entry: str = "") -> str:
    """``subject`` if it is safe as a file name; else PWMLDataError naming ``where``
    (and ``entry``)."""
    if not isinstance(subject, str) or not _SAFE_ID.fullmatch(subject) or subject in (".", ".."):
        raise PWMLDataError(
            where,
            f"{entry + ': ' if entry else ''}subject id {subject!r} is not "
            "allowed; use letters, digits, '_', '-' and '.' only "
            "(not '.' or '..' alone, no path separators)",
        )
    return subject


def _check_unique(subjects: List[SubjectSource], where: Path) -> List[SubjectSource]:
    seen = set()
    for s in subjects:
        check_subject_id(s.subject, where)
        if s.subject in seen:
            raise PWMLDataError(where, f"subject id {s.subject!r} appears twice")
        seen.add(s.subject)
    if not subjects:
        raise PWMLDataError(where, "no subjects found")
    return sorted(subjects, key=lambda s: s.subject)


def _layout_folders(root: Union[str, Path], names: Tuple[str, str], layout: str) -> List[Path]:
    """``root/name`` for each of ``names``; PWMLDataError naming the first that is missing."""
    folders = [Path(root) / name for name in names]
    for d in folders:
        if not d.is_dir():
            raise PWMLDataError(d, f"missing folder of {layout}")
    return folders


def nnunet_subjects(root: Union[str, Path]) -> List[SubjectSource]:
    """Subjects of an nnU-Net raw dataset folder (imagesTr + labelsTr)."""
    images_dir, labels_dir = _layout_folders(root, ("imagesTr", "labelsTr"), "the nnU-Net layout")
    out = []
    for path in sorted(images_dir.iterdir()):
        stem, ending = split_nifti_name(path.name)
        if stem is None or not stem.endswith(NNUNET_T1_CHANNEL):
            continue  # other channels, dataset.json ...
        case = case_name(path)
        mask = labels_dir / f"{case}{ending}"
        if not mask.exists():
            raise PWMLDataError(path, f"no lesion mask {mask}")
        out.append(SubjectSource(case, "nifti", image=path, mask=mask))
    return _check_unique(out, images_dir)


def pair_list_subjects(list_file: Union[str, Path]) -> List[SubjectSource]:
    """Subjects named in a CSV or JSON list of (subject, image, mask)."""
    list_file = Path(list_file)
    try:
        if list_file.suffix.lower() == ".json":
            rows = json.loads(list_file.read_text())
        else:
            with open(list_file, newline="") as f:
                rows = list(csv.DictReader(f))
    except (OSError, ValueError) as e:
        raise PWMLDataError(list_file, f"cannot read pair list ({e})") from e
    if not isinstance(rows, list):
        raise PWMLDataError(list_file, "pair list must be a JSON list of objects")
    is_csv = list_file.suffix.lower() != ".json"
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"subject", "image", "mask"} <= set(row):
            raise PWMLDataError(list_file, f"entry {i} needs keys subject, image, mask: {row}")
        where = f"line {i + 2}" if is_csv else f"entry {i}"  # CSV: line 1 is the header
        check_subject_id(str(row["subject"] or "").strip(), list_file, where)
        image, mask = (list_file.parent / str(row[k]).strip() for k in ("image", "mask"))
        for p in (image, mask):
            if not p.exists():
                raise PWMLDataError(p, f"listed in {list_file} (entry {i}) but missing")
        out.append(SubjectSource(str(row["subject"]).strip(), "nifti", image=image, mask=mask))
    return _check_unique(out, list_file)


def _slice_index(path: Path, fallback: int) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return fallback


def slice_folder_subjects(root: Union[str, Path]) -> List[SubjectSource]:
    """Subjects of the reference implementation's input/ + gt/ slice folders."""
    input_dir, gt_dir = _layout_folders(root, ("input", "gt"), "the input/ + gt/ slice layout")
    out = []
    for subject_dir in sorted(p for p in input_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in subject_dir.iterdir() if p.name.lower().endswith(PNG_ENDINGS))
        if not files:
            raise PWMLDataError(subject_dir, "subject has no slice images")
        slices = []
        for n, image in enumerate(files):
            mask = gt_dir / subject_dir.name / image.name
            if not mask.exists():
                raise PWMLDataError(image, f"no ground-truth slice {mask}")
            slices.append((_slice_index(image, n), image, mask))
        indices = [s[0] for s in slices]
        if len(set(indices)) != len(indices):
            raise PWMLDataError(subject_dir, "two slice files give the same slice index")
        out.append(SubjectSource(subject_dir.name, "slices", slices=sorted(slices)))
    return _check_unique(out, input_dir)


def discover_subjects(source: Union[str, Path]) -> List[SubjectSource]:
    """Subjects from whichever layout ``source`` is: nnU-Net folder, slice folders or pair list."""
    source = Path(source)
    if source.is_file():
        return pair_list_subjects(source)
    if (source / "imagesTr").is_dir():
        return nnunet_subjects(source)
    if (source / "input").is_dir():
        return slice_folder_subjects(source)
    raise PWMLDataError(
        source,
        "not a pair list (.csv/.json), an nnU-Net folder "
        "(imagesTr/, labelsTr/) or a slice folder (input/, gt/)",
    )
