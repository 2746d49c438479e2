"""Converting PWML subjects (NIfTI volumes or PNG slice folders) into a COCO-style dataset.

Output folder (datasets/README.md has the full description)::

    <out>/conversion.json               options, counts, storage format
    <out>/splits.json                   seeded subject split and folds
    <out>/images/<subject>/<subject>_<slice:04d>.npy    float32 slices
    <out>/annotations/instances_<name>.json   all, train, val, test, fold{i}_{train,val}

Why this shape: per-slice float32 files keep raw intensities exactly (the model
z-scores each image itself), COCO JSON is what detectron2 and pycocotools read,
and per-split JSON files make every split usable by any COCO tool.

Speed: subjects are independent, so they are converted by a pool of worker
processes (each reads, checks, slices and RLE-encodes one subject and writes its
slice files); the main process only numbers the results and writes each JSON
once. Safety: everything is written into a staging folder that replaces
``out`` only when the whole conversion succeeded, so a bad file anywhere
leaves the previous output untouched and no partial output behind.
"""
import multiprocessing
import shutil
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .coco import coco_dict, coco_subset, lesion_annotations
from .errors import PWMLDataError
from .fileio import atomic_write_json, read_json, replace_dir, save_slice, staging_dir_for
from .nifti import AXES, axis_index, read_nifti_pair, slice_spacing, volume_slice
from .slice_pairs import read_slice_pair
from .sources import SubjectSource, discover_subjects
from .splits import make_splits

__all__ = ["ConvertOptions", "convert_subject", "convert_pwml", "write_split_files",
           "resplit_pwml", "FORMAT"]

FORMAT = "rsrcnn_d2-pwml-coco/1"
INTENSITY_STORAGE = ("float32 .npy per slice, raw intensities (NIfTI scl_slope/scl_inter "
                     "applied, PNG values as stored), not normalised")


@dataclass(frozen=True)
class ConvertOptions:
    """What to extract: slice ``axis`` (name or canonical index), which slices, mask handling."""

    axis: Union[str, int] = "axial"
    lesion_slices_only: bool = True
    binarize: bool = False


SliceRecord = Tuple[dict, List[dict]]  # image entry without id, its annotations without ids


def _axis_name(axis: int) -> str:
    return {v: k for k, v in AXES.items()}[axis]


def _nifti_records(source: SubjectSource, opts: ConvertOptions):
    axis = axis_index(opts.axis)
    pair = read_nifti_pair(source.image, source.mask, binarize=opts.binarize)
    if pair.mask.shape[axis] == 0 or min(pair.mask.shape) == 0:
        raise PWMLDataError(source.image, f"volume of shape {pair.mask.shape} has no slices")
    if opts.lesion_slices_only:
        other = tuple(a for a in (0, 1, 2) if a != axis)
        indices = np.flatnonzero(pair.mask.any(axis=other))
    else:
        indices = np.arange(pair.mask.shape[axis])
    spacing = list(slice_spacing(pair.zooms, axis))
    for k in indices.tolist():
        yield (k, volume_slice(pair.image, axis, k), volume_slice(pair.mask, axis, k),
               source.image, source.mask, spacing)


def _slice_folder_records(source: SubjectSource, opts: ConvertOptions):
    for k, image_path, mask_path in source.slices:
        image, mask = read_slice_pair(image_path, mask_path, binarize=opts.binarize)
        if opts.lesion_slices_only and not mask.any():
            continue
        yield k, image, mask, image_path, mask_path, None


def convert_subject(source: SubjectSource, out_images: Union[str, Path],
                    opts: ConvertOptions = ConvertOptions()) -> List[SliceRecord]:
    """Check and slice one subject, write its slice files under ``out_images/<subject>/``.

    Returns the COCO image entries (``file_name`` relative to ``out_images``) and
    their annotations, not yet numbered. Raises PWMLDataError for bad input or a
    subject that yields no slices.
    """
    out_images = Path(out_images)
    if source.kind == "nifti":
        items = _nifti_records(source, opts)
        axis = _axis_name(axis_index(opts.axis))
    elif source.kind == "slices":
        items = _slice_folder_records(source, opts)
        axis = None  # the slice folders do not say
    else:
        raise ValueError(f"unknown subject kind {source.kind!r}")
    subject_dir = out_images / source.subject
    records = []
    for k, image, mask, image_path, mask_path, spacing in items:
        subject_dir.mkdir(parents=True, exist_ok=True)
        rel = f"{source.subject}/{source.subject}_{k:04d}.npy"
        save_slice(out_images / rel, image)
        entry = {"file_name": rel, "height": int(image.shape[0]), "width": int(image.shape[1]),
                 "subject": source.subject, "slice_index": int(k), "axis": axis,
                 "source_file": str(image_path), "mask_file": str(mask_path),
                 "spacing": spacing}
        records.append((entry, lesion_annotations(mask)))
    if not records:
        where = source.mask if source.kind == "nifti" else source.slices[0][2].parent
        what = "lesion slices" if opts.lesion_slices_only else "slices"
        raise PWMLDataError(where, f"subject {source.subject!r} has no {what}"
                            + ("; convert all slices to keep lesion-free subjects"
                               if opts.lesion_slices_only else ""))
    return records


