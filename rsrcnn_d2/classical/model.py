"""The classical detector behind the network's inference interface.

`ClassicalLesionModel` is a callable with detectron2's inference interface
(``model(list_of_input_dicts) -> list of outputs``) returning what the RS
R-CNN returns per image, ``lesion_mask`` (bool tensor H×W) and ``lesion_prob``
(float tensor H×W) at the input's "height"/"width". So the same code paths run
it as the networks: `LesionPredictor` (rsrcnn-predict, NIfTI with the input's
affine), `PWMLEvaluator` (both protocols, lesion-wise) and the result tables.

`ClassicalPredictor` is the `LesionPredictor` for it: no resizing (the
detector's parameters are in the data's own pixels) and, in "3d" mode, each
slice sees its neighbours.
"""

from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch

from ..inference.predictor import LesionPredictor, SlicePrediction
from .detector import detect_slice
from .params import ClassicalParams

__all__ = ["ClassicalLesionModel", "ClassicalPredictor", "input_slice"]


def input_slice(inp: dict) -> np.ndarray:
    """The grey slice of a model input: channel 0 of ``image`` (C, H, W) or an (H, W) image."""
    image = inp["image"]
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image, np.float32)
    return image[0] if image.ndim == 3 else image


def _at_size(array: np.ndarray, height: int, width: int, mode: str) -> torch.Tensor:
    """``array`` as a tensor of (height, width): shared memory when already that size."""
    if array.shape == (height, width):
        return torch.from_numpy(np.ascontiguousarray(array))
    tensor = torch.from_numpy(np.ascontiguousarray(array, np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    resized = torch.nn.functional.interpolate(tensor, size=(height, width), mode=mode, **kwargs)
    return resized[0, 0] > 0.5 if array.dtype == bool else resized[0, 0].clamp_(0.0, 1.0)


class ClassicalLesionModel:
    """Our classical baseline (row A) as a detectron2-style inference callable.

    Inputs: detectron2 dicts with ``image`` (C, H, W) tensor (channel 0 is read)
    and optional ``height``/``width`` (the output size; the image is resized
    back when a mapper resized it) and ``neighbours`` (the adjacent slices,
    arrays or None, at the image's size; used in "3d" mode).
    """

    def __init__(self, params: Optional[ClassicalParams] = None):
        self.params = params or ClassicalParams()

    def __call__(self, batched_inputs: Sequence[dict]) -> list[dict]:
        outputs = []
        for inp in batched_inputs:
            image = input_slice(inp)
            neighbours = [
                None if n is None else np.asarray(n, np.float32) for n in inp.get("neighbours", ())
            ]
            det = detect_slice(image, self.params, neighbours)
            height = int(inp.get("height", image.shape[0]))
            width = int(inp.get("width", image.shape[1]))
            mask = _at_size(det.mask, height, width, "nearest")
            prob = _at_size(det.prob, height, width, "bilinear")
            outputs.append({"lesion_mask": mask, "lesion_prob": prob})
        return outputs


class ClassicalPredictor(LesionPredictor):
    """`LesionPredictor` over `ClassicalLesionModel`, slices at their own size.

    In "3d" mode the slices given together to `predict_slices` are taken as
    consecutive through-plane neighbours (as `predict_volume` gives a volume's
    slices in order), and the predictor asks for a whole volume per call. A
    single slice (a PNG) has no neighbours: it is detected as in "2d".
    """

    def __init__(self, params: ClassicalParams, batch_size: int = 4):
        whole_volume = params.mode == "3d"
        super().__init__(
            ClassicalLesionModel(params),
            augmentations=(),
            batch_size=(1 << 30) if whole_volume else batch_size,
        )

    @property
    def params(self) -> ClassicalParams:
        return self.model.params

    def _model_input(self, image: np.ndarray) -> dict:
        # the detector reads one grey channel at the slice's own size: no resizing, no copies
        return {
            "image": np.asarray(image, np.float32),
            "height": image.shape[0],
            "width": image.shape[1],
        }

    def predict_slices(self, images: Sequence[np.ndarray]) -> list[SlicePrediction]:
        if self.params.mode != "3d" or len(images) < 2:
            return super().predict_slices(images)
        out = []
        for k, image in enumerate(images):
            image = np.asarray(image, np.float32)
            if image.ndim != 2:
                raise ValueError(f"expected a 2-D slice, got shape {image.shape}")
            near = [images[j] for j in (k - 1, k + 1) if 0 <= j < len(images)]
            neighbours = [np.asarray(n, np.float32) for n in near if n.shape == image.shape]
            result = self.model([{"image": image, "neighbours": neighbours}])[0]
            out.append(
                SlicePrediction(result["lesion_mask"].numpy(), result["lesion_prob"].numpy())
            )
        return out
