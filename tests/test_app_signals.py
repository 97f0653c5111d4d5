"""The embedded console (no server) under a real terminal that goes away: SSH drops (SIGHUP), or
SIGTERM.

The app runs in a pseudo-terminal of its own; closing our end hangs it up exactly as a dropped SSH
connection does. Every job's process tree must die and the app must exit, not hang. (Attached to a
server, the jobs go on instead: tests/test_attach.py.)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from process_helpers import Terminal

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


def _start_app(tmp_path: Path) -> Terminal:
    job_file = _job_file(tmp_path)
    return Terminal([sys.executable, "-m", "pq_tui", "--embedded", str(job_file),
                     "--log-dir", str(tmp_path / "logs"), "--kill-grace", "1"], cwd=str(REPO))


def _job_pids(tmp_path: Path) -> list[int]:
    """Wait until both jobs have written their pids; return them all."""
    return _pids_in([tmp_path / "pids" / f"{name}.{kind}"
                     for name in ("one", "two") for kind in ("main", "child")], "the jobs")


def _pids_in(files: list[Path], who: str) -> list[int]:
    """Wait until each of ``files`` holds a pid; return them."""
    deadline = time.monotonic() + 30
    while not all(f.exists() and f.read_text().strip() for f in files):
        assert time.monotonic() < deadline, f"{who} never started"
        time.sleep(0.05)
    return [int(f.read_text()) for f in files]


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
    app = _start_app(tmp_path)
    pids = _job_pids(tmp_path)
    app.hang_up()  # the SSH connection drops
    assert app.wait_exit() == 128 + signal.SIGHUP
    assert _alive(pids) == []
    assert not (tmp_path / "later-ran").exists()  # queued jobs do not start on the way out
    logs = list((tmp_path / "logs").glob("*.log"))
    assert {log.name.split(".")[0] for log in logs} == {"one", "two"}
    assert all("killed" in log.read_text() for log in logs)


def test_sigterm_kills_every_job_tree_and_exits(tmp_path):
    app = _start_app(tmp_path)
    pids = _job_pids(tmp_path)
    os.kill(app.pid, signal.SIGTERM)
    try:
        assert app.wait_exit() == 128 + signal.SIGTERM
    finally:
        app.hang_up()
    assert _alive(pids) == []


# `pq-tui` whose help key (?) raises: a bug in the console.
CRASHING_CONSOLE = ("import sys, pq_tui.ui.screens.main as m\n"
                    "def broken(self):\n"
                    "    raise RuntimeError('a bug in the console')\n"
                    "m.MainScreen.action_help = broken\n"
                    "from pq_tui.cli.main import main\n"
                    "sys.argv[0] = 'pq-tui'\n"
                    "sys.exit(main())\n")


def test_a_console_that_crashes_kills_every_job_tree_and_says_so(tmp_path):
    # A bug in the console ends Textual's loop with an exception, not through the quit path:
    # its jobs, each in a session of its own where no hangup reaches it, must not outlive it.
    app = Terminal([sys.executable, "-c", CRASHING_CONSOLE, "--embedded", str(_job_file(tmp_path)),
                    "--log-dir", str(tmp_path / "logs"), "--kill-grace", "1"], cwd=str(REPO))
    try:
        pids = _job_pids(tmp_path)
        os.write(app.master, b"?")  # the help key, broken above
        assert app.wait_exit() == 1
    finally:
        app.hang_up()
    assert _alive(pids) == []
    assert not (tmp_path / "later-ran").exists()  # nor does a queued one start on the way out
    assert b"ended without stopping its jobs; killed 2: one, two" in app.output, \
        bytes(app.output[-2000:])


def test_a_console_that_crashes_kills_the_hooks_running(tmp_path):
    # A job's on_finish hook runs in a session of its own too; this one outlives the console
    # unless it is killed (the hooks' timeout is a minute).
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "jobs.toml").write_text(f"""
[[job]]
id = "quick"
cmd = "true"
on_finish = "sleep 300 & echo $! > {pids}/hook.child; echo $$ > {pids}/hook.main; wait"
""")
    app = Terminal([sys.executable, "-c", CRASHING_CONSOLE, "--embedded", str(tmp_path / "jobs.toml"),
                    "--log-dir", str(tmp_path / "logs"), "--kill-grace", "1"], cwd=str(REPO))
    try:
        hook = _pids_in([pids / "hook.main", pids / "hook.child"], "the hook")
        assert _alive(hook) == hook
        os.write(app.master, b"?")  # the help key, broken above
        assert app.wait_exit() == 1
    finally:
        app.hang_up()
    survivors = _alive(hook)
    for pid in survivors:  # a failure here must not leave a sleep for five minutes
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


def test_the_console_gives_a_job_files_lanes_their_slots(tmp_path):
    # Two jobs of a two-slot lane, each waiting for the other to have started: they end only if
    # both run at once.
    (tmp_path / "jobs.toml").write_text(f"""
[lanes.pair]
parallel = 2

[[job]]
id = "a"
queue = "pair"
cmd = "touch {tmp_path}/a; while [ ! -e {tmp_path}/b ]; do sleep 0.05; done"

[[job]]
id = "b"
queue = "pair"
cmd = "touch {tmp_path}/b; while [ ! -e {tmp_path}/a ]; do sleep 0.05; done"
""")
    app = Terminal([sys.executable, "-m", "pq_tui", "--embedded", str(tmp_path / "jobs.toml"),
                    "--log-dir", str(tmp_path / "logs"), "--kill-grace", "1"], cwd=str(REPO))
    try:
        deadline = time.monotonic() + 30
        while not ((tmp_path / "logs" / "a.1.log").exists() and (tmp_path / "b").exists()):
            assert app.running(), bytes(app.output[-2000:])
            assert time.monotonic() < deadline, "the two jobs never ran side by side"
            time.sleep(0.05)
    finally:
        app.hang_up()
        app.wait_exit()
