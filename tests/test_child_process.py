"""A driver's child process dies with the driver (Linux: PR_SET_PDEATHSIG), read from /proc."""

import subprocess
import sys
import time

import pytest


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "Z" not in state.split()[1]  # a zombie has finished


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_driver_leaves_no_child_running(tmp_path):
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    driver = (
        "import sys\n"
        "from rsrcnn_d2.experiments.child_process import run_child\n"
        f"run_child([sys.executable, '-c', {child!r}])\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", driver])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        assert _alive(pid)
    finally:
        parent.kill()  # SIGKILL: the driver gets no chance to clean up
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the child outlived its killed parent"