def _convert_all(subjects, out_images, opts, workers, progress) -> List[List[SliceRecord]]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(subjects), desc="subjects", unit="subject")
    try:
        if workers <= 1:
            results = []
            for s in subjects:
                results.append(convert_subject(s, out_images, opts))
                if bar:
                    bar.update()
            return results
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(convert_subject, s, out_images, opts) for s in subjects]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                if bar:
                    bar.update(len(done))
                for f in done:
                    if f.exception() is not None:
                        for p in pending:
                            p.cancel()
                        raise f.exception()
            return [f.result() for f in futures]
    finally:
        if bar:
            bar.close()


def write_split_files(root: Union[str, Path], coco_all: dict, splits: dict) -> List[str]:
    """Write splits.json and annotations/instances_<split>.json; return the split names."""
    root = Path(root)
    names = {}
    for name in ("train", "val", "test"):
        names[name] = splits[name]
    for i, fold in enumerate(splits["folds"]):
        for part in ("train", "val"):
            names[f"fold{i}_{part}"] = fold[part]
    for stale in (root / "annotations").glob("instances_fold*.json"):
        if stale.name[len("instances_"):-len(".json")] not in names:
            stale.unlink()  # folds of an earlier, larger k
    for name, subjects in names.items():
        atomic_write_json(root / "annotations" / f"instances_{name}.json",
                          coco_subset(coco_all, subjects))
    atomic_write_json(root / "splits.json", splits)
    return ["all", *names]


def _check_output_location(out_dir: Path) -> None:
    if out_dir.is_file():
        raise PWMLDataError(out_dir, "output location is a file")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "conversion.json").exists():
        raise PWMLDataError(out_dir, "exists, is not empty and is not a previous PWML "
                                     "conversion (no conversion.json); refusing to replace it")


def convert_pwml(source: Union[str, Path, Sequence[SubjectSource]], out_dir: Union[str, Path],
                 *, axis: Union[str, int] = "axial", lesion_slices_only: bool = True,
                 binarize: bool = False, seed: int = 0, fractions=(0.7, 0.15, 0.15),
                 num_folds: Optional[int] = None, workers: int = 2,
                 progress: bool = False) -> dict:
    """Convert a PWML cohort into ``out_dir``; return the conversion summary (conversion.json).

    ``source``: an nnU-Net folder, a slice folder, a pair list (see sources.py),
    or a list of `SubjectSource`. ``lesion_slices_only`` is the paper's setting.
    ``seed`` fixes the subject split and folds. ``num_folds`` None uses 5 or,
    for fewer subjects, none. Re-running over a previous output replaces it whole.
    """
    out_dir = Path(out_dir).absolute()
    subjects = list(source) if isinstance(source, (list, tuple)) else discover_subjects(source)
    if not subjects:
        raise PWMLDataError(str(source), "no subjects to convert")
    if num_folds is None:
        num_folds = 5 if len(subjects) >= 5 else 0
    opts = ConvertOptions(axis=axis, lesion_slices_only=lesion_slices_only, binarize=binarize)
    if subjects[0].kind == "nifti":
        axis_index(axis)  # fail on a bad axis before any work
    splits = make_splits([s.subject for s in subjects], seed, fractions, num_folds)
    _check_output_location(out_dir)

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
        atomic_write_json(staging / "annotations" / "instances_all.json", coco_all)
        split_names = write_split_files(staging, coco_all, splits)
        summary = {
            "format": FORMAT,
            "axis": _axis_name(axis_index(axis)) if subjects[0].kind == "nifti" else None,
            "lesion_slices_only": lesion_slices_only,
            "binarize": binarize,
            "connectivity": "8-neighbourhood, 2-D (rsrcnn_d2.data.instances)",
            "intensity_storage": INTENSITY_STORAGE,
            "num_subjects": len(subjects),
            "num_images": len(images),
            "num_annotations": len(annotations),
            "splits": split_names,
            "seed": int(seed),
        }
        atomic_write_json(staging / "conversion.json", summary)
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def resplit_pwml(root: Union[str, Path], seed: int = 0, fractions=(0.7, 0.15, 0.15),
                 num_folds: int = 5) -> dict:
    """Re-draw the subject split and folds of a converted dataset without re-converting."""
    root = Path(root)
    coco_all = read_json(root / "annotations" / "instances_all.json")
    subjects = sorted({im["subject"] for im in coco_all["images"]})
    splits = make_splits(subjects, seed, fractions, num_folds)
    write_split_files(root, coco_all, splits)
    summary = read_json(root / "conversion.json")
    summary["seed"] = int(seed)
    summary["splits"] = ["all", "train", "val", "test"] + [
        f"fold{i}_{p}" for i in range(len(splits["folds"])) for p in ("train", "val")]
    atomic_write_json(root / "conversion.json", summary)
    return splits
