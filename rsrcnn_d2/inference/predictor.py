"""Segmenting slices, volumes and whole input folders with a trained RS R-CNN.

`LesionPredictor` is detectron2's DefaultPredictor for grey MRI slices: it
resizes as at test time (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST), feeds the raw
intensities as three channels (the model z-scores each image itself) and asks
for outputs at the slice's own size. `predict_volume` runs it over every slice
of a canonical volume, cut as the converter cuts training slices (with
INPUT.NEIGHBOR_SLICES each slice goes with its neighbours z-1, z+1 along the
same axis, an edge slice repeating itself, as the converter writes them), and
`predict_inputs` runs whole folders, writing each result as soon as it exists
and carrying on past a bad file (see `rsrcnn_d2.inference.inputs` for file names).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..data.errors import PWMLDataError
from ..data.fileio import atomic_write_json, check_inside_output, read_json, read_slice
from ..data.mapper import slice_model_input
from ..data.nifti import axis_index, axis_name, put_slice, read_volume, volume_slice
from . import writers
from .calibration import InferenceSettings
from .inputs import (
    PredictionInput,
    check_input_geometry,
    check_output_collisions,
    output_paths,
)

__all__ = [
    "SlicePrediction",
    "LesionPredictor",
    "predict_volume",
    "PredictionReport",
    "predict_inputs",
]

Model = Callable[[list[dict]], list[dict]]

logger = logging.getLogger("rsrcnn_d2")


@dataclass
class SlicePrediction:
    """``mask``: bool (H, W); ``prob``: float32 (H, W) in [0, 1]; H, W the slice's own size."""

    mask: np.ndarray
    prob: np.ndarray


