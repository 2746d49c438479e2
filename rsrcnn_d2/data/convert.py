"""Converting PWML subjects (NIfTI volumes or PNG slice folders) into a COCO-style dataset.

Output folder (datasets/README.md has the full description)::

    <out>/conversion.json               options, counts, storage format, the cohort's
                                        fingerprint, lesion-free subjects left out
    <out>/splits.json                   seeded subject split and folds
    <out>/images/<subject>/<subject>_<slice:04d>.npy    float32 slices
    <out>/images/<subject>/<subject>_<slice:04d>_neighbors.npy   float32 (2, H, W):
                                        slices z-1 and z+1 (an edge slice repeats itself),
                                        the 2.5-D input's other channels (INPUT.NEIGHBOR_SLICES)
    <out>/annotations/instances_<name>.json   all, train, val, test, fold{i}_{train,val}

Why this shape: per-slice float32 files keep raw intensities exactly (the model
z-scores each image itself), COCO JSON is what detectron2 and pycocotools read,
and per-split JSON files make every split usable by any COCO tool.

Checked first: the dataset check (check.py) reads the whole cohort with the
same readers and options and lists every problem; with an error nothing is
written, a warning (a lesion-free subject left out by the lesion-slices
default, an odd voxel spacing) is logged and the conversion goes on.

Speed: subjects are independent, so they are checked and converted by a pool of
worker processes (subject_pool.py; each reads, checks, slices and RLE-encodes
one subject and writes its slice files); the main process only numbers the
results and writes each JSON once. Safety: everything is written into a staging
folder that replaces ``out`` only when the whole conversion succeeded, so a bad
file anywhere leaves the previous output untouched and no partial output behind.

The output folder may hold the user's own files too: conversion.json lists
the files the converter wrote (``files``), and a re-run replaces or removes
only those; everything else is carried into the new output (hard links, so
nothing is copied or lost if the run dies half-way). The converter refuses an
output that is a symbolic link, that contains one where it writes, or that
contains or lies inside its input. A run killed by SIGKILL leaves its staging
folder, which the next run removes; SIGTERM ends a run and removes it at once;
worker processes die with the converter (Linux: PR_SET_PDEATHSIG).
"""

import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .check import DatasetCheckError, check_dataset, find_subjects
from .coco import coco_dict, coco_subset, lesion_annotations
from .errors import PWMLDataError
from .fileio import (
    atomic_write_json,
    check_writable,
    json_safe,
    output_path,
    read_json,
    read_slice,
    remove_stale_staging,
    replace_dir,
    save_slice,
    staging_dir_for,
)
from .nifti import axis_index, axis_name, read_nifti_pair, slice_spacing, volume_slice
from .slice_pairs import read_slice_pair
from .sources import SubjectSource, check_subject_id
from .splits import default_num_folds, make_splits, split_names, split_subjects
from .subject_pool import map_subjects

__all__ = [
    "ConvertOptions",
    "convert_subject",
    "convert_pwml",
    "write_split_files",
    "resplit_pwml",
    "FORMAT",
]

logger = logging.getLogger(__name__)

FORMAT = "rsrcnn_d2-pwml-coco/1"
INTENSITY_STORAGE = (
    "float32 .npy per slice, raw intensities (NIfTI scl_slope/scl_inter "
    "applied, PNG values as stored), not normalised"
)


@dataclass(frozen=True)
class ConvertOptions:
    """What to extract: slice ``axis`` (name or canonical index), which slices, mask handling."""

    axis: Union[str, int] = "axial"
    lesion_slices_only: bool = True
    binarize: bool = False


SliceRecord = tuple[dict, list[dict]]  # image entry without id, its annotations without ids


