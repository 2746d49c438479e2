"""The package's floors: a unit (sub-package or top-level module) imports only from floors
strictly below its own, at module level or inside a function alike.

Read from the source (ast), since importing ``rsrcnn_d2`` loads every layer anyway. A strict
order also means that no package imports one that imports it back.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rsrcnn_d2"
TOP = "__init__"  # the package itself: ``import rsrcnn_d2``, ``from .. import x``

# low to high; units on one floor import nothing of each other
FLOORS = [
    {"errors"},  # the exit-code table every tool shares
    {"parent_death", "box_ops", "tool_setup", "writable", "config_file"},  # small, light helpers
    {"data"},  # conversion, registration, the mapper
    {"modeling", "synth"},  # the model's components; the synthetic-cohort generator
    {"config", "checkpoint", "model_zoo", "solver", "evaluation"},
    {"inference", "visualization"},
    {"engine", "tuning"},  # training; the operating-point calibration
    {"classical"},  # row A, a baseline predictor and its tuning
    {"experiments"},  # the drivers: ablation, CV, LOSO, demo
    {"cli", TOP},  # the programs; the package's public names
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def _unit(parts) -> str:
    """The unit a module path under rsrcnn_d2 belongs to: ('data', 'x.py') -> 'data'."""
    if not parts or parts[0] in ("__init__", "__init__.py"):
        return TOP
    return parts[0][:-3] if parts[0].endswith(".py") else parts[0]


def _imported_units(path: Path, package: Path = PACKAGE):
    """``{unit: first line}`` of the rsrcnn_d2 units a module imports (relative or absolute,
    anywhere in the file)."""
    module = path.relative_to(package.parent).with_suffix("").parts
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(module[: len(module) - node.level])
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            if target == ["rsrcnn_d2"]:  # from rsrcnn_d2 import x / from .. import x
                names = [["rsrcnn_d2", a.name] if (package / a.name).is_dir() or
                         (package / f"{a.name}.py").is_file() else ["rsrcnn_d2"]
                         for a in node.names]  # fmt: skip
            else:
                names = [target]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        for n in names:
            if n[0] == "rsrcnn_d2":
                found.setdefault(_unit(n[1:2]), node.lineno)
    return found


def _units():
    for path in sorted(PACKAGE.iterdir()):
        if path.name == "__pycache__":
            continue
        if path.is_dir() or path.suffix == ".py":
            yield _unit([path.name])


def test_every_unit_of_the_package_has_a_floor():
    assert sorted(set(_units()) - set(FLOOR)) == []
    assert sorted(set(FLOOR) - set(_units())) == []


@pytest.mark.parametrize("unit", sorted(FLOOR))
def test_a_unit_imports_only_from_the_floors_below(unit):
    files = (
        [PACKAGE / "__init__.py"]
        if unit == TOP
        else sorted((PACKAGE / unit).rglob("*.py"))
        if (PACKAGE / unit).is_dir()
        else [PACKAGE / f"{unit}.py"]
    )
    wrong = [
        f"{p.relative_to(PACKAGE)}:{line} imports {target} (floor {FLOOR[target]}, "
        f"not below {unit}'s {FLOOR[unit]})"
        for p in files
        for target, line in _imported_units(p).items()
        if target != unit and FLOOR.get(target, len(FLOORS)) >= FLOOR[unit]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_import_reader_sees_relative_absolute_and_function_level_imports(tmp_path):
    package = tmp_path / "rsrcnn_d2"
    for name in ("modeling", "data", "tuning", "inference", "visualization"):
        (package / name).mkdir(parents=True)
    (package / "config.py").write_text("")
    module = package / "visualization" / "x.py"
    module.write_text(
        "import numpy\nfrom ..modeling.dcrf import f\nfrom . import overlays\n"
        "from .. import data\nimport rsrcnn_d2.tuning.bayes\n"
        "def g():\n    from rsrcnn_d2.inference import io\n    from .. import get_cfg\n"
        "    from rsrcnn_d2 import config\n"
    )
    assert _imported_units(module, package) == {
        "modeling": 2,
        "visualization": 3,
        "data": 4,
        "tuning": 5,
        "inference": 7,
        TOP: 8,  # a name of the package itself
        "config": 9,
    }
