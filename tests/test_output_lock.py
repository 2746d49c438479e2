"""One writer per output folder: a live holder refuses a second program, a dead one's lock is
taken over, the lock is ours to remove only."""

import json
import socket
import subprocess
import sys

import pytest

from rsrcnn_d2.data.errors import PWMLDataError
from rsrcnn_d2.data.output_lock import LOCK_FILE, lock_holder, output_lock


def _lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "program": "rsrcnn-predict",
              "started": "2026-12-06 12:00:00"}  # fmt: skip
    (folder / LOCK_FILE).write_text(json.dumps(record))


def test_a_live_holder_refuses_a_second_writer(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _lock(tmp_path / "out", holder.pid)
        with pytest.raises(PWMLDataError) as e:
            with output_lock(tmp_path / "out", "rsrcnn-predict"):
                pytest.fail("entered a folder another live process holds")
        assert str(e.value) == (
            f"{tmp_path / 'out'}: in use by rsrcnn-predict (pid {holder.pid} on "
            f"{socket.gethostname()}, since 2026-12-06 12:00:00); wait for it to finish, or "
            f"remove {tmp_path / 'out' / LOCK_FILE} if that run is gone"
        )
        assert json.loads((tmp_path / "out" / LOCK_FILE).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holders_lock_is_taken_over_and_ours_removed_after(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(tmp_path / "out", dead.pid)
    assert lock_holder(tmp_path / "out") is None  # stale
    with output_lock(tmp_path / "out", "run_cv") as path:
        assert json.loads(path.read_text())["program"] == "run_cv"
        assert lock_holder(tmp_path / "out")["program"] == "run_cv"
    assert not (tmp_path / "out" / LOCK_FILE).exists()


def test_another_hosts_lock_holds(tmp_path):
    _lock(tmp_path / "out", 1, host="another-machine")
    with pytest.raises(PWMLDataError, match="on another-machine"):
        with output_lock(tmp_path / "out", "run_cv"):
            pass


@pytest.mark.parametrize("content", ["[1, 2]", '{"pid": null}', '{"pid": 0}', '{"pid": "7"}', "{"])
def test_a_lock_without_a_usable_pid_counts_as_held(tmp_path, content):
    """Not taken over as stale (pid 0 would signal our own process group), never a traceback."""
    (tmp_path / LOCK_FILE).write_text(content)
    assert lock_holder(tmp_path)["pid"] is None
    with pytest.raises(PWMLDataError, match="in use by"):
        with output_lock(tmp_path, "test"):
            pass