def _nifti_records(source: SubjectSource, opts: ConvertOptions):
    axis = axis_index(opts.axis)
    pair = read_nifti_pair(source.image, source.mask, binarize=opts.binarize)
    if opts.lesion_slices_only:
        other = tuple(a for a in (0, 1, 2) if a != axis)
        indices = np.flatnonzero(pair.mask.any(axis=other))
    else:
        indices = np.arange(pair.mask.shape[axis])
    spacing = list(slice_spacing(pair.zooms, axis))
    last = pair.image.shape[axis] - 1
    for k in indices.tolist():
        neighbors = np.stack(
            [
                volume_slice(pair.image, axis, max(k - 1, 0)),
                volume_slice(pair.image, axis, min(k + 1, last)),
            ]
        )
        yield (
            k,
            volume_slice(pair.image, axis, k),
            volume_slice(pair.mask, axis, k),
            source.image,
            source.mask,
            spacing,
            neighbors,
        )


def _slice_folder_records(source: SubjectSource, opts: ConvertOptions):
    paths = {k: image_path for k, image_path, _ in source.slices}
    for k, image_path, mask_path in source.slices:
        image, mask = read_slice_pair(image_path, mask_path, binarize=opts.binarize)
        if opts.lesion_slices_only and not mask.any():
            continue
        # a folder's slices z-1 and z+1 where it has them (and of this size), else the slice again
        neighbors = np.stack([_folder_neighbor(paths.get(k + d), image) for d in (-1, 1)])
        yield k, image, mask, image_path, mask_path, None, neighbors


def _folder_neighbor(path, image: np.ndarray) -> np.ndarray:
    if path is None:
        return image
    neighbor = read_slice(path)
    return neighbor if neighbor.shape == image.shape else image


def convert_subject(
    source: SubjectSource, out_images: Union[str, Path], opts: ConvertOptions = ConvertOptions()
) -> list[SliceRecord]:
    """Check and slice one subject, write its slice files under ``out_images/<subject>/``.

    One subject per call, so that a pool of worker processes can convert a cohort.

    Args:
        source: the subject's files.
        out_images: the output's ``images`` folder.
        opts: axis, slice selection and mask handling.

    Returns:
        Per slice, the COCO image entry (``file_name`` and ``neighbor_file`` relative to
        ``out_images``) and its annotations, not yet numbered. Raises PWMLDataError for
        bad input or a subject that yields no slices.
    """
    out_images = Path(out_images)
    if source.kind == "nifti":
        items = _nifti_records(source, opts)
        axis = axis_name(opts.axis)
    elif source.kind == "slices":
        items = _slice_folder_records(source, opts)
        axis = None  # the slice folders do not say
    else:
        raise ValueError(f"unknown subject kind {source.kind!r}")
    check_subject_id(source.subject, source.image or out_images)
    subject_dir = output_path(out_images, source.subject)
    records = []
    for k, image, mask, image_path, mask_path, spacing, neighbors in items:
        subject_dir.mkdir(parents=True, exist_ok=True)
        rel = f"{source.subject}/{source.subject}_{k:04d}.npy"
        neighbor_rel = f"{source.subject}/{source.subject}_{k:04d}_neighbors.npy"
        save_slice(output_path(out_images, rel), image)
        save_slice(output_path(out_images, neighbor_rel), neighbors)
        entry = {
            "file_name": rel,
            "neighbor_file": neighbor_rel,
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "subject": source.subject,
            "slice_index": int(k),
            "axis": axis,
            "source_file": str(image_path),
            "mask_file": str(mask_path),
            "spacing": spacing,
        }
        records.append((entry, lesion_annotations(mask)))
    if not records:
        where = source.mask if source.kind == "nifti" else source.slices[0][2].parent
        what = "lesion slices" if opts.lesion_slices_only else "slices"
        raise PWMLDataError(
            where,
            f"subject {source.subject!r} has no {what}"
            + (
                "; convert all slices to keep lesion-free subjects"
                if opts.lesion_slices_only
                else ""
            ),
        )
    return records


def _convert_one(source: SubjectSource, out_images, opts) -> list[SliceRecord]:
    return convert_subject(source, out_images, opts)  # looked up at each call (tests wrap it)


