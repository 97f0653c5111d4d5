"""The console under a real terminal that goes away: SSH drops (SIGHUP), or SIGTERM.

The app runs in a pseudo-terminal of its own; closing our end hangs it up exactly as a dropped SSH
connection does. Every job's process tree must die and the app must exit, not hang.
"""

from __future__ import annotations

import os
import pty
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX terminals and signals"),
]

REPO = Path(__file__).resolve().parent.parent


def _job_file(tmp_path: Path) -> Path:
    pids = tmp_path / "pids"
    pids.mkdir()
    path = tmp_path / "jobs.toml"
    # Each job records its shell's pid and a background child's pid, then waits.
    path.write_text(
        "\n".join(
            f"""
[[job]]
id = "{name}"
queue = "{name}"
cmd = "sleep 300 & echo $! > {pids}/{name}.child; echo $$ > {pids}/{name}.main; wait"
"""
            for name in ("one", "two")
        )
        + f"""
[[job]]
id = "later"
queue = "one"
cmd = "touch {tmp_path}/later-ran"
"""
    )
    return path


def _start_app(tmp_path: Path) -> tuple[int, int, threading.Thread]:
    job_file = _job_file(tmp_path)
    pid, master = pty.fork()
    if pid == 0:  # the child: the app, with the pty as its controlling terminal
        os.chdir(REPO)
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-m", "pq_tui", str(job_file),
                                  "--log-dir", str(tmp_path / "logs"), "--kill-grace", "1"])

    def drain() -> None:  # a terminal that nobody reads would block the app's writes
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return pid, master, reader


def _job_pids(tmp_path: Path) -> list[int]:
    """Wait until both jobs have written their pids; return them all."""
    deadline = time.monotonic() + 30
    files = [tmp_path / "pids" / f"{name}.{kind}" for name in ("one", "two") for kind in ("main", "child")]
    while not all(f.exists() and f.read_text().strip() for f in files):
        assert time.monotonic() < deadline, "the jobs never started"
        time.sleep(0.05)
    return [int(f.read_text()) for f in files]


def _wait_exit(pid: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the app did not exit")
        time.sleep(0.05)


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_hangup_kills_every_job_tree_and_exits(tmp_path):
    pid, master, reader = _start_app(tmp_path)
    pids = _job_pids(tmp_path)
    os.close(master)  # the SSH connection drops
    assert _wait_exit(pid) == 128 + signal.SIGHUP
    reader.join(5)
    assert _alive(pids) == []
    assert not (tmp_path / "later-ran").exists()  # queued jobs do not start on the way out
    logs = list((tmp_path / "logs").glob("*.log"))
    assert {log.name.split(".")[0] for log in logs} == {"one", "two"}
    assert all("killed" in log.read_text() for log in logs)


def test_sigterm_kills_every_job_tree_and_exits(tmp_path):
    pid, master, reader = _start_app(tmp_path)
    pids = _job_pids(tmp_path)
    os.kill(pid, signal.SIGTERM)
    try:
        assert _wait_exit(pid) == 128 + signal.SIGTERM
    finally:
        os.close(master)
        reader.join(5)
    assert _alive(pids) == []
