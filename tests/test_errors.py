"""The exit-code table and the one-line error report every tool shares."""

import pickle

import pytest

from rsrcnn_d2.errors import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_WEIGHTS,
    ConfigError,
    PWMLDataError,
    WeightsError,
    exit_code_of,
    report_errors,
)


@pytest.mark.parametrize(
    "error, code",
    [
        (PWMLDataError("a.nii", "bad"), 2),
        (ConfigError("c.yaml", "bad"), 3),
        (WeightsError("w.pth", "bad"), 4),
    ],
)
def test_each_kind_of_error_has_its_own_code(error, code):
    assert exit_code_of(error) == code
    assert (EXIT_DATA, EXIT_CONFIG, EXIT_WEIGHTS) == (2, 3, 4)


def test_report_errors_prints_one_line_naming_the_file(capsys):
    @report_errors("tool")
    def main(kind):
        raise {"config": ConfigError, "weights": WeightsError}[kind]("/x/f.bin", "truncated file")

    assert main("weights") == 4
    err = capsys.readouterr().err
    assert err == "tool: error: /x/f.bin: truncated file\n"
    assert main("config") == 3


def test_report_errors_keeps_the_traceback_of_our_own_bugs():
    @report_errors("tool")
    def main():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        main()


def test_an_os_error_about_a_file_is_one_line_exit_2(capsys):
    """A folder made read-only while a tool runs, a full disk: the file and the reason."""
    import errno

    @report_errors("tool")
    def main(error):
        raise error

    assert main(PermissionError(errno.EACCES, "Permission denied", "/out/summary.json")) == 2
    assert capsys.readouterr().err == "tool: error: /out/summary.json: Permission denied\n"
    assert main(OSError(errno.ENOSPC, "No space left on device", "/out/a.npy")) == 2
    assert capsys.readouterr().err == "tool: error: /out/a.npy: No space left on device\n"
    with pytest.raises(OSError):  # no file named: not ours to explain, the traceback stays
        main(OSError(errno.EPIPE, "Broken pipe"))


def test_errors_survive_worker_processes():
    e = pickle.loads(pickle.dumps(WeightsError("w.pkl", "unsafe")))
    assert isinstance(e, WeightsError) and (e.path, e.problem) == ("w.pkl", "unsafe")
    assert str(e) == "w.pkl: unsafe"