def _convert_all(subjects, out_images, opts, workers, progress) -> list[list[SliceRecord]]:
    task = functools.partial(_convert_one, out_images=out_images, opts=opts)
    return map_subjects(task, subjects, workers, progress)


@contextlib.contextmanager
def _sigterm_ends_run():
    """Turn SIGTERM into SystemExit(143) while converting, so the staging folder is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not break the clean-up
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def write_split_files(
    root: Union[str, Path], coco_all: dict, splits: dict, own: Optional[set] = None
) -> list[str]:
    """Write splits.json and annotations/instances_<split>.json; return the split names.

    Args:
        root: the converted dataset's folder.
        coco_all: the COCO dict of every slice (instances_all.json).
        splits: `splits.make_splits`'s result.
        own: files of ``root`` the converter wrote (relative), the only stale fold files
            it may delete; None when ``root`` is a fresh staging folder.

    Returns:
        The split names (`splits.split_names`): train, val, test, fold{i}_{train,val}.
    """
    root = Path(root)
    names = split_subjects(splits)
    for stale in (root / "annotations").glob("instances_fold*.json"):
        mine = own is None or f"annotations/{stale.name}" in own
        if mine and stale.name[len("instances_") : -len(".json")] not in names:
            stale.unlink()  # folds of an earlier, larger k
    for name, subjects in names.items():
        atomic_write_json(
            output_path(root, "annotations", f"instances_{name}.json"),
            coco_subset(coco_all, subjects),
        )
    atomic_write_json(output_path(root, "splits.json"), splits)
    return split_names(len(splits["folds"]))


def _inside(path: Union[str, Path], folder: Union[str, Path]) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _input_paths(source, subjects: Sequence[SubjectSource]) -> list[Path]:
    paths = [] if isinstance(source, (list, tuple)) else [Path(source)]
    for s in subjects:
        paths += [p for p in (s.image, s.mask) if p is not None]
        for _, image, mask in s.slices:
            paths += [image, mask]
    return paths


def _check_output_location(out_dir: Path, source, subjects: Sequence[SubjectSource]) -> None:
    """Refuse an output that is a link, a file, someone else's folder, or mixed with the input."""
    if out_dir.is_symlink():
        raise PWMLDataError(
            out_dir,
            f"output folder is a symbolic link (to {os.readlink(out_dir)}); give the real folder",
        )
    if out_dir.is_file():
        raise PWMLDataError(out_dir, "output location is a file")
    # the staging folder is made beside the output and renamed into its place; a read-only output
    # folder is the user's "not here", not an empty folder to replace
    check_writable(out_dir.absolute().parent, "the folder holding the output")
    if out_dir.is_dir():
        check_writable(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "conversion.json").exists():
        raise PWMLDataError(
            out_dir,
            "exists, is not empty and is not a previous PWML "
            "conversion (no conversion.json); refusing to replace it",
        )
    for path in _input_paths(source, subjects):
        if _inside(path, out_dir):
            raise PWMLDataError(
                out_dir,
                f"output folder contains the input {path}; choose an output outside the input",
            )
        if path.is_dir() and _inside(out_dir, path):
            raise PWMLDataError(
                out_dir,
                f"output folder lies inside the input folder {path}; "
                "choose an output outside the input",
            )


_LEGACY_OWN = re.compile(
    r"conversion\.json|splits\.json|annotations/instances_[A-Za-z0-9_]+\.json"
    r"|images/([A-Za-z0-9_.-]+)/\1_[0-9]{4,}\.npy"
)


def _own_files(out_dir: Path) -> Optional[set]:
    """Files of a previous output that the converter wrote (relative POSIX paths).

    From conversion.json's ``files``; outputs written before that list existed
    (or a conversion.json without it) count only names of the converter's layout.
    None: every file counts (patterns apply).
    """
    path = out_dir / "conversion.json"
    try:
        summary = read_json(path) if path.is_file() and not path.is_symlink() else {}
    except PWMLDataError:
        summary = {}
    files = summary.get("files") if isinstance(summary, dict) else None
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        return set(files) | {"conversion.json"}
    return None


