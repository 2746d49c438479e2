"""Prediction with a trained RS R-CNN: slices, NIfTI volumes and folders of either.

`LesionPredictor` segments 2-D slices; `predict_volume` a canonical volume;
`predict_inputs` whole inputs found by `find_inputs`, writing masks with the
input's affine and header (file names: `rsrcnn_d2.inference.inputs`). The
command line is `rsrcnn-predict` (`rsrcnn_d2.cli.predict`, `tools/predict.py`).
"""

from ..data.nifti import case_name
from .inputs import PredictionInput, find_inputs, output_paths
from .predictor import (
    LesionPredictor,
    PredictionReport,
    SlicePrediction,
    predict_inputs,
    predict_volume,
)

__all__ = [
    "LesionPredictor",
    "SlicePrediction",
    "predict_volume",
    "predict_inputs",
    "PredictionReport",
    "PredictionInput",
    "find_inputs",
    "case_name",
    "output_paths",
]
