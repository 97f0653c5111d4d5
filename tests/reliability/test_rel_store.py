"""The state file: full (D5), run numbers across restarts (D15), and start-up failures (D11).

A full state disk is a real one: a small tmpfs mounted as the state dir and filled with a ballast
file (skipped where mount is not allowed), or, with no privilege, the server's own file-size limit
(RLIMIT_FSIZE, lowered under the state file's size from outside, as prlimit does), with real
servers killed with SIGKILL and started again as a client's next command starts them. Start-up
failures run the real `pq-tui` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile

import pytest

from process_helpers import wait_gone
from rel_helpers import REPO, TOKEN_VAR, small_tmpfs
from server_helpers import until

pytestmark = [
    pytest.mark.usefixtures("no_leftover_processes"),
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets, mounts and signals"),
]

DEADLINE = 30.0
FILLER = "x" * 20_000  # a push this big needs new pages in the state file's log at once


# -- helpers ---------------------------------------------------------------------------------------


def fill(folder: str) -> str:
    """Fill the file system of ``folder`` with a ballast file; returns its path."""
    path = os.path.join(folder, "ballast")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError as exc:
                    assert exc.errno in (errno.ENOSPC, errno.EFBIG), exc
                    break
    finally:
        os.close(fd)
    return path


def pq(server, *args: str, env: dict = None, timeout: float = DEADLINE):
    return subprocess.run(
        [sys.executable, "-m", "pq_tui", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
        env=dict(os.environ, PQ_TUI_RUNTIME_DIR=server.runtime,
                 PQ_TUI_STATE_DIR=server.paths.state_dir, PYTHONPATH=REPO, **(env or {})))


class FullDisk:
    """The disk of a state dir, filled and freed on demand."""

    def __init__(self, kind: str, state_dir: str) -> None:
        self.kind = kind
        self.state_dir = state_dir
        self.undo = None

    def fill(self, server_pid: int) -> None:
        if self.kind == "tmpfs":
            ballast = fill(self.state_dir)
            self.undo = lambda: os.unlink(ballast)
            return
        # Writes past the files' present ends fail (EFBIG: Python ignores SIGXFSZ).
        import psutil

        proc = psutil.Process(server_pid)
        limit = resource.RLIMIT_FSIZE
        soft, hard = proc.rlimit(limit)
        names = [n for n in os.listdir(self.state_dir) if n.startswith("state.sqlite3")]
        proc.rlimit(limit, (max(os.path.getsize(os.path.join(self.state_dir, n))
                                for n in names), hard))
        self.undo = lambda: proc.is_running() and proc.rlimit(limit, (soft, hard))

    def free(self) -> None:
        self.undo()


KINDS = ["tmpfs", "file-size-limit"]


@contextlib.contextmanager
def state_on_a_small_disk(server, monkeypatch, kind: str):
    """A FullDisk for the server's state dir (a 2 MiB tmpfs, or its own folder with a file-size
    limit); the server is stopped before the tmpfs is unmounted."""
    from pq_tui.wire.paths import ServerPaths

    with contextlib.ExitStack() as stack:
        if kind == "tmpfs":
            mount = stack.enter_context(small_tmpfs("2m"))
            server.paths = ServerPaths(server.runtime, mount)
            monkeypatch.setenv("PQ_TUI_STATE_DIR", mount)
        try:
            yield FullDisk(kind, server.paths.state_dir)
        finally:
            if os.path.exists(server.paths.socket):
                with contextlib.suppress(Exception):
                    asyncio.run(asyncio.wait_for(server.stop(), DEADLINE))
            for pid in list(server.pids):
                wait_gone(pid)


async def store_of(client) -> dict:
    return (await client.request("snapshot"))["server"]["store"]


async def fill_until_unrecorded(client, disk: FullDisk) -> dict:
    """Fill the disk, then push jobs into a paused lane until the server cannot record them:
    the state file's log may have room left in pages it already has. Returns server.store."""
    snapshot = await client.request("snapshot")
    await client.request("pause", lane="filler", create=True)
    disk.fill(snapshot["server"]["pid"])
    for i in range(200):
        await client.request("push", job_id=f"filler-{i}", lane="filler",
                             data={"cmd": "true", "pad": FILLER})
        store = await store_of(client)
        if store["error"]:
            return store
    raise AssertionError("the state file took 200 big pushes on a full disk")


def job(server, token: str, name: str, extra: str = "") -> dict:
    record = server.tmp / "record"
    return {"cmd": f"echo {name} >> {record}; {extra}", "cwd": str(server.tmp),
            "env": {TOKEN_VAR: token}}


def ran(server) -> list:
    record = server.tmp / "record"
    return record.read_text().split() if record.exists() else []


