"""Process trees: whatever a job started is gone after every way a job can end.

Four shapes run side by side, one per lane: grandchildren, `setsid` escapees, a tree that ignores
SIGTERM, and 200 children. Each job's processes carry a token in their environment, so the check
is a psutil scan of every process on the machine, not of the tree the engine knows. The endings:
kill, timeout, queue stop (engine shutdown), app quit (q, y), SIGHUP to the app, and server
shutdown. A double-forked daemon (setsid, fork, the middle process exits) is a case of its own.

Kill of the simpler trees is also in tests/test_core_proctree.py, q with a tree and a TERM-trapper
in tests/test_app.py, SIGHUP/SIGTERM with a `sleep &` tree in tests/test_app_signals.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from engine_helpers import engine_in, run
from process_helpers import Terminal, until, wait_gone
from rel_helpers import REPO, TOKEN_VAR, describe, marked, wait_none_marked

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and signals"),
]

# The shapes, as shell scripts; each touches READY/<name> once everything is started.
SHAPES = {
    "grandchildren": "sh -c 'sleep 300 & sleep 300 & wait' & "
                     "sh -c 'sh -c \"sleep 300\" & wait' & touch {ready}; wait",
    "setsid": "setsid sleep 300 & setsid sh -c 'sleep 300 & wait' & touch {ready}; wait",
    "ignores-term": "trap '' TERM; sleep 300 & sh -c 'sleep 300' & touch {ready}; wait; wait",
    "200-children": "i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); done; "
                    "touch {ready}; wait",
}
# How many processes of each shape must be seen before the ending (so that a case cannot pass by
# ending a tree that never grew).
AT_LEAST = {"grandchildren": 6, "setsid": 4, "ignores-term": 3, "200-children": 201}


def scripts(tmp_path: Path) -> dict:
    ready = tmp_path / "ready"
    ready.mkdir(exist_ok=True)
    return {name: script.format(ready=ready / name) for name, script in SHAPES.items()}


def wait_grown(tmp_path: Path, token: str, names=SHAPES) -> None:
    for name in names:
        until(lambda: (tmp_path / "ready" / name).exists(), f"{name} to start everything")
        until(lambda: len(marked(f"{token}-{name}")) >= AT_LEAST[name],
              f"{name} to have {AT_LEAST[name]} processes")


def assert_all_gone(token: str) -> None:
    left = wait_none_marked(token, 10)
    assert not left, f"processes of the jobs left running: {describe(left)}"


def job_data(tmp_path: Path, token: str, name: str, script: str, **extra) -> dict:
    return {"cmd": script, "cwd": str(tmp_path), "env": {TOKEN_VAR: f"{token}-{name}"}, **extra}


# Every tree-kill case runs with pipes and on a terminal (pty = true): a session leader with a
# controlling terminal, whose children may hold the terminal open.
with_pty = pytest.mark.parametrize("pty", [False, True], ids=["pipe", "pty"])


# -- engine: kill, timeout, queue stop --------------------------------------------------------------


@with_pty
@pytest.mark.parametrize("ending", ["kill", "timeout", "queue-stop"])
def test_every_shape_leaves_nothing_after_an_engine_ending(tmp_path, token, ending, pty):
    async def main():
        async with engine_in(tmp_path, kill_grace=0.5) as engine:
            extra: dict = {"timeout": 3} if ending == "timeout" else {}
            extra["pty"] = pty
            for name, script in scripts(tmp_path).items():
                engine.push(name, job_data(tmp_path, token, name, script, **extra), lane=name)
            await asyncio.get_running_loop().run_in_executor(None, wait_grown, tmp_path, token)
            if ending == "kill":
                results = await asyncio.gather(*(engine.kill(name) for name in SHAPES))
                assert {r["status"] for r in results} == {"killed"}
            elif ending == "timeout":
                results = [await engine.wait_finished(name) for name in SHAPES]
                assert {r["status"] for r in results} == {"timed-out"}, results
            else:
                await engine.shutdown()
                assert {engine.get(n).status.value for n in SHAPES} == {"killed"}
            for name in SHAPES:
                assert "warnings" not in engine.get(name).data, engine.get(name).data
        assert_all_gone(token)

    run(main(), timeout=60)


# -- the app: q, and SIGHUP -------------------------------------------------------------------------


def job_file(tmp_path: Path, token: str, pty: bool = False) -> Path:
    parts = [f"[defaults]\npty = {str(pty).lower()}\n"]
    for name, script in scripts(tmp_path).items():
        assert "'''" not in script
        parts.append(f"[[job]]\nid = '{name}'\nqueue = '{name}'\ncmd = '''{script}'''\n"
                     f"env = {{ {TOKEN_VAR} = '{token}-{name}' }}\n")
    path = tmp_path / "trees.toml"
    path.write_text("\n".join(parts))
    return path


@with_pty
def test_every_shape_leaves_nothing_after_the_app_quits(tmp_path, token, pty):
    from pq_tui.jobs.jobfile import load_job_files
    from pq_tui.ui.app import build_app

    app = build_app(load_job_files([job_file(tmp_path, token, pty)]), log_dir=str(tmp_path / "logs"),
                    kill_grace=0.5, start_dir=tmp_path)

    async def main():
        async with app.run_test(size=(100, 30)) as pilot:
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, wait_grown, tmp_path, token)
                await pilot.press("q")
                await pilot.press("y")
                for _ in range(400):
                    if not app.is_running:
                        break
                    await pilot.pause(0.05)
                assert not app.is_running, "the app did not quit"
                # Before the clean-up below, which would kill whatever the quit left.
                assert {app.queue.get(n).status.value for n in SHAPES} == {"killed"}
                await loop.run_in_executor(None, assert_all_gone, token)
            finally:
                await app.queue.shutdown()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert_all_gone(token)


@with_pty
def test_every_shape_leaves_nothing_after_sighup_to_the_app(tmp_path, token, pty):
    """The SSH connection drops: the app in a real terminal (a pty) gets SIGHUP."""
    app = Terminal(
        [sys.executable, "-m", "pq_tui", "--embedded", str(job_file(tmp_path, token, pty)),
         "--log-dir",
         str(tmp_path / "logs"), "--kill-grace", "0.5"],
        cwd=REPO, env={"PYTHONPATH": REPO})
    try:
        wait_grown(tmp_path, token)
        os.kill(app.pid, signal.SIGHUP)
        app.wait_exit(30)
    finally:
        if app.running():
            os.kill(app.pid, signal.SIGKILL)
            app.wait_exit(10)
        app.hang_up()
    assert_all_gone(token)


# -- the server: shutdown --kill ----------------------------------------------------------------------


@with_pty
def test_every_shape_leaves_nothing_after_server_shutdown(server, token, pty):
    from pq_tui.client.client import Client

    tmp_path = server.tmp

    async def main():
        async with await Client.open(server.paths) as client:  # starts the server
            pid = (await client.request("snapshot"))["server"]["pid"]
            server.pids.add(pid)
            for name, script in scripts(tmp_path).items():
                await client.request("push", job_id=name, lane=name,
                                     data=job_data(tmp_path, token, name, script, pty=pty))
            await asyncio.get_running_loop().run_in_executor(None, wait_grown, tmp_path, token)
            assert (await client.request("shutdown", kill=True))["stopped"] is True
        return pid

    pid = asyncio.run(asyncio.wait_for(main(), 60))
    assert wait_gone(pid), "the server did not exit"
    assert_all_gone(token)


# -- a double-forked daemon ---------------------------------------------------------------------------

# setsid runs sh in a new session, sh starts the daemon in the background and exits: the daemon
# is in neither the job's group nor its session, and its parent is init (or a subreaper).
# It writes its pid, and the job waits for that before it goes on (or exits).
DAEMON = ("setsid sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {ready}.tmp; "
          "mv {ready}.tmp {ready}'; while [ ! -e {ready} ]; do sleep 0.02; done")


def run_daemon_job(tmp_path, token, ending: str, pty: bool) -> int:
    """Run a job that starts a double-forked daemon, end it (kill, or let it exit); the daemon's
    pid."""
    ready = tmp_path / "ready"
    ready.mkdir()
    script = DAEMON.format(ready=ready / "daemon")
    if ending != "exit":
        script += "; sleep 300"

    async def main():
        async with engine_in(tmp_path, kill_grace=0.5) as engine:
            engine.push("d", job_data(tmp_path, token, "d", script, pty=pty))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, until, lambda: (ready / "daemon").exists(), "ready")
            daemon = int((ready / "daemon").read_text())
            if ending == "kill":
                await engine.kill("d")
            await engine.wait_finished("d")
            return daemon

    return run(main(), timeout=60)


@with_pty
def test_a_double_forked_daemon_is_gone_after_a_kill(tmp_path, token, pty):
    daemon = run_daemon_job(tmp_path, token, "kill", pty)
    assert wait_gone(daemon), "the daemon survived"
    left = wait_none_marked(token, 2)
    assert not left, f"left running: {describe(left)}"


@with_pty
def test_a_daemon_a_job_detaches_on_purpose_outlives_the_jobs_own_exit(tmp_path, token, pty):
    # What the job left in its own process group dies with it (test_core_proctree); a process
    # that detached itself (setsid) is taken to be meant to stay, as with every peer tool. The
    # token fixture kills it afterwards.
    daemon = run_daemon_job(tmp_path, token, "exit", pty)
    time.sleep(0.5)
    assert not wait_gone(daemon, timeout=0.1), "a detached daemon was killed at the job's exit"
