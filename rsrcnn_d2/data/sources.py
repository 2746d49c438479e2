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
In the nnU-Net layout a NIfTI file of imagesTr without a channel suffix, a case
with other channels but no ``_0000``, and a mask of labelsTr without its image
are errors: each would otherwise drop a subject without a word.

Every function raises the first problem; given a ``problems`` list it adds each
problem there instead, leaves the subject out and goes on (the dataset check,
check.py, lists a whole cohort's problems in one pass).
"""

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

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
_CHANNEL = re.compile(r"(.+)_([0-9]{4})")  # nnU-Net's <case>_<channel>

Problems = Optional[list[PWMLDataError]]  # None: raise the first problem

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
    slices: list[tuple[int, Path, Path]] = field(default_factory=list)


def check_subject_id(subject, where: Union[str, Path], entry: str = "") -> str:
    """``subject`` if it is safe as a file name; else PWMLDataError naming ``where``
    (and ``entry``).

    Subject ids become the output's folder and file names, so this keeps any id, however
    made, from placing a file elsewhere.

    Args:
        subject: the id to check (not a string: refused).
        where: the file or folder the id came from, named in the error.
        entry: the place in that file ("line 3"), or "".

    Returns:
        ``subject`` itself.
    """
    if not isinstance(subject, str) or not _SAFE_ID.fullmatch(subject) or subject in (".", ".."):
        raise PWMLDataError(
            where,
            f"{entry + ': ' if entry else ''}subject id {subject!r} is not "
            "allowed; use letters, digits, '_', '-' and '.' only "
            "(not '.' or '..' alone, no path separators)",
        )
    return subject


def _report(problems: Problems, error: PWMLDataError) -> None:
    """Raise ``error``, or add it to ``problems`` when the caller lists every problem."""
    if problems is None:
        raise error
    problems.append(error)


def _check_unique(
    subjects: list[SubjectSource], where: Path, problems: Problems = None, candidates: int = 0
) -> list[SubjectSource]:
    """``subjects`` sorted, safe ids, no id twice; ``candidates``: entries seen, problems too."""
    seen, out = set(), []
    for s in subjects:
        try:
            check_subject_id(s.subject, where)
        except PWMLDataError as e:
            _report(problems, e)
            continue
        if s.subject in seen:
            _report(problems, PWMLDataError(where, f"subject id {s.subject!r} appears twice"))
            continue
        seen.add(s.subject)
        out.append(s)
    if not subjects and not candidates:  # (candidates left out have had their problem told)
        _report(problems, PWMLDataError(where, "no subjects found"))
    return sorted(out, key=lambda s: s.subject)


def _layout_folders(
    root: Union[str, Path], names: tuple[str, str], layout: str, problems: Problems = None
) -> Optional[list[Path]]:
    """``root/name`` for each of ``names``; None (or PWMLDataError) if one is missing."""
    folders = [Path(root) / name for name in names]
    missing = [d for d in folders if not d.is_dir()]
    for d in missing:
        _report(problems, PWMLDataError(d, f"missing folder of {layout}"))
    return None if missing else folders


def _nifti_files(folder: Path) -> dict:
    """{stem: path} of the NIfTI files of ``folder`` (other files: dataset.json, notes ...)."""
    files = {}
    for path in sorted(folder.iterdir()):
        stem, _ = split_nifti_name(path.name)
        if stem is not None:
            files[stem] = path
    return files


def nnunet_subjects(root: Union[str, Path], problems: Problems = None) -> list[SubjectSource]:
    """Subjects of an nnU-Net raw dataset folder (imagesTr + labelsTr)."""
    folders = _layout_folders(root, ("imagesTr", "labelsTr"), "the nnU-Net layout", problems)
    if folders is None:
        return []
    images_dir, labels_dir = folders
    images, labels = _nifti_files(images_dir), _nifti_files(labels_dir)
    out, cases = [], set()
    for stem, path in images.items():
        channel = _CHANNEL.fullmatch(stem)
        if channel is None:
            _report(
                problems,
                PWMLDataError(
                    path,
                    f"no nnU-Net channel suffix; name the T1w image "
                    f"{stem}{NNUNET_T1_CHANNEL}{split_nifti_name(path.name)[1]}",
                ),
            )
            continue
        case = channel.group(1)
        cases.add(case)
        if f"_{channel.group(2)}" != NNUNET_T1_CHANNEL:
            if case + NNUNET_T1_CHANNEL not in images:
                _report(
                    problems,
                    PWMLDataError(
                        path,
                        f"channel {channel.group(2)} of case {case!r} without its T1w "
                        f"image {case}{NNUNET_T1_CHANNEL} (the only channel used)",
                    ),
                )
            continue  # other channels of a case: only the T1w one is used
        case = case_name(path)
        mask = labels_dir / f"{case}{split_nifti_name(path.name)[1]}"
        if not mask.exists():
            _report(problems, PWMLDataError(path, f"no lesion mask {mask}"))
            continue
        out.append(SubjectSource(case, "nifti", image=path, mask=mask))
    for case, mask in labels.items():
        if case not in cases:
            image = images_dir / f"{case}{NNUNET_T1_CHANNEL}{split_nifti_name(mask.name)[1]}"
            _report(problems, PWMLDataError(mask, f"lesion mask without its image {image}"))
    return _check_unique(out, images_dir, problems, len(images) + len(labels))


def _read_pair_list(list_file: Path) -> list:
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
    return rows


def pair_list_subjects(
    list_file: Union[str, Path], problems: Problems = None
) -> list[SubjectSource]:
    """Subjects named in a CSV or JSON list of (subject, image, mask)."""
    list_file = Path(list_file)
    try:
        rows = _read_pair_list(list_file)
    except PWMLDataError as e:
        _report(problems, e)
        return []
    is_csv = list_file.suffix.lower() != ".json"
    out = []
    for i, row in enumerate(rows):
        where = f"line {i + 2}" if is_csv else f"entry {i}"  # CSV: line 1 is the header
        if not isinstance(row, dict) or any(
            row.get(k) is None for k in ("subject", "image", "mask")
        ):  # a short CSV row gives None for its missing cells (an empty id: check_subject_id)
            _report(
                problems,
                PWMLDataError(list_file, f"{where} needs keys subject, image, mask: {row}"),
            )
            continue
        try:
            check_subject_id(str(row["subject"] or "").strip(), list_file, where)
        except PWMLDataError as e:
            _report(problems, e)
            continue
        image, mask = (list_file.parent / str(row[k]).strip() for k in ("image", "mask"))
        missing = [p for p in (image, mask) if not p.exists()]
        for p in missing:
            _report(problems, PWMLDataError(p, f"listed in {list_file} ({where}) but missing"))
        if not missing:
            out.append(SubjectSource(str(row["subject"]).strip(), "nifti", image=image, mask=mask))
    return _check_unique(out, list_file, problems, len(rows))


def _slice_index(path: Path, fallback: int) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return fallback


def slice_folder_subjects(root: Union[str, Path], problems: Problems = None) -> list[SubjectSource]:
    """Subjects of the reference implementation's input/ + gt/ slice folders."""
    layout = "the input/ + gt/ slice layout"
    folders = _layout_folders(root, ("input", "gt"), layout, problems)
    if folders is None:
        return []
    input_dir, gt_dir = folders
    out, subject_dirs = [], sorted(p for p in input_dir.iterdir() if p.is_dir())
    for subject_dir in subject_dirs:
        files = sorted(p for p in subject_dir.iterdir() if p.name.lower().endswith(PNG_ENDINGS))
        if not files:
            _report(problems, PWMLDataError(subject_dir, "subject has no slice images"))
            continue
        slices, complete = [], True
        for n, image in enumerate(files):
            mask = gt_dir / subject_dir.name / image.name
            if not mask.exists():
                _report(problems, PWMLDataError(image, f"no ground-truth slice {mask}"))
                complete = False
            slices.append((_slice_index(image, n), image, mask))
        indices = [s[0] for s in slices]
        if len(set(indices)) != len(indices):
            _report(
                problems, PWMLDataError(subject_dir, "two slice files give the same slice index")
            )
            complete = False
        if complete:
            out.append(SubjectSource(subject_dir.name, "slices", slices=sorted(slices)))
    return _check_unique(out, input_dir, problems, len(subject_dirs))


def discover_subjects(source: Union[str, Path], problems: Problems = None) -> list[SubjectSource]:
    """Subjects from whichever layout ``source`` is: nnU-Net folder, slice folders or pair list."""
    source = Path(source)
    if source.is_file():
        return pair_list_subjects(source, problems)
    if (source / "imagesTr").is_dir():
        return nnunet_subjects(source, problems)
    if (source / "input").is_dir():
        return slice_folder_subjects(source, problems)
    _report(
        problems,
        PWMLDataError(
            source,
            "not a pair list (.csv/.json), an nnU-Net folder "
            "(imagesTr/, labelsTr/) or a slice folder (input/, gt/)",
        ),
    )
    return []