async def kill_9(server, pid: int) -> None:
    from test_rel_crash_recovery import wait_socket_dead

    os.kill(pid, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, wait_gone, pid)
    await loop.run_in_executor(None, wait_socket_dead, server.paths.socket)


# -- D5: a full state disk -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_state_disk_is_shown_and_after_kill_9_no_job_runs_twice(server, token,
                                                                       monkeypatch, kind):
    from pq_tui.client.client import Client
    from pq_tui.client.remote import RemoteEngine

    async def main(disk):
        client = await Client.open(server.paths)
        pid = (await client.request("snapshot"))["server"]["pid"]
        server.pids.add(pid)
        await client.request("push", job_id="long", lane="work",
                             data=job(server, token, "long", server.blocker()))
        await client.request("push", job_id="next", lane="work", data=job(server, token, "next"))
        console = await RemoteEngine.connect(server.paths, start=False)
        try:
            await until(lambda: console.get("long") and console.get("long").pid, "long runs")
            store = await fill_until_unrecorded(client, disk)
            assert store["path"] == server.paths.state_file
            assert store["path"] in store["error"], store
            if kind == "tmpfs":
                assert "No space left on device" in store["error"], store
            assert store["unrecorded"] >= 1, store
            # The console hears of it (a StoreStatus event), and the status command shows it.
            await until(lambda: (console.server_info.get("store") or {}).get("error"),
                        "the console to hear that the record is incomplete")
            shown = pq(server, "status")
            assert shown.returncode == 0, shown.stderr
            assert "the record is incomplete" in shown.stdout and store["path"] in shown.stdout
            as_json = json.loads(pq(server, "status", "--json").stdout)
            assert as_json["server"]["store"]["error"] and as_json["server"]["store"]["unrecorded"] >= 1

            # "long" ends ok meanwhile; its end cannot be recorded, so "next" does not start.
            server.release()
            await until(lambda: console.get("long").status.value == "ok", "long to end")
            snapshot = await client.request("snapshot")
            jobs = {j["id"]: j for j in snapshot["jobs"]}
            assert jobs["next"]["status"] == "queued", jobs["next"]
            assert snapshot["server"]["store"]["error"], snapshot["server"]
        finally:
            console.detach()
            client.close()
        await kill_9(server, pid)

        disk.free()  # the operator makes room, and the next command starts the server
        client = await Client.open(server.paths)
        try:
            snapshot = await client.request("snapshot")
            server.pids.add(snapshot["server"]["pid"])
            assert snapshot["server"]["store"]["error"] is None
            jobs = {j["id"]: j for j in snapshot["jobs"]}
            # Its end was not recorded: interrupted, not queued again; its lane paused.
            assert jobs["long"]["status"] == "failed", jobs["long"]
            assert "interrupted" in jobs["long"]["data"]["error"]
            assert jobs["next"]["status"] == "queued", jobs["next"]
            assert {lane["name"]: lane["paused"] for lane in snapshot["lanes"]}["work"]
            await client.request("resume", lane="work")
            await asyncio.wait_for(client.request("wait", job_ids=["next", "long"]), DEADLINE)
            snapshot = await client.request("snapshot")
        finally:
            client.close()
        return {j["id"]: j for j in snapshot["jobs"]}

    with state_on_a_small_disk(server, monkeypatch, kind) as disk:
        jobs = asyncio.run(asyncio.wait_for(main(disk), 120))
        assert jobs["next"]["status"] == "ok" and jobs["next"]["run"] == 1
        assert jobs["long"]["status"] == "failed" and jobs["long"]["run"] == 1
        assert sorted(ran(server)) == ["long", "next"], ran(server)  # each ran once


