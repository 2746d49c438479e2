"""Registering converted PWML datasets with detectron2's DatasetCatalog / MetadataCatalog.

Importing rsrcnn_d2.data (which a config made by `rsrcnn_d2.config.get_rsrcnn_cfg` does)
registers the prepared root ``$DETECTRON2_DATASETS/pwml``
(detectron2's convention; the variable defaults to "datasets") under the names
a config's DATASETS.TRAIN / TEST use::

    pwml_all, pwml_train, pwml_val, pwml_test, pwml_fold{0..4}_{train,val}

Registration is lazy, as detectron2's builtin COCO datasets are: it records
paths only, so importing never fails when the root is absent, and using a
name whose files are missing raises a PWMLDataError that says to run
tools/prepare_pwml.py. Other converted roots are registered by
`register_pwml_root` (all splits, under any prefix) or `register_pwml_split`;
the tools' ``--dataset-root [NAME=]DIR`` options go through
`register_dataset_roots`, which checks the roots first (they are named by hand).
"""

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco import load_pwml_coco
from .errors import PWMLDataError
from .fileio import read_json
from .splits import split_names

__all__ = [
    "register_pwml_split",
    "register_pwml_root",
    "register_all_pwml",
    "pwml_split_names",
    "default_pwml_root",
    "PWML_METADATA",
    "parse_dataset_root",
    "check_prepared_root",
    "register_dataset_roots",
    "DatasetRoot",
]

PWML_METADATA = {
    "thing_classes": ["lesion"],
    "evaluator_type": "pwml",
    "thing_dataset_id_to_contiguous_id": {1: 0},
}
DEFAULT_NUM_FOLDS = 5


def default_pwml_root() -> Path:
    """``$DETECTRON2_DATASETS/pwml`` (the variable defaults to "datasets", relative to the cwd)."""
    return Path(os.getenv("DETECTRON2_DATASETS", "datasets")) / "pwml"


def pwml_split_names(
    root: Union[str, Path, None] = None, num_folds: Optional[int] = None
) -> list[str]:
    """Split names of a converted root (from its splits.json), or the default set if absent."""
    if num_folds is None:
        splits = Path(root) / "splits.json" if root is not None else None
        num_folds = DEFAULT_NUM_FOLDS
        if splits is not None and splits.exists():
            folds = read_json(splits)
            folds = folds.get("folds") if isinstance(folds, dict) else None
            if not isinstance(folds, list):  # valid JSON, not our layout: an error naming the file
                raise PWMLDataError(splits, "has no list of 'folds'; re-run tools/prepare_pwml.py")
            num_folds = len(folds)
    return split_names(num_folds)


def _loader(json_file: Path, image_root: Path):
    def load():
        if not json_file.exists():
            raise PWMLDataError(
                json_file,
                "no prepared PWML split here; convert your data with "
                "tools/prepare_pwml.py (see datasets/README.md) or "
                "set $DETECTRON2_DATASETS",
            )
        return load_pwml_coco(json_file, image_root)

    return load


def register_pwml_split(
    name: str, root: Union[str, Path], split: str, overwrite: bool = True
) -> None:
    """Register split ``split`` (e.g. "train", "fold3_val") of converted ``root`` as ``name``.

    Lazy: only paths are recorded; the COCO file is read when the name is used.

    Args:
        name: the dataset name configs use.
        root: a converted dataset's folder.
        split: the split's name, as in ``annotations/instances_<split>.json``.
        overwrite: replace an earlier registration of ``name`` (detectron2 itself refuses
            to register a name twice); False raises ValueError instead.
    """
    root = Path(root).absolute()
    json_file = root / "annotations" / f"instances_{split}.json"
    if name in DatasetCatalog.list():
        if not overwrite:
            raise ValueError(f"dataset {name!r} is already registered")
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, _loader(json_file, root / "images"))
    MetadataCatalog.get(name).set(
        json_file=str(json_file),
        image_root=str(root / "images"),
        pwml_root=str(root),
        split=split,
        **PWML_METADATA,
    )


def register_pwml_root(
    root: Union[str, Path],
    prefix: str = "pwml",
    num_folds: Optional[int] = None,
    overwrite: bool = True,
) -> list[str]:
    """Register every split of ``root`` as ``<prefix>_<split>``; return the names.

    Args:
        root: a converted dataset's folder.
        prefix: what the names start with.
        num_folds: folds to register; None reads them from ``root``'s splits.json
            (5 without one).
        overwrite: as `register_pwml_split`.

    Returns:
        The registered names, in `splits.split_names` order.
    """
    names = []
    for split in pwml_split_names(root, num_folds):
        register_pwml_split(f"{prefix}_{split}", root, split, overwrite=overwrite)
        names.append(f"{prefix}_{split}")
    return names


def register_all_pwml(root: Union[str, Path, None] = None) -> list[str]:
    """The import-time registration of ``$DETECTRON2_DATASETS/pwml``; never raises for a
    missing root."""
    root = Path(root) if root is not None else default_pwml_root()
    try:
        num_folds = None if (root / "splits.json").exists() else DEFAULT_NUM_FOLDS
        return register_pwml_root(root, "pwml", num_folds=num_folds)
    except PWMLDataError:  # a damaged splits.json: register the default names, fail on use
        return register_pwml_root(root, "pwml", num_folds=DEFAULT_NUM_FOLDS)


