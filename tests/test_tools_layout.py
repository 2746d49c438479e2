"""The tools are thin programs over the installed package: no path tricks, one runner, one name per option."""
import ast
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*REPO.glob("tools/*.py"), *REPO.glob("benchmarks/*.py")])


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f"{name}_layout", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_script_edits_sys_path_or_builds_config_and_tool_paths():
    """The package is installed (editable in a checkout): a script imports it as any user
    would, finds configs through rsrcnn_d2.model_zoo and trains through the package."""
    assert len(SCRIPTS) >= 20
    offenders = []
    for path in SCRIPTS:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path.insert":
                offenders.append(f"{where} sys.path.insert")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                    and isinstance(node.right, ast.Constant) and isinstance(node.right.value, str) \
                    and node.right.value.startswith(("configs", "tools")):
                offenders.append(f"{where} {ast.unparse(node)}")
    assert offenders == []


def test_the_package_never_locates_the_repository_tools():
    """No module of rsrcnn_d2 walks up from its own file to the checkout (``parents[...]``)
    or names tools/ as a path: only rsrcnn_d2.model_zoo looks beside the package, for configs/."""
    offenders = []
    for path in sorted((REPO / "rsrcnn_d2").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and node.attr == "parents" and "__file__" in ast.unparse(node):
                offenders.append(f"{where} {ast.unparse(node)}")
            if isinstance(node, ast.Constant) and node.value == "tools":
                offenders.append(f"{where} 'tools'")
    assert offenders == []


def test_prepare_pwml_takes_output_as_every_tool_and_out_as_a_deprecated_alias(capsys):
    from rsrcnn_d2.data import prepare_cli as prepare  # the program behind tools/prepare_pwml.py

    assert prepare.parse_args(["src", "--output", "a"]).output == "a"
    assert prepare.parse_args(["src", "-o", "b"]).output == "b"
    assert capsys.readouterr().err == ""
    assert prepare.parse_args(["src", "--out", "c"]).output == "c"
    assert prepare.parse_args(["src", "--out=d"]).output == "d"
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{Path(sys.argv[0]).name}: warning: --out is deprecated, use --output (or -o)"] * 2


def test_demo_runs_its_steps_through_the_library_runner():
    demo = _load_tool("demo")
    from rsrcnn_d2.experiments import run_tool

    assert demo.run_tool is run_tool
    assert not hasattr(demo, "run") and not hasattr(demo, "subprocess")
    assert demo.CONFIG == str(REPO / "configs" / "PWML-Tiny" / "E_rsrcnn_R_18_FPN.yaml")


@pytest.mark.parametrize("tool", ["run_ablation", "run_loso"])
def test_sweeps_take_their_rows_from_the_model_zoo(tool):
    from rsrcnn_d2.model_zoo import row_config

    rows = _load_tool(tool).ROW_CONFIGS
    assert rows and all(rows[row] == row_config(row) for row in rows)


def test_tools_build_and_load_models_only_through_the_library():
    """One way to build a model and load checked weights (LesionPredictor.from_config, the
    training program): no tool calls detectron2's build_model or the weight loader itself."""
    calls = []
    for path in sorted(REPO.glob("tools/*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func).rsplit(".", 1)[-1]
                if name in ("build_model", "load_model_weights", "load_trainer_weights"):
                    calls.append(f"{path.name}:{node.lineno} {name}")
    assert calls == []