@pytest.mark.parametrize("kind", KINDS)
def test_the_server_retries_once_space_is_back_and_held_starts_go_on(server, token, monkeypatch,
                                                                     kind):
    from pq_tui.core.events import StoreStatus
    from pq_tui.client.client import Client
    from pq_tui.client.remote import RemoteEngine

    async def main(disk):
        client = await Client.open(server.paths)
        server.pids.add((await client.request("snapshot"))["server"]["pid"])
        console = await RemoteEngine.connect(server.paths, start=False)
        heard = console.subscribe()
        try:
            await fill_until_unrecorded(client, disk)
            # A start that cannot be recorded first is held: the job stays queued.
            await client.request("push", job_id="held", lane="work",
                                 data=job(server, token, "held"))
            snapshot = await client.request("snapshot")
            jobs = {j["id"]: j for j in snapshot["jobs"]}
            assert jobs["held"]["status"] == "queued", jobs["held"]
            assert snapshot["server"]["store"]["error"]
            assert ran(server) == []

            disk.free()
            await until(lambda: (console.server_info.get("store") or {}).get("error") is None,
                        "the warning to clear after space is back", DEADLINE)
            await asyncio.wait_for(client.request("wait", job_ids=["held"]), DEADLINE)
            assert (await store_of(client))["error"] is None
            events = heard.take_nowait()
            said = [e for e in events if isinstance(e, StoreStatus)]
            assert said and said[0].error and said[-1] == StoreStatus(None, 0), said
        finally:
            heard.close()
            console.detach()
            client.close()
        shown = pq(server, "status")
        assert "incomplete" not in shown.stdout, shown.stdout
        await server.stop()
        # Nothing was lost: a restart finds every push and the held job's run.
        client = await Client.open(server.paths)
        try:
            snapshot = await client.request("snapshot")
            server.pids.add(snapshot["server"]["pid"])
        finally:
            client.close()
        return snapshot

    with state_on_a_small_disk(server, monkeypatch, kind) as disk:
        snapshot = asyncio.run(asyncio.wait_for(main(disk), 120))
    jobs = {j["id"]: j for j in snapshot["jobs"]}
    assert jobs["held"]["status"] == "ok", jobs["held"]
    fillers = [j for j in jobs if j.startswith("filler-")]
    assert fillers and all(jobs[j]["status"] == "queued" for j in fillers)
    assert ran(server) == ["held"]


# -- D15: run numbers across restarts --------------------------------------------------------------


def test_run_numbers_and_log_names_go_on_across_restarts(server, token):
    from pq_tui.client.client import Client
    from pq_tui.server.store import Store

    data = job(server, token, "a")

    async def start():
        client = await Client.open(server.paths)
        server.pids.add((await client.request("snapshot"))["server"]["pid"])
        return client

    async def run_once(client, op: str) -> dict:
        args = {"job_id": "a"} if op == "requeue" else {"job_id": "a", "data": data, "lane": "L"}
        reply = await client.request(op, **args)
        snapshot = await client.request("snapshot")
        rows = [j for j in snapshot["jobs"] if j["id"] == "a"]
        assert len(rows) == 1, rows  # one row per id: the latest run's
        await asyncio.wait_for(client.request("wait", job_ids=["a"]), DEADLINE)
        snapshot = await client.request("snapshot")
        row = [j for j in snapshot["jobs"] if j["id"] == "a"][0]
        return {"queued": rows[0], "ended": row, "reply": reply}

    async def main():
        seen = []
        for op in ("push", "requeue", "requeue", "push"):  # a restart before each but the first
            client = await start()
            try:
                seen.append(await run_once(client, op))
            finally:
                client.close()
            await server.stop()
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 120))
    for run, step in enumerate(seen, 1):
        assert step["queued"]["run"] == run, step  # the new run's row, whatever its state
        assert step["ended"]["run"] == run and step["ended"]["status"] == "ok", step
        assert os.path.basename(step["ended"]["log_path"]) == f"a.{run}.log", step
    with Store.open(server.paths.state_file) as store:
        history = store.history("a")
    assert [(s.run, os.path.basename(s.log_path)) for s in history] == [
        (run, f"a.{run}.log") for run in (1, 2, 3, 4)]
    assert ran(server) == ["a"] * 4


# -- D11: start-up failures ------------------------------------------------------------------------


def start_deadline() -> float:
    """A generous limit, and still half of what a client used to wait for a server that died."""
    from pq_tui.client.launcher import START_TIMEOUT

    return START_TIMEOUT / 2


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def write_jobs(server) -> str:
    path = server.tmp / "jobs.toml"
    path.write_text(f'[[job]]\nid = "one"\ncmd = "echo one >> {server.tmp / "record"}"\n')
    return str(path)


def test_a_damaged_state_file_is_set_aside_and_the_server_starts(server):
    os.makedirs(server.paths.logs_dir)
    with open(server.paths.state_file, "wb") as f:
        f.write(b"this is not a database\n" * 200)
    with open(os.path.join(server.paths.logs_dir, "one.1.log"), "w") as f:
        f.write("an old run's log\n")
    done = pq(server, "push", write_jobs(server), timeout=start_deadline())
    assert done.returncode == 0, done.stderr
    line = one_line(done.stderr)
    aside = [name for name in os.listdir(server.paths.state_dir) if ".corrupt-" in name]
    aside.sort(key=lambda name: not name.startswith("state"))
    assert len(aside) == 2 and aside[0].startswith("state.sqlite3.corrupt-"), aside
    assert aside[1] == "logs" + aside[0][len("state.sqlite3"):], aside
    for name in aside:
        assert os.path.join(server.paths.state_dir, name) in line and "damaged" in line, line
    with open(os.path.join(server.paths.state_dir, aside[0]), "rb") as f:
        assert f.read().startswith(b"this is not a database")  # kept whole
    with open(os.path.join(server.paths.state_dir, aside[1], "one.1.log")) as f:
        assert f.read() == "an old run's log\n"  # and its logs beside it
    with open(server.paths.server_log, encoding="utf-8") as f:
        assert aside[0] in f.read()
    # The board works, and status says what happened.
    waited = pq(server, "wait", "one")
    assert waited.returncode == 0, waited.stderr
    # The new run 1 has the log name of run 1 (the old logs are not in its way).
    log_path = json.loads(pq(server, "status", "--json").stdout)["jobs"][0]["log_path"]
    assert log_path == os.path.join(server.paths.logs_dir, "one.1.log"), log_path
    shown = pq(server, "status")
    assert "the state file was damaged: moved to" in shown.stdout and aside[0] in shown.stdout
    assert json.loads(pq(server, "status", "--json").stdout)["server"]["store"]["moved_aside"].endswith(
        aside[0])
    assert pq(server, "shutdown").returncode == 0


