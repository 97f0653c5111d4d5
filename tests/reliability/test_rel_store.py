"""The state file: full (D5), run numbers across restarts (D15), and start-up failures (D11).

A full state disk is a real one: a small tmpfs mounted as the state dir and filled with a ballast
file (skipped where mount is not allowed), with real servers killed with SIGKILL and started
again as a client's next command starts them. Start-up failures run the real `pq-tui` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
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


@contextlib.contextmanager
def state_on_a_small_disk(server, monkeypatch):
    """The server's state dir on a 2 MiB tmpfs; the server is stopped before it is unmounted."""
    from pq_tui.server.paths import ServerPaths

    with small_tmpfs("2m") as mount:
        server.paths = ServerPaths(server.runtime, mount)
        monkeypatch.setenv("PQ_TUI_STATE_DIR", mount)
        try:
            yield mount
        finally:
            if os.path.exists(server.paths.socket):
                with contextlib.suppress(Exception):
                    asyncio.run(asyncio.wait_for(server.stop(), DEADLINE))
            for pid in list(server.pids):
                wait_gone(pid)


async def store_of(client) -> dict:
    return (await client.request("snapshot"))["server"]["store"]


async def fill_until_unrecorded(client, mount: str) -> tuple:
    """Fill the disk, then push jobs into a paused lane until the server cannot record them:
    the state file's log may have room left in pages it already has. (ballast, store info)"""
    await client.request("pause", lane="filler")
    ballast = fill(mount)
    for i in range(200):
        await client.request("push", job_id=f"filler-{i}", lane="filler",
                             data={"cmd": "true", "pad": FILLER})
        store = await store_of(client)
        if store["error"]:
            return ballast, store
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


def test_a_full_state_disk_is_shown_and_after_kill_9_no_job_runs_twice(server, token,
                                                                       monkeypatch):
    from pq_tui.server.client import Client
    from pq_tui.server.remote import RemoteEngine

    async def main(mount):
        client = await Client.open(server.paths)
        pid = (await client.request("snapshot"))["server"]["pid"]
        server.pids.add(pid)
        await client.request("push", job_id="long", lane="work",
                             data=job(server, token, "long", server.blocker()))
        await client.request("push", job_id="next", lane="work", data=job(server, token, "next"))
        console = await RemoteEngine.connect(server.paths, start=False)
        try:
            await until(lambda: console.get("long") and console.get("long").pid, "long runs")
            ballast, store = await fill_until_unrecorded(client, mount)
            assert store["path"] == os.path.join(mount, "state.sqlite3")
            assert store["path"] in store["error"] and "full" in store["error"], store
            assert store["unrecorded"] >= 1, store
            # The console hears of it (a StoreStatus event), and the status command shows it.
            await until(lambda: (console.server_info.get("store") or {}).get("error"),
                        "the console to hear that the record is incomplete")
            shown = pq(server, "status")
            assert shown.returncode == 0, shown.stderr
            assert "the record is incomplete" in shown.stdout and store["path"] in shown.stdout
            as_json = json.loads(pq(server, "status", "--json").stdout)
            assert as_json["store"]["error"] and as_json["store"]["unrecorded"] >= 1

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

        os.unlink(ballast)  # the operator makes room, and the next command starts the server
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

    with state_on_a_small_disk(server, monkeypatch) as mount:
        jobs = asyncio.run(asyncio.wait_for(main(mount), 120))
        assert jobs["next"]["status"] == "ok" and jobs["next"]["run"] == 1
        assert jobs["long"]["status"] == "failed" and jobs["long"]["run"] == 1
        assert sorted(ran(server)) == ["long", "next"], ran(server)  # each ran once


def test_the_server_retries_once_space_is_back_and_held_starts_go_on(server, token, monkeypatch):
    from pq_tui.core.events import StoreStatus
    from pq_tui.server.client import Client
    from pq_tui.server.remote import RemoteEngine

    async def main(mount):
        client = await Client.open(server.paths)
        server.pids.add((await client.request("snapshot"))["server"]["pid"])
        console = await RemoteEngine.connect(server.paths, start=False)
        heard = console.subscribe()
        try:
            ballast, _store = await fill_until_unrecorded(client, mount)
            # A start that cannot be recorded first is held: the job stays queued.
            await client.request("push", job_id="held", lane="work",
                                 data=job(server, token, "held"))
            snapshot = await client.request("snapshot")
            jobs = {j["id"]: j for j in snapshot["jobs"]}
            assert jobs["held"]["status"] == "queued", jobs["held"]
            assert snapshot["server"]["store"]["error"]
            assert ran(server) == []

            os.unlink(ballast)
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

    with state_on_a_small_disk(server, monkeypatch) as mount:
        snapshot = asyncio.run(asyncio.wait_for(main(mount), 120))
    jobs = {j["id"]: j for j in snapshot["jobs"]}
    assert jobs["held"]["status"] == "ok", jobs["held"]
    fillers = [j for j in jobs if j.startswith("filler-")]
    assert fillers and all(jobs[j]["status"] == "queued" for j in fillers)
    assert ran(server) == ["held"]
