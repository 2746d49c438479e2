"""One cohort folder, one generation: a generator's settings recorded before its first case.

Both synthetic generators reuse the cases a folder already holds (subject i depends only on
(seed, i)), so a run killed halfway and re-run with another seed or other parameters would
keep the first run's cases and record the second's settings: two cohorts under one name.
`claim_cohort_folder` refuses that, and cases no ``dataset.json`` describes, before anything
is written, then records the settings in ``dataset.json`` (the generator's full record
replaces it at the end).
"""

from pathlib import Path
from typing import Callable, Optional

from ..data.fileio import atomic_write_json, read_json
from ..errors import PWMLDataError

__all__ = ["CohortFolderTaken", "OVERWRITE_HINT", "claim_cohort_folder"]

# what a user of the generators (tools/make_synthetic_cohort.py) can do about a taken folder
OVERWRITE_HINT = "use another folder or overwrite=True (--overwrite)"


class CohortFolderTaken(PWMLDataError):
    """A cohort folder holding another generation; ``reason`` says whose, ``remedy`` what the
    caller's user can do (a driver that makes its cohort itself has no --overwrite)."""

    def __init__(self, path, reason: str, remedy: str = OVERWRITE_HINT):
        self.reason, self.remedy = reason, remedy
        super().__init__(path, f"{reason}; {remedy}")

    def __reduce__(self):  # survives worker processes with its parts
        return (type(self), (self.path, self.reason, self.remedy))


def _made_with(previous: dict) -> Optional[dict]:
    return previous.get("generator_settings")


def claim_cohort_folder(
    out_dir: Path,
    settings: dict,
    overwrite: bool = False,
    made_with: Callable[[dict], Optional[dict]] = _made_with,
) -> dict:
    """Refuse a folder holding another generation, else record ``settings``; the earlier
    ``dataset.json`` ({} when none).

    Args:
        out_dir: the cohort folder (imagesTr and labelsTr are created).
        settings: ``{"generator": name, "seed": int, "params": {...}}``.
        overwrite: accept any folder (every case is then written again).
        made_with: reads the settings a ``dataset.json`` records (an earlier release's
            layout too).

    Returns:
        The earlier ``dataset.json`` content ({} when none). `CohortFolderTaken` (a
        `PWMLDataError`: exit 2) naming the folder for another generation, or for cases no
        ``dataset.json`` describes.
    """
    path = out_dir / "dataset.json"
    previous = read_json(path) if path.exists() else {}
    made = made_with(previous) if previous else None
    if previous and made != settings and not overwrite:
        if made and made.get("generator") == settings["generator"]:
            what = f"made with other settings (seed {made.get('seed')})"
        else:
            what = f"not made by this generator ({previous.get('name', 'unnamed')})"
        raise CohortFolderTaken(out_dir, f"holds a cohort {what}")
    stray = sorted((out_dir / "imagesTr").glob("PWML_*.nii.gz")) if not previous else []
    if stray and not overwrite:  # cases of an unknown run (no dataset.json says how made)
        raise CohortFolderTaken(
            out_dir, f"holds cases ({stray[0].name}, ...) that no dataset.json describes"
        )
    (out_dir / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out_dir / "labelsTr").mkdir(parents=True, exist_ok=True)
    if made != settings:
        atomic_write_json(path, {"generator_settings": settings})
    return previous