def test_a_server_that_cannot_start_says_why_at_once(server):
    os.makedirs(server.paths.state_dir)
    db = sqlite3.connect(server.paths.state_file)
    db.execute("PRAGMA user_version = 99")
    db.close()
    done = pq(server, "push", write_jobs(server), timeout=start_deadline())
    assert done.returncode == 1, done
    line = one_line(done.stderr)
    assert server.paths.state_file in line and "newer pq-tui" in line, line
    assert "server.log" not in line
    assert not os.path.exists(server.paths.pid_file)


def test_a_home_that_does_not_exist_is_a_clear_error_or_works_with_a_state_dir(server):
    home = os.path.join(tempfile.gettempdir(), f"pq-no-home-{os.getpid()}")
    assert not os.path.exists(home)
    env = dict(os.environ, HOME=home, PQ_TUI_RUNTIME_DIR=server.runtime, PYTHONPATH=REPO)
    env.pop("PQ_TUI_STATE_DIR", None)
    env.pop("XDG_STATE_HOME", None)
    done = subprocess.run([sys.executable, "-m", "pq_tui", "push", write_jobs(server)],
                          cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=start_deadline())
    assert done.returncode == 1, done
    line = one_line(done.stderr)
    assert home in line and "does not exist" in line and "PQ_TUI_STATE_DIR" in line, line
    assert not os.path.exists(home), "a home folder was made up"

    # With a state dir of its own, the server runs (in /, not in the missing home).
    done = pq(server, "push", write_jobs(server), env={"HOME": home}, timeout=start_deadline())
    assert done.returncode == 0, done.stderr
    assert pq(server, "wait", "one", env={"HOME": home}).returncode == 0
    assert ran(server) == ["one"]
    assert not os.path.exists(home)
    assert pq(server, "shutdown", env={"HOME": home}).returncode == 0

    # Embedded (no server), the session's logs go to a new private folder in the temp folder.
    done = subprocess.run([sys.executable, "-m", "pq_tui", "run", write_jobs(server)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    logs = done.stdout.strip().splitlines()[-1].partition("logs: ")[2]
    try:
        assert os.path.dirname(logs) == tempfile.gettempdir(), done.stdout
        assert os.stat(logs).st_mode & 0o077 == 0
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    assert ran(server) == ["one", "one"]
    assert not os.path.exists(home)


def test_the_attached_console_shows_that_the_record_is_incomplete(server, monkeypatch):
    from pq_tui.client.client import Client
    from pq_tui.client.remote import RemoteEngine
    from pq_tui.ui.app import PQApp
    from pq_tui.ui.session import AttachedSession

    def notes(app) -> str:
        return " ".join(str(n.message) for n in app._notifications)

    async def settle(pilot, predicate, what: str) -> None:
        await until(predicate, what)
        await pilot.pause(0.05)

    async def main(disk):
        engine = await RemoteEngine.connect(server.paths)
        server.pids.add(engine.server_info["pid"])
        client = await Client.open(server.paths, start=False)
        app = PQApp(AttachedSession(engine), start_dir=server.tmp)
        try:
            async with app.run_test(size=(140, 30)) as pilot:
                await fill_until_unrecorded(client, disk)
                await settle(pilot, lambda: "not saved" in str(app.main.status_bar.render()),
                             "the status line to say the state is not saved")
                await settle(pilot, lambda: "the record is incomplete" in notes(app),
                             "a notification naming the error")
                assert server.paths.state_file in notes(app)
                disk.free()
                await settle(pilot, lambda: "not saved" not in str(app.main.status_bar.render()),
                             "the warning to clear")
                await settle(pilot, lambda: "written again" in notes(app), "the all-clear")
        finally:
            client.close()
            engine.detach()

    with state_on_a_small_disk(server, monkeypatch, "file-size-limit") as disk:
        asyncio.run(asyncio.wait_for(main(disk), 120))
