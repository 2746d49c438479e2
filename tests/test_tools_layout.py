"""The tools are thin programs over the installed package: no path tricks, one runner, one
name per option."""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*REPO.glob("tools/*.py"), *REPO.glob("benchmarks/*.py")])


# tools that are not thin callers, and why
NOT_THIN = {"install_detectron2.py": "runs before detectron2 (and so the package) can be imported"}


def _thin_tool_problems(path: Path):
    """What makes a tool more than a thin caller: anything but a docstring, ``import sys``,
    ``from rsrcnn_d2... import ...`` and ``if __name__ == "__main__": sys.exit(<imported>())``."""
    problems, imported = [], set()
    body = ast.parse(path.read_text(), str(path)).body
    for node in body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is body[0]:
            continue  # the docstring
        if isinstance(node, ast.Import) and [a.name for a in node.names] == ["sys"]:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rsrcnn_d2."):
            imported |= {a.asname or a.name for a in node.names}
            continue
        if (
            isinstance(node, ast.If)
            and ast.unparse(node.test) == "__name__ == '__main__'"
            and len(node.body) == 1
            and isinstance(node.body[0], ast.Expr)
            and ast.unparse(node.body[0]) in {f"sys.exit({name}())" for name in imported}
        ):
            continue
        problems.append(f"{path.name}:{node.lineno} {type(node).__name__}")
    return problems


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
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.Constant)
                and isinstance(node.right.value, str)
                and node.right.value.startswith(("configs", "tools"))
            ):
                offenders.append(f"{where} {ast.unparse(node)}")
    assert offenders == []


def test_the_package_never_locates_the_repository_tools():
    """No module of rsrcnn_d2 walks up from its own file to the checkout (``parents[...]``)
    or names tools/ as a path: only rsrcnn_d2.model_zoo looks beside the package, for configs/."""
    offenders = []
    for path in sorted((REPO / "rsrcnn_d2").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "parents"
                and "__file__" in ast.unparse(node)
            ):
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
    assert (
        err == [f"{Path(sys.argv[0]).name}: warning: --out is deprecated, use --output (or -o)"] * 2
    )


def test_demo_runs_its_steps_through_the_library_runner():
    from rsrcnn_d2.experiments import demo, runner

    assert demo.train is runner.train and demo.calibrate is runner.calibrate
    assert not hasattr(demo, "run") and not hasattr(demo, "subprocess")
    assert list(demo.ROWS) == ["B", "E", "plus"]  # configs through rsrcnn_d2.model_zoo


@pytest.mark.parametrize("driver", ["ablation", "loso"])
def test_sweeps_take_their_rows_from_the_model_zoo(driver):
    import importlib

    from rsrcnn_d2.model_zoo import row_config

    rows = importlib.import_module(f"rsrcnn_d2.experiments.{driver}").ROW_CONFIGS
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


def test_every_tool_is_a_thin_caller_of_a_library_program():
    """detectron2's tools/ style: a tool imports its program from the package and runs it;
    the parser and the logic live in the package, where tests and the drivers reach them."""
    tools = sorted(p for p in REPO.glob("tools/*.py") if p.name not in NOT_THIN)
    assert len(tools) >= 13
    assert [problem for path in tools for problem in _thin_tool_problems(path)] == []


def test_the_thin_tool_rule_sees_logic(tmp_path):
    tool = tmp_path / "t.py"
    tool.write_text(
        '"""doc"""\nimport sys\n\nfrom rsrcnn_d2.x import main\n\n'
        'if __name__ == "__main__":\n    sys.exit(main())\n'
    )
    assert _thin_tool_problems(tool) == []
    tool.write_text(
        '"""doc"""\nimport os\nfrom rsrcnn_d2.x import main\nX = 1\n\ndef f():\n    pass\n\n'
        'if __name__ == "__main__":\n    sys.exit(other())\n'
    )
    assert _thin_tool_problems(tool) == [
        "t.py:2 Import",
        "t.py:4 Assign",
        "t.py:6 FunctionDef",
        "t.py:9 If",
    ]


def _runs_under_python_m(module: str) -> bool:
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    return any(
        isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
        for node in ast.parse(path.read_text()).body
    )


def test_training_is_the_one_program_the_drivers_start():
    """The drivers (demo, ablation, LOSO, CV) start only the training program as a child
    (``python -m``); every other step is a function call. That module runs its ``main``."""
    import subprocess as sp

    from rsrcnn_d2.experiments import runner

    modules = [getattr(runner, n) for n in dir(runner) if n.endswith("_MODULE")]
    assert modules == ["rsrcnn_d2.engine.train_net"]
    assert _runs_under_python_m(modules[0])
    found = sp.run(
        ["grep", "-rln", "run_child\\|subprocess", str(REPO / "rsrcnn_d2" / "experiments")],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(Path(f).name for f in found) == ["child_process.py", "runner.py"]


def test_every_tool_program_is_also_python_m():
    """What README promises: each tool's program runs without the checkout's tools/ folder."""
    programs = {
        node.module
        for path in REPO.glob("tools/*.py")
        if path.name not in NOT_THIN
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rsrcnn_d2.")
    }
    assert len(programs) == 15
    assert sorted(m for m in programs if not _runs_under_python_m(m)) == []