def _is_own(rel: str, own: Optional[set]) -> bool:
    return rel in own if own is not None else bool(_LEGACY_OWN.fullmatch(rel))


def _carry_foreign(out_dir: Path, staging: Path) -> None:
    """Hard-link (or copy) every file of ``out_dir`` the converter did not write into ``staging``.

    A foreign file or link at a path the new output uses is an error: nothing of
    the user's is ever overwritten, and no link is followed.
    """
    own = _own_files(out_dir)
    for folder, dirs, files in os.walk(out_dir):
        folder = Path(folder)
        links = [d for d in dirs if (folder / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in links]
        if not dirs and not files and not links and folder != out_dir:
            rel = folder.relative_to(out_dir).as_posix()
            if own is None or not any(f.startswith(rel + "/") for f in own):
                (staging / rel).mkdir(parents=True, exist_ok=True)  # the user's empty folder
        for name in files + links:
            src = folder / name
            rel = src.relative_to(out_dir).as_posix()
            if not src.is_symlink() and _is_own(rel, own):
                continue
            dst = staging / rel
            parents = [staging / Path(rel).parents[i] for i in range(len(Path(rel).parts) - 1)]
            if os.path.lexists(dst) or any(p.exists() and not p.is_dir() for p in parents):
                what = (
                    "a symbolic link"
                    if src.is_symlink()
                    else "not written by a previous conversion"
                )
                raise PWMLDataError(
                    src,
                    f"is {what}, and the new conversion writes there; "
                    "move it out of the output folder",
                )
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:  # file system without hard links, or not ours to link
                try:
                    shutil.copy2(src, dst)
                except OSError as e:
                    raise PWMLDataError(
                        src,
                        f"not written by a previous conversion and cannot be "
                        f"kept in the new output ({e}); move it away",
                    ) from e


def _publish(staging: Path, out_dir: Path) -> None:
    """Put ``staging`` in place of ``out_dir``, keeping the user's files of ``out_dir``.

    SIGTERM waits until the swap is done (it would otherwise fall between its renames).
    """
    block = hasattr(signal, "pthread_sigmask")
    if block:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        if out_dir.exists():
            _carry_foreign(out_dir, staging)
        replace_dir(staging, out_dir)
    finally:
        if block:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def convert_pwml(
    source: Union[str, Path, Sequence[SubjectSource]],
    out_dir: Union[str, Path],
    *,
    axis: Union[str, int] = "axial",
    lesion_slices_only: bool = True,
    binarize: bool = False,
    seed: int = 0,
    fractions=(0.7, 0.15, 0.15),
    num_folds: Optional[int] = None,
    workers: int = 2,
    progress: bool = False,
) -> dict:
    """Convert a PWML cohort into ``out_dir``; return the conversion summary (conversion.json).

    Re-running over a previous output replaces the files it wrote (conversion.json's
    ``files``) and keeps any others. The whole cohort is checked first
    (`check.check_dataset`, same options): its warnings are logged, and any error raises
    `check.DatasetCheckError` listing every error before anything is written.

    Args:
        source: an nnU-Net folder, a slice folder, a pair list (see sources.py), or a
            list of `SubjectSource`.
        out_dir: the output folder (replaced as a whole once the conversion succeeded).
        axis: slice axis of NIfTI volumes, a name or a canonical index.
        lesion_slices_only: the paper's setting. Lesion-free subjects then have no
            lesion slice and are left out (a warning each).
        binarize: any non-zero mask voxel is lesion; else a non-binary mask is an error.
        seed: fixes the subject split and folds.
        fractions: train, val and test shares of the subjects.
        num_folds: cross-validation folds; None uses 5 or, for fewer subjects, none.
        workers: processes checking and converting subjects.
        progress: show progress bars.

    Returns:
        The content of conversion.json.
    """
    out_dir = Path(out_dir).absolute()
    found = find_subjects(source)
    if any(s.kind == "nifti" for s in found[0]):
        axis_index(axis)  # fail on a bad axis before any work
    _check_output_location(out_dir, source, found[0])  # before reading any volume
    report = check_dataset(
        source,
        axis=axis,
        lesion_slices_only=lesion_slices_only,
        binarize=binarize,
        seed=seed,
        fractions=fractions,
        num_folds=num_folds,
        workers=workers,
        progress=progress,
        found=found,
    )
    for warning in report.warnings:
        logger.warning("%s: %s", warning.file, warning.message)
    if report.errors:
        raise DatasetCheckError(report)
    opts = ConvertOptions(axis=axis, lesion_slices_only=lesion_slices_only, binarize=binarize)
    left_out = sorted({s.subject for s in report.subjects} - {s.subject for s in report.kept})
    extra = {"left_out_lesion_free": left_out, "fingerprint": json_safe(report.fingerprint)}
    remove_stale_staging(out_dir)
    with _sigterm_ends_run():
        return _convert_into(
            out_dir, report.kept, opts, report.splits, workers, progress, seed, extra
        )


def _convert_into(out_dir, subjects, opts, splits, workers, progress, seed, extra) -> dict:
    staging = staging_dir_for(out_dir)
    try:
        results = _convert_all(subjects, staging / "images", opts, workers, progress)
        images, annotations = [], []
        for subject_records in results:
            for entry, annos in subject_records:
                image_id = len(images) + 1
                images.append({"id": image_id, **entry})
                for a in annos:
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
        coco_all = coco_dict(images, annotations)
        atomic_write_json(output_path(staging, "annotations", "instances_all.json"), coco_all)
        split_names = write_split_files(staging, coco_all, splits)
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        summary = {
            "format": FORMAT,
            "axis": axis_name(opts.axis) if subjects[0].kind == "nifti" else None,
            "lesion_slices_only": opts.lesion_slices_only,
            "binarize": opts.binarize,
            "connectivity": "8-neighbourhood, 2-D (rsrcnn_d2.data.instances)",
            "intensity_storage": INTENSITY_STORAGE,
            "num_subjects": len(subjects),
            "num_images": len(images),
            "num_annotations": len(annotations),
            "splits": split_names,
            "seed": int(seed),
            **extra,
            "files": sorted(files + ["conversion.json"]),
        }
        atomic_write_json(output_path(staging, "conversion.json"), summary)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def resplit_pwml(
    root: Union[str, Path],
    seed: int = 0,
    fractions=(0.7, 0.15, 0.15),
    num_folds: Optional[int] = None,
) -> dict:
    """Re-draw the subject split and folds of a converted dataset without re-converting.

    Args:
        root: a converted dataset's folder.
        seed, fractions, num_folds: as `splits.make_splits`; ``num_folds`` None keeps the
            dataset's number of folds (a cohort of fewer than 5 subjects has none).

    Returns:
        The new splits.json content; conversion.json's seed, splits and file list follow.
    """
    root = Path(root)
    coco_all = read_json(root / "annotations" / "instances_all.json")
    subjects = sorted({im["subject"] for im in coco_all["images"]})
    if num_folds is None:
        current = root / "splits.json"
        folds = read_json(current).get("folds") if current.is_file() else None
        num_folds = len(folds) if isinstance(folds, list) else default_num_folds(len(subjects))
    splits = make_splits(subjects, seed, fractions, num_folds)
    own = _own_files(root)
    names = write_split_files(root, coco_all, splits, own)
    summary = read_json(root / "conversion.json")
    summary["seed"] = int(seed)
    summary["splits"] = names
    if own is not None:  # the manifest follows the fold files written and removed
        split_files = {f"annotations/instances_{n}.json" for n in names}
        kept = {f for f in own if not f.startswith("annotations/instances_fold")}
        summary["files"] = sorted(kept | split_files | {"splits.json", "conversion.json"})
    atomic_write_json(output_path(root, "conversion.json"), summary)
    return splits
