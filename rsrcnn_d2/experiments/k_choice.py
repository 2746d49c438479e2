"""Row C's expansion k chosen on the validation subjects, as a user would choose it.

The k sweep calibrates row C at each k on the validation subjects (pwml_val); per seed,
the k whose calibrated validation figure is highest is the one a user without test data
would pick. Its strict Dice on the test subjects, paired with the paper's fixed k = 1.3
(row C itself), says what choosing k on validation is worth.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from ..data.fileio import read_json
from .intervals import LEVEL, csv_dice, paired_interval, slice_csv
from .results import mean_sd

__all__ = ["k_runs", "validation_value", "k_choice_table"]


def k_runs(runs, row: str, row_k: float) -> dict[str, float]:
    """{run name: k} of ``row`` at every k of the plan (``row`` itself is ``row_k``; the
    sweep's others are ``<row>_k<k>``), in the order of k; final-weights runs excluded."""
    found = {}
    for name in runs:
        if name == row:
            found[name] = row_k
        elif name.startswith(f"{row}_k") and not name.endswith("_final"):
            try:
                found[name] = float(name[len(row) + 2 :])
            except ValueError:
                continue
    return dict(sorted(found.items(), key=lambda item: item[1]))


def validation_value(out: Path, name: str, seed: int, folder: str) -> Optional[float]:
    """The calibrated validation figure of one run and seed (its calibration's best value;
    the config's own point when nothing beat an empty prediction); None: not calibrated."""
    trials = out / "runs" / name / f"seed{seed}" / folder / "operating_point.json"
    if not trials.is_file():
        return None
    record = read_json(trials)
    best = record.get("best") or record.get("start") or {}
    value = best.get("value")
    return None if value is None else float(value)


def k_choice_table(
    out: Path,
    runs,
    seeds: Sequence[int],
    row: str,
    row_k: float,
    folder: str,
    objective_name: str = "strict Dice",
    n_resamples: int = 10000,
) -> tuple[str, dict]:
    """(Markdown, numbers): per seed, each k's calibrated validation figure, the k it picks
    and the test strict Dice of that pick beside ``row`` (k = ``row_k``); then the pick minus
    ``row`` with its subject-bootstrap interval (seeds pooled). ("", {}) without a sweep."""
    ks = k_runs(runs, row, row_k)
    if len(ks) < 2 or row not in ks:
        return "", {}
    picks, per_seed_lines, differences = {}, [], []
    for seed in seeds:
        values = {name: validation_value(out, name, seed, folder) for name in ks}
        tested = all(slice_csv(out, name, seed, folder).is_file() for name in ks)
        if not tested or any(v is None for v in values.values()):
            continue
        pick = max(ks, key=lambda name: (values[name], name == row))  # a tie keeps row_k
        picks[seed] = pick
        chosen, fixed = (csv_dice(slice_csv(out, n, seed, folder)) for n in (pick, row))
        differences.append(chosen - fixed)
        cells = " | ".join(f"{values[name]:.3f}" for name in ks)
        per_seed_lines.append(f"| {seed} | {cells} | {ks[pick]!r} | {chosen:.3f} | {fixed:.3f} |")
    if not picks:
        return "", {}
    interval = paired_interval(
        [slice_csv(out, picks[s], s, folder) for s in picks],
        [slice_csv(out, row, s, folder) for s in picks],
        n_resamples,
        f"row {row} at the chosen k and at k = {row_k:g}",
    )
    mean, sd, n = mean_sd(differences)
    spread = f"{mean:+.3f}" if n < 2 else f"{mean:+.3f} ± {sd:.3f}"
    est, low, high = interval
    header = " | ".join(f"val., k = {k!r}" for k in ks.values())
    text = "\n".join(
        [
            f"Row {row}'s k chosen on the validation subjects (per seed, the k whose calibrated "
            f"validation {objective_name} is highest; a tie keeps k = {row_k:g}), and its "
            "calibrated test strict Dice:",
            "",
            f"| seed | {header} | chosen k | test, chosen k | test, k = {row_k:g} |",
            "|---|" + "---|" * (len(ks) + 3),
            *per_seed_lines,
            "",
            f"k chosen on validation minus k = {row_k:g}: {est:+.3f} [{low:+.3f}, {high:+.3f}] "
            f"({100 * LEVEL:.0f} % bootstrap interval over the test subjects, "
            f"{len(picks)} seed{'s' if len(picks) > 1 else ''} pooled); seeds {spread}.",
        ]
    )
    numbers = {
        "picks": {str(s): ks[p] for s, p in picks.items()},
        "interval": interval,
        "per_seed": differences,
    }
    return text, numbers