class LesionPredictor:
    """Grey slices in, lesion masks out, at the slices' own size.

    ``model`` is any callable with detectron2's inference interface returning
    ``lesion_mask`` and ``lesion_prob`` per image (an eval-mode RSRCNN, or a
    stand-in in tests); ``augmentations`` are the test-time resizing.
    Constant slices (empty field of view) are not shown to the model: there is
    no contrast in which a lesion could be, and they are all-zero output.
    ``neighbor_slices`` (INPUT.NEIGHBOR_SLICES): the model reads slices z-1, z,
    z+1; `predict_slices` takes them from its ``neighbors``, and a 2-D input
    given without them is fed as three copies of itself (logged once).
    """

    def __init__(
        self,
        model: Model,
        augmentations: Sequence = (),
        batch_size: int = 4,
        head_crop_margin: Optional[int] = None,
        neighbor_slices: bool = False,
    ):
        from detectron2.data import transforms as T

        self.model = model
        self.augmentations = T.AugmentationList(list(augmentations))
        self.batch_size = max(1, int(batch_size))
        self.head_crop_margin = head_crop_margin  # None: no head crop (INPUT.CROP_TO_HEAD off)
        self.neighbor_slices = bool(neighbor_slices)
        self._said_no_neighbors = False

    @classmethod
    def from_config(
        cls,
        cfg,
        batch_size: int = 4,
        allow_partial_weights: bool = False,
        weights: Optional[Sequence[str]] = None,
        tta: Optional[bool] = None,
    ) -> "LesionPredictor":
        """Build cfg's model for each checkpoint, load it, switch to eval mode.

        ``weights``: checkpoints of cfg's model to ensemble (default: MODEL.WEIGHTS,
        if set); ``tta``: horizontal-flip test-time augmentation (None: the config's
        TEST.FLIP_TTA, the inference its operating point was calibrated with). Several
        checkpoints or ``tta`` make a `LesionEnsemble` (see its docstring for how
        members, CRF and threshold combine). Weights that leave any of the model's
        parameters uninitialised (another row's, another architecture's) raise
        `WeightsError` unless ``allow_partial_weights``: they would predict
        near-empty masks; so do weights trained for another input form (2.5-D, normalisation,
        heads: `rsrcnn_d2.checkpoint.INPUT_FORM_KEYS`).
        """
        from detectron2.modeling import build_model

        from ..checkpoint import input_form, load_model_weights
        from ..data.augmentation import build_pwml_augmentations
        from ..data.mapper import head_crop_margin
        from .ensemble import LesionEnsemble

        if weights is None:
            weights = [cfg.MODEL.WEIGHTS] if cfg.MODEL.WEIGHTS else []
        if tta is None:
            tta = bool(cfg.TEST.FLIP_TTA)
        models = []
        for path in weights or [None]:
            model = build_model(cfg)
            if path:
                load_model_weights(
                    model, path, allow_partial=allow_partial_weights, input_form=input_form(cfg)
                )
            models.append(model.eval())
        model = (
            models[0]
            if len(models) == 1 and not tta
            else LesionEnsemble.from_config(cfg, models, flip=tta).eval()
        )
        return cls(
            model,
            build_pwml_augmentations(cfg, is_train=False),
            batch_size,
            head_crop_margin(cfg),
            cfg.INPUT.NEIGHBOR_SLICES,
        )

    @property
    def inference(self) -> InferenceSettings:
        """What the model runs: flip TTA, checkpoints, the votes a lesion needs."""
        return InferenceSettings.of_model(self.model)

    def _model_input(self, image: np.ndarray, neighbors: Optional[np.ndarray] = None) -> dict:
        # spacing None: TrainingScaleResize uses what check_input_geometry gave it
        fields, _ = slice_model_input(
            image, self.augmentations, self.head_crop_margin, neighbors=neighbors
        )
        return {**fields, "height": image.shape[0], "width": image.shape[1]}

    def _neighbors_of(self, images: Sequence[np.ndarray], neighbors) -> list[np.ndarray]:
        """Each image's (2, H, W) neighbours: those given, else (2-D inputs) itself twice."""
        if neighbors is not None:
            if len(neighbors) != len(images):
                raise ValueError(f"{len(neighbors)} neighbour stacks for {len(images)} slices")
            return [np.asarray(n, np.float32) for n in neighbors]
        if not self._said_no_neighbors:
            logger.info(
                "INPUT.NEIGHBOR_SLICES: 2-D inputs have no neighbouring slices; each is fed "
                "as three copies of itself"
            )
            self._said_no_neighbors = True
        return [np.stack([image, image]) for image in images]

    def predict_slices(
        self, images: Sequence[np.ndarray], neighbors: Optional[Sequence[np.ndarray]] = None
    ) -> list[SlicePrediction]:
        """One `SlicePrediction` per 2-D image, in order; the model sees ``batch_size`` at a
        time. ``neighbors``: with ``neighbor_slices``, each image's slices z-1, z+1 as
        (2, H, W) (None: a 2-D input, repeated); ignored without it."""
        out: list[Optional[SlicePrediction]] = [None] * len(images)
        todo = []
        for i, image in enumerate(images):
            if image.ndim != 2:
                raise ValueError(f"expected a 2-D slice, got shape {image.shape}")
            if image.size == 0 or image.min() == image.max():
                out[i] = SlicePrediction(
                    np.zeros(image.shape, bool), np.zeros(image.shape, np.float32)
                )
            else:
                todo.append(i)
        near = self._neighbors_of(images, neighbors) if self.neighbor_slices and todo else None
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            with torch.no_grad():
                results = self.model(
                    [
                        self._model_input(images[i])
                        if near is None
                        else self._model_input(images[i], near[i])
                        for i in chunk
                    ]
                )
            for i, result in zip(chunk, results):
                mask = result["lesion_mask"].to("cpu").numpy().astype(bool)
                prob = result["lesion_prob"].to("cpu", torch.float32).numpy().clip(0.0, 1.0)
                if mask.shape != images[i].shape or prob.shape != images[i].shape:
                    raise RuntimeError(
                        f"model returned a {mask.shape} mask for a "
                        f"{images[i].shape} slice; it must honour height/width"
                    )
                out[i] = SlicePrediction(mask, prob)
        return out

    def __call__(self, image: np.ndarray) -> SlicePrediction:
        return self.predict_slices([image])[0]


