"""RS R-CNN's detectron2 components; importing this module registers them."""

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