_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_dataset_root(spec: str) -> tuple[str, Path]:
    """``"NAME=DIR"`` or ``"DIR"`` -> (prefix, folder); the default prefix is the folder's name.

    A left part that is not a plain name (``./a=b``) makes the whole spec a folder.
    """
    name, sep, folder = str(spec).partition("=")
    if sep and _PREFIX.fullmatch(name) and folder:
        return name, Path(folder)
    folder = Path(spec)
    prefix = folder.absolute().name
    if not _PREFIX.fullmatch(prefix):
        raise PWMLDataError(
            folder,
            f"folder name {prefix!r} is not usable as a dataset name "
            "prefix (letters, digits, '_', '.', '-'); give NAME=DIR",
        )
    return prefix, folder


@dataclass(frozen=True)
class DatasetRoot:
    """A prepared cohort (tools/prepare_pwml.py's output) and the prefix its splits are
    registered under (``<name>_train``, ``<name>_fold0_val``, ...): the one value a driver
    registers in its own process and hands to a training child as ``--dataset-root``."""

    name: str
    folder: Path

    @classmethod
    def parse(cls, spec: Union[str, "DatasetRoot"]) -> "DatasetRoot":
        """From ``"NAME=DIR"`` or ``"DIR"`` (`parse_dataset_root`); a DatasetRoot as it is."""
        if isinstance(spec, DatasetRoot):
            return spec
        name, folder = parse_dataset_root(spec)
        return cls(name, Path(folder).absolute())

    @property
    def spec(self) -> str:
        """``NAME=DIR``, as train_net's ``--dataset-root`` takes it."""
        return f"{self.name}={self.folder}"

    def register(self, replace: bool = False) -> list[str]:
        """`register_dataset_roots` of this root; the registered names. ``replace``: the names
        are this root's whatever they named before (a driver's own cohort, made in its output
        folder: an earlier driver call of the same process may have registered another)."""
        if replace:
            return register_pwml_root(check_prepared_root(self.folder), self.name)
        return register_dataset_roots([self])


def check_prepared_root(root: Union[str, Path]) -> Path:
    """The absolute ``root`` if it is a tools/prepare_pwml.py output, else PWMLDataError naming it.

    Checked at once, not on first use, because a mistyped --dataset-root would
    otherwise surface deep inside training.
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise PWMLDataError(
            root,
            "dataset root does not exist" if not root.exists() else "dataset root is not a folder",
        )
    missing = [
        f for f in ("splits.json", "annotations/instances_all.json") if not (root / f).is_file()
    ]
    if missing:
        raise PWMLDataError(
            root,
            f"not a prepared PWML dataset (no {missing[0]}); convert your "
            "data with tools/prepare_pwml.py (see datasets/README.md)",
        )
    read_json(root / "splits.json")  # a damaged one fails here, naming the file
    return root


def _owner(name: str) -> Optional[str]:
    """The root a registered name points to ("" for a dataset that is not PWML's), None if free."""
    if name not in DatasetCatalog.list():
        return None
    return MetadataCatalog.get(name).get("pwml_root", "")


def register_dataset_roots(specs: Sequence[Union[str, DatasetRoot]]) -> list[str]:
    """Register each ``--dataset-root`` spec (``NAME=DIR``, ``DIR`` or a `DatasetRoot`) under
    its prefix; return the names.

    Refused with a PWMLDataError naming the folder: a missing or unprepared
    root, two roots under one prefix, or a prefix whose names already belong
    to another dataset. The import-time ``pwml_*`` names of ``$DETECTRON2_DATASETS/pwml``
    are the environment's default and an explicit root takes them over (said once in the
    log when that default is a prepared cohort). Registering the same root under the same
    prefix again is harmless.
    """
    parsed, seen = [], {}
    for spec in specs or ():
        root_spec = DatasetRoot.parse(spec)
        prefix, folder = root_spec.name, root_spec.folder
        root = check_prepared_root(folder)
        if prefix in seen and seen[prefix] != root:
            raise PWMLDataError(
                folder,
                f"dataset prefix {prefix!r} is also given to {seen[prefix]}; "
                "name one of them with NAME=DIR",
            )
        seen[prefix] = root
        placeholder = str(default_pwml_root().absolute())
        for split in pwml_split_names(root):
            owner = _owner(f"{prefix}_{split}")
            if owner is None or owner == str(root):
                continue
            if owner == placeholder:  # the environment's default: the explicit root wins
                if (Path(owner) / "splits.json").exists() and split == "all":
                    logging.getLogger(__name__).info(
                        "%s_* now name %s, not $DETECTRON2_DATASETS's %s", prefix, root, owner
                    )
                continue
            where = f"the prepared dataset {owner}" if owner else "a dataset that is not PWML's"
            raise PWMLDataError(
                folder,
                f"dataset name {prefix}_{split} is already registered for "
                f"{where}; choose another prefix with NAME=DIR",
            )
        parsed.append((prefix, root))
    names = []
    for prefix, root in parsed:
        names += register_pwml_root(root, prefix)
    return names