def predict_volume(
    predictor: LesionPredictor,
    volume: np.ndarray,
    axis: Union[str, int] = "axial",
    progress: bool = False,
    desc: str = "slices",
) -> tuple[np.ndarray, np.ndarray]:
    """Mask (uint8 0/1) and probability (float32) volumes for a canonical (RAS+) ``volume``.

    Slices are cut with `volume_slice` and written back with `put_slice`, the
    converter's own pair, so a model trained on converted slices sees the same
    views here; with the predictor's ``neighbor_slices`` each goes with slices
    k-1 and k+1 of ``volume`` along ``axis`` (clamped at the edges, as converted).
    """
    from tqdm import tqdm

    axis = axis_index(axis)
    mask = np.zeros(volume.shape, np.uint8)
    prob = np.zeros(volume.shape, np.float32)
    count = volume.shape[axis]
    with_neighbors = getattr(predictor, "neighbor_slices", False)
    with tqdm(total=count, desc=desc, unit="slice", leave=False, disable=not progress) as bar:
        for start in range(0, count, predictor.batch_size):
            indices = range(start, min(count, start + predictor.batch_size))
            slices = [volume_slice(volume, axis, k) for k in indices]
            if with_neighbors:
                near = [
                    np.stack(
                        [
                            volume_slice(volume, axis, max(k - 1, 0)),
                            volume_slice(volume, axis, min(k + 1, count - 1)),
                        ]
                    )
                    for k in indices
                ]
                preds = predictor.predict_slices(slices, near)
            else:
                preds = predictor.predict_slices(slices)
            for k, pred in zip(indices, preds):
                put_slice(mask, axis, k, pred.mask.astype(np.uint8))
                put_slice(prob, axis, k, pred.prob)
            bar.update(len(indices))
    return mask, prob


@dataclass
class PredictionReport:
    """What a run wrote, per input, and which inputs failed with which message."""

    written: dict[Path, list[Path]] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


class _Writer:
    """Writes outputs, refusing any target that is one of the run's input files or that a
    symlinked folder would take outside the output folder."""

    def __init__(self, inputs: Sequence[PredictionInput], output: Union[str, Path]):
        self.protected = {item.path.resolve() for item in inputs}
        self.output = output
        self.written: list[Path] = []

    def __call__(self, save: Callable, path: Path, *args) -> None:
        check_inside_output(path, self.output)
        if path.resolve() in self.protected:
            raise PWMLDataError(path, "refusing to overwrite an input file")
        save(path, *args)
        self.written.append(path)


def _run_volume(
    predictor,
    item,
    paths,
    axis: int,
    save_prob: bool,
    overlays: bool,
    progress: bool,
    write: _Writer,
) -> None:
    volume = read_volume(item.path)
    mask, prob = predict_volume(predictor, volume.canonical, axis, progress, desc=item.name)
    affine = volume.source.affine
    write(
        lambda p, a: writers.save_volume_like(a, volume.source, p, np.uint8),
        paths.mask,
        writers.to_input_orientation(mask, affine),
    )
    if save_prob:
        write(
            lambda p, a: writers.save_volume_like(a, volume.source, p, np.float32),
            paths.prob,
            writers.to_input_orientation(prob, affine),
        )
    if overlays:
        name = axis_name(axis)
        for k in range(mask.shape[axis]):
            lesion = volume_slice(mask, axis, k).astype(bool)
            if lesion.any():
                image = volume_slice(volume.canonical, axis, k).astype(np.float32)
                write(
                    writers.save_overlay,
                    paths.overlays / f"{name}_{k:03d}.png",
                    image,
                    lesion,
                    f"{item.name} {name} {k}",
                )


