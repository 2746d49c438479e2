"""Former home of the prediction run's inputs and writers, kept so that older imports work.

New code imports from `rsrcnn_d2.inference.inputs` (finding and naming inputs),
`rsrcnn_d2.inference.writers` (writing outputs) and `rsrcnn_d2.data.nifti`
(`case_name`, `read_volume`).
"""
from ..data.fileio import atomic_write, check_inside_output
from ..data.nifti import NIFTI_ENDINGS, Volume, case_name, read_volume
from .inputs import (OutputPaths, PredictionInput, check_input_geometry, check_output_location,
                     find_inputs, input_slice_geometry, output_paths)
from .writers import (save_mask_png, save_overlay, save_prob_npy, save_volume_like,
                      to_input_orientation)

__all__ = ["NIFTI_ENDINGS", "PredictionInput", "OutputPaths", "find_inputs", "case_name",
           "output_paths", "check_output_location", "check_inside_output",
           "input_slice_geometry", "check_input_geometry", "Volume", "read_volume",
           "to_input_orientation", "save_volume_like", "save_mask_png", "save_prob_npy",
           "save_overlay", "atomic_write"]
