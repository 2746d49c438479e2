"""The package's layers: a module imports only from its own layer or the ones below.

data < modeling < evaluation, inference, visualization < experiments, tuning; and
data < synth: the synthetic-cohort generator uses data, and no lower layer imports it (so
``import rsrcnn_d2`` does not load it).
Read from the source (ast), since importing ``rsrcnn_d2`` loads every layer anyway.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rsrcnn_d2"


def _imported_packages(path: Path, package: Path = PACKAGE):
    """The rsrcnn_d2 sub-packages a module imports (relative or absolute)."""
    module = path.relative_to(package.parent).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(module[: len(module) - node.level])
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            names = [target] if len(target) > 1 else [target + [a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        found |= {n[1] for n in names if n[0] == "rsrcnn_d2" and len(n) > 1}
    return found


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        (
            "data",
            {
                "modeling",
                "evaluation",
                "inference",
                "visualization",
                "experiments",
                "tuning",
                "synth",
            },
        ),
        (
            "modeling",
            {"evaluation", "inference", "visualization", "experiments", "tuning", "synth"},
        ),
        ("evaluation", {"inference", "visualization", "experiments", "tuning", "synth"}),
        ("inference", {"evaluation", "visualization", "experiments", "tuning", "synth"}),
        ("visualization", {"modeling", "inference", "experiments", "tuning", "synth"}),
        (
            "synth",
            {"modeling", "evaluation", "inference", "visualization", "experiments", "tuning"},
        ),
    ],
)
def test_a_layer_imports_nothing_above_it(layer, forbidden):
    wrong = {
        f"{p.relative_to(PACKAGE)} imports {sorted(_imported_packages(p) & forbidden)}"
        for p in sorted((PACKAGE / layer).glob("*.py"))
        if _imported_packages(p) & forbidden
    }
    assert not wrong, wrong


def test_the_import_reader_sees_relative_and_absolute_imports(tmp_path):
    module = tmp_path / "rsrcnn_d2" / "visualization" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "import numpy\nfrom ..modeling.dcrf import f\nfrom . import overlays\n"
        "from .. import data\nimport rsrcnn_d2.tuning.bayes\n"
        "from rsrcnn_d2.inference import io\n"
    )
    assert _imported_packages(module, tmp_path / "rsrcnn_d2") == {
        "modeling",
        "visualization",
        "data",
        "tuning",
        "inference",
    }