def _run_slice(predictor, item, paths, save_prob: bool, overlays: bool, write: _Writer) -> None:
    image = read_slice(item.path)
    pred = predictor(image)
    write(writers.save_mask_png, paths.mask, pred.mask)
    if save_prob:
        write(writers.save_prob_npy, paths.prob, pred.prob)
    if overlays and pred.mask.any():
        write(writers.save_overlay, paths.overlays, image, pred.mask, item.name)


def _marker(mask: Path) -> Path:
    """The file that says every output of the input whose mask is ``mask`` was written."""
    return mask.with_name(f".{mask.name}.done")


def _mark_complete(mask: Path, written: Sequence[Path], overlays: bool) -> None:
    """Written last, atomically, after all of an input's outputs: what --continue trusts."""
    atomic_write_json(_marker(mask), {"overlays": overlays, "files": [str(p) for p in written]})


def _complete(mask: Path, wanted: Sequence[Path], overlays: bool, protected) -> bool:
    """Whether an earlier run finished this input with these outputs: its marker (written after
    the last output; a run killed during overlays has none), and every file it lists."""
    marker = _marker(mask)
    if mask.resolve() in protected or not marker.is_file():
        return False
    try:
        record = read_json(marker)
    except PWMLDataError:
        return False
    if overlays and not record.get("overlays"):
        return False
    return all(Path(p).is_file() for p in record.get("files", [])) and all(
        p.is_file() for p in wanted
    )


def predict_inputs(
    predictor: LesionPredictor,
    inputs: Sequence[PredictionInput],
    output: Union[str, Path],
    axis: Union[str, int] = "axial",
    save_prob: bool = False,
    overlays: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = None,
    skip_existing: bool = False,
    mask_suffix: str = "",
) -> PredictionReport:
    """Predict every input, writing its outputs under ``output`` as soon as they exist.

    A failing input (unreadable, 4-D, ...) is recorded in the report and the
    run goes on, so one bad file among 70 costs one result, not 70.
    ``log`` receives one line per input saying where its outputs went.
    ``skip_existing`` (nnU-Net's ``--continue``): inputs that an earlier run finished
    with the same outputs (its completion marker ``.<mask>.done``, written after the
    last output, and every file it lists exist) are left alone and reported in
    ``skipped``; one killed halfway (overlays not all written) is predicted again.
    ``mask_suffix``: see `inputs.output_paths`.
    """
    from tqdm import tqdm

    axis = axis_index(axis)
    check_output_collisions(inputs, output, mask_suffix, save_prob, overlays)  # before writing
    report = PredictionReport()
    write = _Writer(inputs, output)
    say = log or (lambda line: None)
    unit = "volume" if inputs and inputs[0].kind == "nifti" else "slice"
    for item in tqdm(inputs, desc="predicting", unit=unit, disable=not progress):
        paths = output_paths(item, output, mask_suffix)
        wanted = [paths.mask, *([paths.prob] if save_prob else [])]
        if skip_existing and _complete(paths.mask, wanted, overlays, write.protected):
            report.skipped.append(item.path)
            say(f"{item.path}: outputs exist, skipped (--continue)")
            continue
        start = len(write.written)
        try:
            check_input_geometry(predictor, item, axis)  # warns once; spacing for the resize
            if item.kind == "nifti":
                _run_volume(predictor, item, paths, axis, save_prob, overlays, progress, write)
            else:
                _run_slice(predictor, item, paths, save_prob, overlays, write)
        except Exception as e:  # anything one input does must not lose the others
            message = (
                str(e) if isinstance(e, PWMLDataError) else f"{item.path}: {type(e).__name__}: {e}"
            )
            report.failures.append((item.path, message))
            say(f"FAILED {message}")
            continue
        report.written[item.path] = write.written[start:]
        _mark_complete(paths.mask, write.written[start:], overlays)
        say(
            f"{item.path} -> {paths.mask}"
            + (
                f" (+{len(write.written) - start - 1} more)"
                if len(write.written) - start > 1
                else ""
            )
        )
    return report
