"""rsrcnn_d2: Refined Segmentation R-CNN (Liu et al., MICCAI 2019) for Detectron2.

``import rsrcnn_d2`` is light: it loads neither torch nor detectron2, so that the
programs (`rsrcnn_d2.cli`, the ``rsrcnn-*`` commands) answer ``--help`` and argument
errors at once. The components are registered in detectron2's registries, and the
prepared ``$DETECTRON2_DATASETS/pwml`` as pwml_* in its catalog, on first use:

- the first access to a name of this package (``rsrcnn_d2.get_rsrcnn_cfg``,
  ``add_rsrcnn_config``, ``DCRF_REGISTRY``, ``rsrcnn_d2.modeling``, ``rsrcnn_d2.data``, ...);
- a config made by `rsrcnn_d2.config.get_rsrcnn_cfg` or `add_rsrcnn_config`;
- an import of `rsrcnn_d2.modeling` (the components) or `rsrcnn_d2.data` (the datasets).

A config then selects the components by name (see README.md).
"""

import importlib

__version__ = "0.1.0"
__all__ = ["add_rsrcnn_config", "get_rsrcnn_cfg", "DCRF_REGISTRY", "__version__"]

_PUBLIC = ("add_rsrcnn_config", "get_rsrcnn_cfg", "DCRF_REGISTRY")
# the library's units, reachable as attributes (``rsrcnn_d2.data``); those that need
# detectron2 register the components first, as ``import rsrcnn_d2`` once did. The programs
# (rsrcnn_d2.cli) are imported by name, never through the package.
_UNITS = (
    "box_ops",
    "checkpoint",
    "classical",
    "config",
    "data",
    "engine",
    "evaluation",
    "experiments",
    "inference",
    "modeling",
    "solver",
    "synth",
    "tuning",
    "visualization",
)
_LIGHT_UNITS = ("errors", "model_zoo", "parent_death", "tool_setup")  # no torch, no detectron2


def _register():
    """The components and datasets registered (once); the config module."""
    config = importlib.import_module(".config", __name__)
    config.register_components()  # detectron2's import-time warnings hidden
    return config


def __getattr__(name: str):
    """PEP 562: the public names and the units load on first access, after registration."""
    if name in _PUBLIC:
        config = _register()
        modeling = importlib.import_module(".modeling", __name__)
        globals().update(
            add_rsrcnn_config=config.add_rsrcnn_config,
            get_rsrcnn_cfg=config.get_rsrcnn_cfg,
            DCRF_REGISTRY=modeling.DCRF_REGISTRY,
        )
        return globals()[name]
    if name in _UNITS:
        _register()
        return importlib.import_module(f".{name}", __name__)
    if name in _LIGHT_UNITS:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__, *_UNITS, *_LIGHT_UNITS})
