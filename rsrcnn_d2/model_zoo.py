"""The project's config files by name, wherever the package is installed.

Like detectron2's ``model_zoo.get_config_file``: a config is named by its path
below the repository's ``configs/`` (``"PWML-Tiny/E_rsrcnn_R_18_FPN.yaml"``).
A built package carries those files as ``rsrcnn_d2/configs/`` (setup.py maps
``configs/`` there), so a non-editable install finds them; an editable install
or a checkout finds the repository's own ``configs/``. The directory layout is
kept, so the relative ``_BASE_`` references inside the files work from either.

``ROW_CONFIGS`` is the one table of Table 1's rows B-E (row A, the classical
baseline, has no config) for the two model sizes, plus our recommended row
"plus" (RS R-CNN+: row E with the 2.5-D input, INPUT.NEIGHBOR_SLICES, and flip
TTA), which is not in the paper.
"""

from pathlib import Path

from .errors import ConfigError

__all__ = [
    "ROW_CONFIGS",
    "FAMILIES",
    "configs_dir",
    "list_configs",
    "get_config_file",
    "row_config",
]

# Table 1's rows -> config name, per model size: "tiny" is the CPU-sized R-18 twin
# used by the demo, tests and experiment scripts; "r101" is the paper's backbone.
# "plus" (RS R-CNN+) = E + 2.5-D input + flip TTA: our recommendation, not Table 1's.
ROW_CONFIGS: dict[str, dict[str, str]] = {
    "tiny": {
        "B": "PWML-Tiny/B_mask_rcnn_R_18_FPN.yaml",
        "C": "PWML-Tiny/C_hrpn_expand_R_18_FPN.yaml",
        "D": "PWML-Tiny/D_hrpn_lrsnet_R_18_FPN.yaml",
        "E": "PWML-Tiny/E_rsrcnn_R_18_FPN.yaml",
        "plus": "PWML-Tiny/RSRCNN_plus_R_18_FPN.yaml",
    },
    "r101": {
        "B": "PWML/B_mask_rcnn_R_101_FPN.yaml",
        "C": "PWML/C_hrpn_expand_R_101_FPN.yaml",
        "D": "PWML/D_hrpn_lrsnet_R_101_FPN.yaml",
        "E": "PWML/E_rsrcnn_R_101_FPN.yaml",
        "plus": "PWML/RSRCNN_plus_R_101_FPN.yaml",
    },
}
FAMILIES = tuple(ROW_CONFIGS)

_PACKAGED = Path(__file__).resolve().parent / "configs"  # in a built package
_SOURCE = Path(__file__).resolve().parent.parent / "configs"  # checkout / editable install


def configs_dir() -> Path:
    """The directory the configs are read from: the packaged copy first, then the checkout's."""
    for where in (_PACKAGED, _SOURCE):
        if (where / "Base-RSRCNN.yaml").is_file():
            return where
    raise ConfigError(
        _PACKAGED,
        "rsrcnn_d2's configs are missing: neither the installed package "
        f"nor a source checkout ({_SOURCE}) has them; reinstall rsrcnn_d2",
    )


def list_configs() -> list[str]:
    """Every config name that `get_config_file` accepts, sorted."""
    root = configs_dir()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def get_config_file(name: str) -> str:
    """The path of config ``name`` (relative to ``configs/``, e.g.
    ``"PWML-Tiny/E_rsrcnn_R_18_FPN.yaml"``); an unknown name is a `ConfigError`
    that lists the known ones."""
    known = list_configs()
    wanted = Path(str(name)).as_posix()
    if wanted not in known:
        raise ConfigError(name, "no such config in rsrcnn_d2; known: " + ", ".join(known))
    return str(configs_dir() / wanted)


def row_config(row: str, family: str = "tiny") -> str:
    """The config file of Table 1's ``row`` (B-E, or "plus" for RS R-CNN+) in ``family``
    ("tiny" or "r101")."""
    if family not in ROW_CONFIGS:
        raise ConfigError(
            f"{family}/{row}", f"unknown model family {family!r}; known: " + ", ".join(FAMILIES)
        )
    rows = ROW_CONFIGS[family]
    if row not in rows:
        raise ConfigError(
            f"{family}/{row}", f"row {row!r} has no config; rows with one: " + ", ".join(rows)
        )
    return get_config_file(rows[row])
