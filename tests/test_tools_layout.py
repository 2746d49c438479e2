"""The tools are thin programs over the installed package: no path tricks, one runner, one
name per option; every program is a module of rsrcnn_d2.cli with a console script, and
answers --help without loading torch or detectron2."""

import ast
import subprocess
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
    from rsrcnn_d2.cli import prepare  # the program behind tools/prepare_pwml.py

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
    assert list(demo.ROWS) == ["B", "E"]  # configs through rsrcnn_d2.model_zoo


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
    assert modules == ["rsrcnn_d2.cli.train_net"]
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
    # 17 tools, 16 programs: tools/tune_dcrf.py is tune_operating_point's deprecated alias
    assert len(programs) == 16
    assert sorted(m for m in programs if not m.startswith("rsrcnn_d2.cli.")) == []
    assert sorted(m for m in programs if not _runs_under_python_m(m)) == []


CLI = REPO / "rsrcnn_d2" / "cli"
CLI_HELPERS = {"__init__", "common"}  # modules of rsrcnn_d2/cli that are no program


def _console_scripts():
    """{command: "module:function"} of setup.py's console_scripts, read from its source."""
    setup = ast.parse((REPO / "setup.py").read_text())
    call = next(
        n for n in ast.walk(setup) if isinstance(n, ast.Call) and ast.unparse(n.func) == "setup"
    )
    entry_points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    return dict(item.replace(" ", "").split("=") for item in entry_points["console_scripts"])


def test_every_program_has_a_console_script_and_every_console_script_is_a_program():
    import importlib

    programs = {f"rsrcnn_d2.cli.{p.stem}" for p in CLI.glob("*.py") if p.stem not in CLI_HELPERS}
    scripts = _console_scripts()
    assert all(name.startswith("rsrcnn-") for name in scripts)
    targets = [target.split(":") for target in scripts.values()]
    assert sorted(module for module, _ in targets) == sorted(programs)  # one each
    assert all(callable(getattr(importlib.import_module(m), f)) for m, f in targets)
    assert all(_runs_under_python_m(m) for m in programs)
    # the commands the README always had still name their programs
    assert {"rsrcnn-predict", "rsrcnn-evaluate", "rsrcnn-ensemble", "rsrcnn-find-best"} <= set(
        scripts
    )


# what a program's --help must not load: the library proper waits until the arguments are parsed
HEAVY = ("torch", "detectron2", "numpy", "nibabel", "scipy")
_HELP = """
import runpy, sys
sys.argv = [{module!r}, "--help"]
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as e:
    assert e.code == 0, e.code
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r})))
"""


@pytest.mark.parametrize(
    "program", sorted(p.stem for p in CLI.glob("*.py") if p.stem not in CLI_HELPERS)
)
def test_help_loads_neither_torch_nor_detectron2(program):
    """``python -m rsrcnn_d2.cli.<program> --help`` in a fresh interpreter: argparse only, so
    that it answers at once (the modules loaded are checked, not seconds)."""
    code = _HELP.format(module=f"rsrcnn_d2.cli.{program}", heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    assert "usage:" in proc.stdout


def test_a_missing_config_file_is_answered_before_torch_loads(tmp_path):
    """A mistyped ``--config-file`` is an argument error: exit 3 at once, not after the
    imports (the modules loaded are checked, not seconds)."""
    code = _HELP.replace('"--help"', '"--config-file", "missing.yaml"').replace("== 0", "== 3")
    code = code.format(module="rsrcnn_d2.cli.train_net", heavy=HEAVY)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    assert proc.stderr == "train_net.py: error: missing.yaml: config file does not exist\n"


_TOOL_HELP = _HELP.replace("run_module", "run_path").replace(", alter_sys=True", "")


@pytest.mark.parametrize(
    "tool", sorted(p.name for p in REPO.glob("tools/*.py") if p.name not in NOT_THIN)
)
def test_the_tools_help_loads_neither_torch_nor_detectron2(tool):
    """``python tools/<tool> --help`` too: a shim that re-exports the library (train_net's
    Trainer and setup) must not load it before it is used."""
    code = _TOOL_HELP.format(module=str(REPO / "tools" / tool), heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    assert "usage:" in proc.stdout


def test_the_programs_option_tables_are_the_librarys():
    """The programs name a few library tables before the library loads (fast --help); the
    copies must be the library's."""
    from detectron2.engine import default_argument_parser

    from rsrcnn_d2.classical import MODES, OBJECTIVES
    from rsrcnn_d2.cli import (
        common,
        find_best,
        pretrain,
        run_ablation,
        run_loso,
        train_net,
        tune_classical,
        tune_operating_point,
    )
    from rsrcnn_d2.data.nifti import AXES
    from rsrcnn_d2.experiments import ablation, loso
    from rsrcnn_d2.experiments.find_best import METRICS
    from rsrcnn_d2.experiments.pretrain import SOURCE_SEED
    from rsrcnn_d2.tuning import DEFAULT_BOUNDS, PARAM_KEYS
    from rsrcnn_d2.tuning.calibrate import SEARCHES
    from rsrcnn_d2.tuning.dcrf_search import OBJECTIVES as TUNING_OBJECTIVES

    assert common.AXIS_NAMES == tuple(AXES)
    assert (tune_operating_point.SEARCHES, tune_operating_point.OBJECTIVES) == (
        SEARCHES,
        TUNING_OBJECTIVES,
    )
    assert tune_operating_point.PARAM_KEYS == PARAM_KEYS and set(DEFAULT_BOUNDS) == set(PARAM_KEYS)
    assert (tune_classical.MODES, tune_classical.OBJECTIVES) == (MODES, OBJECTIVES)
    assert find_best.METRICS == METRICS
    assert run_ablation.CLASSICAL == ablation.CLASSICAL
    assert (run_ablation.K_ROW, run_ablation.ROW_K) == (ablation.K_ROW, ablation.ROW_K)
    assert set(run_ablation.DEFAULT_ROWS) <= set(ablation.ROW_CONFIGS)
    assert run_loso.CLASSICAL == loso.CLASSICAL and run_loso.ROWS == tuple(loso.ROW_CONFIGS)
    assert pretrain.SOURCE_SEED == SOURCE_SEED

    # train_net's copy of detectron2's parser: the same options, defaults and types
    def options(parser):
        return [
            (a.option_strings, a.dest, a.default, a.type, a.nargs, type(a).__name__)
            for a in parser._actions
        ]

    assert options(train_net.default_argument_parser()) == options(default_argument_parser())


def test_the_training_program_re_exports_the_librarys_trainer():
    """tools/train_net.py's Trainer and setup (detectron2's habit) are the library's, loaded
    on first access."""
    from rsrcnn_d2.cli import train_net
    from rsrcnn_d2.engine import train_net as engine

    assert (train_net.Trainer, train_net.setup) == (engine.Trainer, engine.setup)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(train_net, "nope")  # noqa: B009 (the attribute access is what is tested)
