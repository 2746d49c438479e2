"""RS R-CNN's detectron2 components; importing this module registers them."""

from ..tool_setup import known_warnings_hidden

# the first import of detectron2 on most paths into the package: its import-time notices
# (it and fvcore script functions, which torch flags as deprecated) are not the user's to see
with known_warnings_hidden():
    import detectron2.modeling  # noqa: F401

from .dcrf import DCRF_REGISTRY, DenseCRFPostprocessor, build_dcrf_postprocessor
from .hrpn import HRPN, HRPNHead
from .lrs_net import LRSNetHead
from .meta_arch import RSRCNN
from .roi_heads import ExpandedROIHeads

__all__ = [
    "DCRF_REGISTRY",
    "DenseCRFPostprocessor",
    "build_dcrf_postprocessor",
    "HRPN",
    "HRPNHead",
    "LRSNetHead",
    "RSRCNN",
    "ExpandedROIHeads",
]
