"""The one way a driver gets its anatomy-based cohort: simulated once, converted once,
registered here.

The ablation, the demo and the pre-training each need the same three steps on a cohort of
their own (`rsrcnn_d2.synth.write_anatomical_cohort` into RAW, `rsrcnn_d2.data.convert_pwml`
into PWML, registration as ``PREFIX_*``). Both steps resume: the generator keeps the subjects
already written (its settings stamp refuses other settings in the same folder) and a finished
conversion (its ``conversion.json``) is reused when it holds as many subjects, split with the
same seed and fractions; otherwise the cohort is converted again.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from ..data.fileio import read_json
from .runner import DatasetRoot

__all__ = ["anatomy_cohort"]

# a driver makes its cohort in a folder of its own output: another output is the way out
DRIVER_REMEDY = (
    "this tool simulates its cohort there itself and keeps only its own: "
    "use another --output, or move that folder away"
)


def anatomy_cohort(
    raw: Path,
    pwml: Path,
    subjects: int,
    seed: int,
    params: Optional[dict] = None,
    *,
    prefix: str = "pwml",
    fractions: Optional[Sequence[float]] = None,
    workers: int = 2,
) -> tuple[DatasetRoot, dict]:
    """Simulate (or keep) ``subjects`` anatomy-based subjects of generator ``seed`` in ``raw``,
    convert them once into ``pwml`` (subject splits from ``seed``, ``fractions`` train/val/test
    or the converter's), register that as ``prefix``_*; (the root, the conversion record).

    ``params``: `AnatomyParams` fields; every subject has lesions unless they say otherwise (the
    converter's lesion-slice mode, the paper's, refuses lesion-free subjects).
    """
    from ..data import convert_pwml
    from ..synth import AnatomyParams, write_anatomical_cohort
    from ..synth.stamp import CohortFolderTaken

    settings = AnatomyParams(**{"lesion_free_fraction": 0.0, **(params or {})})
    try:
        write_anatomical_cohort(raw, subjects, seed, settings, workers=workers)
    except CohortFolderTaken as taken:  # the driver's user has no --overwrite: say what to do
        raise CohortFolderTaken(taken.path, taken.reason, DRIVER_REMEDY) from None
    split = {} if fractions is None else {"fractions": tuple(fractions)}
    if not _converted_as_asked(Path(pwml), subjects, seed, fractions):
        convert_pwml(raw, pwml, seed=seed, **split)
    root = DatasetRoot(prefix, Path(pwml))
    root.register(replace=True)
    return root, read_json(Path(pwml) / "conversion.json")


def _converted_as_asked(pwml: Path, subjects: int, seed: int, fractions) -> bool:
    """Whether PWML holds a finished conversion of this many subjects, split with this seed and
    these fractions (another request converts again: the converter replaces its own output)."""
    if not (pwml / "conversion.json").is_file() or not (pwml / "splits.json").is_file():
        return False
    splits = read_json(pwml / "splits.json")
    converted = splits.get("subjects") or []  # the converter's record: the subject ids
    same = len(converted) == subjects and splits.get("seed") == seed
    if fractions is not None:
        recorded = splits.get("fractions") or {}
        asked = dict(zip(("train", "val", "test"), map(float, fractions)))
        same = same and all(abs(recorded.get(k, -1) - v) < 1e-9 for k, v in asked.items())
    return same
