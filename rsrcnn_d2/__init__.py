"""rsrcnn_d2: Refined Segmentation R-CNN (Liu et al., MICCAI 2019) for Detectron2.

``import rsrcnn_d2`` registers every component in detectron2's registries; a
config then selects them by name (see README.md).
"""

import warnings

# detectron2 scripts a few functions when it is imported, which torch >= 2.10 flags
# as deprecated; the warning is about detectron2, not about the user. Hidden while
# we import detectron2 only: the user's warning settings are left as they were.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
    )
    from .config import add_rsrcnn_config, get_rsrcnn_cfg
    from . import data, modeling  # noqa: F401  (registration of components and datasets)
    from .modeling import DCRF_REGISTRY

__version__ = "0.1.0"
__all__ = ["add_rsrcnn_config", "get_rsrcnn_cfg", "DCRF_REGISTRY", "__version__"]
