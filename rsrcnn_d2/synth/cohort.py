"""Writing the anatomy-based synthetic cohort: nnU-Net raw layout, optionally reference PNG slices.

``OUT/imagesTr/PWML_###_0000.nii.gz`` + ``OUT/labelsTr/PWML_###.nii.gz`` and a
``dataset.json`` (nnU-Net v2 fields plus the generator's settings and each
subject's draws). With ``slices_dir`` the lesion slices are also written in the
reference implementation's layout (``input/<case>/<slice>.png``,
``gt/<case>/<slice>.png``: 8-bit head crops, masks 0/255), the form of
the reference slices (datasets/README.md). Subject i depends only on (seed, i).
Every file is written under a temporary name and renamed.
"""

import multiprocessing
from pathlib import Path
from typing import Union

import numpy as np

from ..data.fileio import atomic_write, atomic_write_json
from ..data.nifti import volume_slice
from .anatomy import AnatomyParams, simulate_subject
from .mni_template import load_mni152_tissues
from .nifti_writer import save_nifti
from .reference_crops import reference_crop
from .stamp import claim_cohort_folder

__all__ = ["write_anatomical_cohort", "check_cohort_output"]

# the generator's name as every cohort's dataset.json records it (`stamp.claim_cohort_folder`
# compares it): kept from when the generator lived in rsrcnn_d2.data, so that folders written
# then are still recognised as this generator's
GENERATOR = "rsrcnn_d2.data.anatomy (MNI152 2009a, nilearn)"


def check_cohort_output(out_dir: Union[str, Path], num_subjects: int, what: str = "output") -> Path:
    """Refuse a cohort size below 1 and an output path that is an existing file.

    Checked before any subject is simulated, so that a bad argument costs nothing.

    Args:
        out_dir: the folder to write.
        num_subjects: the cohort's size.
        what: the folder's role, for the message.

    Returns:
        ``out_dir`` as a Path. ValueError for either problem.
    """
    if int(num_subjects) < 1:
        raise ValueError(f"the number of subjects must be at least 1, got {num_subjects}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: the {what} folder is an existing file")
    return out_dir


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    image = Image.fromarray(np.asarray(array, np.uint8), mode="L")
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _write_reference_slices(
    slices_dir: Path, case: str, image: np.ndarray, mask: np.ndarray
) -> int:
    written = 0
    for z in np.flatnonzero(mask.any(axis=(0, 1))):
        crop, crop_mask = reference_crop(
            volume_slice(image, 2, z).astype(np.float32), volume_slice(mask, 2, z)
        )
        if not crop_mask.any():
            continue  # the lesion's cross-section is under half a crop pixel here
        _save_png(slices_dir / "input" / case / f"{z}.png", crop)
        _save_png(slices_dir / "gt" / case / f"{z}.png", np.where(crop_mask, 255, 0))
        written += 1
    return written


def _write_case(job):
    out_dir, slices_dir, case, seed_seq, params, overwrite = job
    image_path = out_dir / "imagesTr" / f"{case}_0000.nii.gz"
    mask_path = out_dir / "labelsTr" / f"{case}.nii.gz"
    cached = image_path.exists() and mask_path.exists() and not overwrite
    if cached and slices_dir is None:
        return case, None  # both files are only ever written whole
    subject = simulate_subject(seed_seq, params)
    if not cached:
        save_nifti(mask_path, subject.mask, subject.affine)
        save_nifti(image_path, subject.image, subject.affine)
    info = dict(subject.info)
    if slices_dir is not None:
        info["png_slices"] = _write_reference_slices(slices_dir, case, subject.image, subject.mask)
    return case, info


def write_anatomical_cohort(
    out_dir: Union[str, Path],
    num_subjects: int = 30,
    seed: int = 0,
    params: AnatomyParams = AnatomyParams(),
    workers: int = 1,
    slices_dir: Union[str, Path, None] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> list[str]:
    """Write ``num_subjects`` simulated subjects; return the case names.

    Args:
        out_dir: the nnU-Net raw folder (imagesTr, labelsTr, dataset.json).
        num_subjects: the cohort's size; subject i depends only on (seed, i).
        seed: the cohort's seed.
        params: the ranges every subject's draws come from.
        workers: > 1 simulates in that many processes.
        slices_dir: also write the lesion slices as reference PNG head crops here
            (None: no PNGs).
        overwrite: existing cases are reused unless this is set; a folder holding a
            cohort made with other settings is refused (it would mix two cohorts) unless
            this is set.
        progress: show a progress bar.

    Returns:
        The case names, ``PWML_000``, ``PWML_001``, ...
    """
    out_dir = check_cohort_output(out_dir, num_subjects)
    if slices_dir is not None:
        slices_dir = check_cohort_output(slices_dir, num_subjects, "PNG slice")
    settings = {"generator": GENERATOR, "seed": int(seed), "params": params.as_dict()}
    # the settings first: a run killed halfway leaves cases that a re-run with other settings
    # must refuse instead of reusing (the full record is written at the end)
    previous = claim_cohort_folder(out_dir, settings, overwrite)
    seeds = np.random.SeedSequence(seed).spawn(int(num_subjects))
    jobs = [
        (
            out_dir,
            None if slices_dir is None else Path(slices_dir),
            f"PWML_{i:03d}",
            s,
            params,
            overwrite,
        )
        for i, s in enumerate(seeds)
    ]
    load_mni152_tissues()  # once, before forking: the workers share it
    results = _run(jobs, workers, progress)
    cases = [case for case, _ in results]
    dataset = {
        "name": "synthetic PWML cohort on MNI152 anatomy (rsrcnn_d2)",
        "description": "MNI152 2009a template scaled to a preterm head, deformed per subject, "
        "neonatal T1w contrast, 3-D punctate lesions; see datasets/README.md",
        "channel_names": {"0": "T1w"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "generator_settings": settings,
    }
    known = previous.get("subjects", {}) if not overwrite else {}
    subjects = {case: info if info is not None else known.get(case) for case, info in results}
    subjects = {case: info for case, info in subjects.items() if info is not None}
    if subjects:
        dataset["subjects"] = subjects
    atomic_write_json(out_dir / "dataset.json", dataset)
    return cases


def _run(jobs, workers: int, progress: bool):
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="subjects", unit="subject", disable=not progress)
    results = []
    if workers > 1:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap(_write_case, jobs):
                results.append(result)
                bar.update()
    else:
        for job in jobs:
            results.append(_write_case(job))
            bar.update()
    bar.close()
    return results
