"""The tools' logging and warning set-up (rsrcnn_d2.tool_setup)."""

import logging
import warnings

from rsrcnn_d2.tool_setup import quiet_known_warnings, setup_tool_logging


def test_lines_reach_the_console_and_the_file_and_a_second_call_replaces_the_first(
    tmp_path, capsys
):
    setup_tool_logging(tmp_path / "a" / "log.txt")
    logging.getLogger("rsrcnn_d2.some.module").warning("first line")
    setup_tool_logging(tmp_path / "b.log")  # main() called again in the same process
    logging.getLogger("rsrcnn_d2.other").info("second line")
    out = capsys.readouterr().out
    assert out.count("first line") == 1 and out.count("second line") == 1  # not doubled
    assert "rsrcnn_d2.some.module WARNING]: first line" in out
    assert "first line" in (tmp_path / "a" / "log.txt").read_text()
    assert "second line" not in (tmp_path / "a" / "log.txt").read_text()
    assert "second line" in (tmp_path / "b.log").read_text()
    handlers = logging.getLogger("rsrcnn_d2").handlers
    assert len([h for h in handlers if getattr(h, "_rsrcnn_tool", False)]) == 2


def test_the_console_handler_follows_the_current_stdout(capsys):
    setup_tool_logging()
    logging.getLogger("rsrcnn_d2").info("one")
    assert "one" in capsys.readouterr().out
    logging.getLogger("rsrcnn_d2").info(
        "two"
    )  # a new capture: the handler must not keep the old one
    assert "two" in capsys.readouterr().out


def test_known_warnings_only_are_hidden():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_known_warnings()
        warnings.warn(
            "torch.meshgrid: in an upcoming release, it will be required", UserWarning, stacklevel=1
        )
        warnings.warn(
            "The given NumPy array is not writable, and PyTorch", UserWarning, stacklevel=1
        )
        warnings.warn("something of ours", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something of ours"]


def test_importing_the_package_changes_no_warning_filter():
    import subprocess
    import sys

    code = (
        "import warnings; before = list(warnings.filters); import rsrcnn_d2; "
        "assert warnings.filters == before, 'import changed the filters'"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# one message of each KNOWN_WARNINGS entry, in order, as the third-party code words it
KNOWN_SAMPLES = [
    (
        UserWarning,
        "torch.meshgrid: in an upcoming release, it will be required to pass the indexing",
    ),
    (UserWarning, "The given NumPy array is not writable, and PyTorch does not support"),
    (DeprecationWarning, "__array__ implementation doesn't accept a copy keyword, so passing"),
    (UserWarning, "pkg_resources is deprecated as an API."),
    (DeprecationWarning, "pkg_resources is deprecated as an API."),
    (UserWarning, "Was not able to add assertion to guard the torch.fx graph"),
    (FutureWarning, "`torch.jit.script` is deprecated. Please switch to `torch.compile`"),
    (UserWarning, "torch.cuda.amp.GradScaler is enabled, but CUDA is not available.  Disabling."),
]


def test_the_samples_are_the_known_warnings():
    import re

    from rsrcnn_d2.tool_setup import KNOWN_WARNINGS

    assert len(KNOWN_SAMPLES) == len(KNOWN_WARNINGS)
    for (category, message), (known, pattern) in zip(KNOWN_SAMPLES, KNOWN_WARNINGS):
        assert category is known and re.match(pattern, message), (message, pattern)


def test_the_test_run_hides_the_known_warnings_and_no_other():
    """pytest.ini's filters hide what the tools hide; no blanket filter (e.g. on every
    FutureWarning) hides a warning of our own."""
    with warnings.catch_warnings(record=True) as seen:  # the filters pytest set for this test
        for category, message in KNOWN_SAMPLES:
            warnings.warn(message, category, stacklevel=1)
        warnings.warn("rsrcnn_d2 test: a future change of ours", FutureWarning, stacklevel=1)
        warnings.warn("rsrcnn_d2 test: something of ours", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == [
        "rsrcnn_d2 test: a future change of ours",
        "rsrcnn_d2 test: something of ours",
    ]


def test_what_a_tool_prints_is_in_its_log_file(tmp_path, capsys):
    from rsrcnn_d2.tool_setup import echo

    setup_tool_logging(tmp_path / "log.txt")
    echo("HEADLINE  Dice per case (3-D) 0.0000\n| table |")
    assert capsys.readouterr().out == "HEADLINE  Dice per case (3-D) 0.0000\n| table |\n"
    assert (tmp_path / "log.txt").read_text() == "HEADLINE  Dice per case (3-D) 0.0000\n| table |\n"


def test_known_third_party_log_lines_are_dropped_and_no_other(caplog):
    quiet_known_warnings()
    fx = logging.getLogger("torch.fx._symbolic_trace")
    with caplog.at_level(logging.WARNING):
        fx.warning("is_fx_tracing will return true for both fx.symbolic_trace and torch.export.")
        fx.warning("a different torch.fx warning")
    assert [r.getMessage() for r in caplog.records] == ["a different torch.fx warning"]


def test_colour_codes_reach_a_terminal_only(tmp_path, capsys):
    import io

    from rsrcnn_d2.tool_setup import plain_log_files

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    logger = logging.getLogger("rsrcnn_d2_test_colour")
    logger.propagate = False
    terminal = logging.StreamHandler(Terminal())
    redirected = logging.StreamHandler(__import__("sys").stdout)  # `> train.log`: no terminal
    file = logging.StreamHandler(open(tmp_path / "log.txt", "w"))  # as detectron2 opens it
    logger.handlers = [terminal, redirected, file]
    plain_log_files(logger)
    logger.warning("config:\n\x1b[38;5;197mMODEL\x1b[39m: %s", "x")
    file.stream.close()
    assert (tmp_path / "log.txt").read_text() == "config:\nMODEL: x\n"
    assert capsys.readouterr().out == "config:\nMODEL: x\n"
    assert terminal.stream.getvalue() == "config:\n\x1b[38;5;197mMODEL\x1b[39m: x\n"
