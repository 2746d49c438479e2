"""One pre-trained starting point for every row: the paper's protocol without COCO.

The paper fine-tunes every row of Table 1 from one Mask R-CNN pre-trained on COCO. Where
those weights cannot be had (this project's CPU machines have no network), `pretrain` trains
one Mask R-CNN (row B's config by default) on a *source* cohort: anatomy-based subjects from
generator seeds no evaluation cohort uses (they start at `SOURCE_SEED`), with lesion sizes,
contrasts and counts spread wider than the default cohort's (`SOURCE_PARAMS`), so that the
network learns "small bright blob in dark white matter" rather than one cohort's lesions.

The result, ``OUT/pretrained.pth``, holds the model's final weights only (no optimizer, no
iteration: a row starts its own schedule from it), the input form it was trained with and
the source cohort's generator settings. Every row loads it through ``MODEL.WEIGHTS``: H-RPN's
two-logit objectness is written from the one logit per anchor (same objectness,
`HRPNHead.adapt_checkpoint`), LRS-Net's convs take the first mask convs of the same shape,
and any tensor of another shape is re-initialised and listed in the fit table, as with a
COCO checkpoint. Resumable: the cohort and conversion are
reused, the training resumes from its last checkpoint, a finished one is not redone.
"""

from pathlib import Path
from typing import Optional, Union

from .. import model_zoo
from ..data.fileio import atomic_write, read_json
from .cohort import anatomy_cohort
from .runner import train_and_record

__all__ = [
    "SOURCE_SEED",
    "SOURCE_PARAMS",
    "PRETRAINED_FILE",
    "pretrain",
    "pretrained_source",
]

# generator seeds of the source cohort start here; evaluation cohorts use small seeds (0-999)
SOURCE_SEED = 1000
# wider than AnatomyParams' defaults (3-12 lesions of 1.1-2.5 mm, contrast 8.5 +- 3.2), every
# subject with lesions (the converter's lesion-slice mode refuses lesion-free ones)
SOURCE_PARAMS = dict(
    lesion_free_fraction=0.0,
    lesions_per_subject=(1, 20),
    lesion_in_plane_mm=(0.8, 3.5),
    lesion_through_plane_mm=(0.7, 3.0),
    lesion_contrast=(8.5, 4.5),
)
PRETRAINED_FILE = "pretrained.pth"
PREFIX = "source"  # the source cohort's datasets: source_train, source_val


def pretrain(
    out: Union[str, Path],
    config: Optional[Union[str, Path]] = None,
    subjects: int = 48,
    seed: int = SOURCE_SEED,
    iters: int = 1000,
    workers: int = 2,
    retrain: bool = False,
    params: Optional[dict] = None,
) -> Path:
    """Train ``config`` (default: row B's CPU-sized twin) on a source cohort of ``subjects``
    made with generator ``seed`` into ``out``; the pre-trained checkpoint's path.

    Args:
        out: folder for the source cohort (raw/, pwml/), the training run (run/) and
            ``pretrained.pth``.
        config: the architecture to pre-train; rows of another head load what fits.
        subjects: source subjects (70 % train, 15 % validation, 15 % test).
        seed: the generator's seed, at least `SOURCE_SEED` (disjoint from evaluation cohorts).
        iters: training iterations.
        workers: processes simulating the cohort.
        retrain: train again a run folder trained with other options (set aside first).
        params: `AnatomyParams` fields that replace `SOURCE_PARAMS`' (e.g. a coarser grid).

    Returns:
        ``out/pretrained.pth``.
    """
    import torch

    from ..checkpoint import input_form
    from ..config import get_rsrcnn_cfg

    if seed < SOURCE_SEED:
        raise ValueError(
            f"source seed {seed}: use {SOURCE_SEED} or more, seeds no evaluation cohort uses"
        )
    out = Path(out).absolute()
    config = str(config or model_zoo.row_config("B"))
    raw, source = out / "raw", {**SOURCE_PARAMS, **(params or {})}
    root, _ = anatomy_cohort(
        raw, out / "pwml", subjects, seed, source, prefix=PREFIX, workers=workers
    )
    opts = [
        "SOLVER.MAX_ITER", iters, "SOLVER.CHECKPOINT_PERIOD", max(1, iters // 4),
        "SEED", seed, "DATASETS.TRAIN", f"('{PREFIX}_train',)",
        "DATASETS.VAL", f"('{PREFIX}_val',)", "DATASETS.TEST", f"('{PREFIX}_val',)",
    ]  # fmt: skip
    train_and_record(config, out / "run", opts, [root], retrain=retrain, what="pre-training")
    # the final weights, as a COCO checkpoint's: the source's validation loss is lowest before
    # the heads propose lesions at all (measured: iteration 99 of 2000), a poor start
    weights = out / "run" / "model_final.pth"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    cfg = get_rsrcnn_cfg(config, [str(o) for o in opts])
    record = {
        "model": state["model"],
        "input_form": input_form(cfg),
        "pretrain_source": {
            "config": config,
            "weights": str(weights),
            "subjects": int(subjects),
            "generator_settings": read_json(raw / "dataset.json")["generator_settings"],
        },
    }
    path = out / PRETRAINED_FILE
    atomic_write(path, lambda tmp: torch.save(record, tmp))
    return path


def pretrained_source(path: Union[str, Path]) -> Optional[dict]:
    """The source record a `pretrain` checkpoint holds (None for another checkpoint): what a
    sweep checks before fine-tuning from it."""
    import pickle

    import torch

    from ..errors import WeightsError

    if not Path(path).is_file():
        raise WeightsError(path, "weights file does not exist")
    if Path(path).suffix not in (".pth", ".pt"):
        return None  # a model-zoo .pkl (COCO's): no source record to check
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise WeightsError(path, f"cannot read the checkpoint ({type(e).__name__})") from None
    return data.get("pretrain_source") if isinstance(data, dict) else None
