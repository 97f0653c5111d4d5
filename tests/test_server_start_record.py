"""A server whose state file takes the events that let a job start but not the one that says it
has left its queue (``JobDequeued``): the job must get no process until that is written. The
failure is injected in the store's write (a real full disk cannot be made to fail exactly there;
tests/reliability/test_rel_store.py fills a real one)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from pq_tui.core.events import JobDequeued
from pq_tui.core.job import Status
from pq_tui.server.server import Server
from pq_tui.server.store import Store
from pq_tui.wire.paths import ServerPaths, prepare

from engine_helpers import run

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

LIMIT = 30.0  # seconds for anything to happen, on a loaded machine


async def until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT
    while not condition():
        assert loop.time() < deadline, f"waited too long for {what}"
        await asyncio.sleep(0.02)


def test_a_start_whose_record_fails_waits_without_a_process(tmp_path):
    marker = tmp_path / "ran"

    async def main():
        paths = ServerPaths(str(tmp_path / "run"), str(tmp_path / "state"))
        prepare(paths)
        server = Server(paths, kill_grace=0.5)
        server.open_store()
        store = server.store
        write = store.apply_many
        failing = {"on": True}

        def apply_many(events):
            events = list(events)
            if failing["on"] and any(isinstance(event, JobDequeued) for event in events):
                raise sqlite3.OperationalError("database or disk is full")
            write(events)

        store.apply_many = apply_many
        try:
            server.engine.push("j", {"cmd": ["touch", str(marker)]}, "l")
            await until(lambda: server.store_error is not None, "the failed write")
            await asyncio.sleep(0.3)  # time enough to spawn, were it let through
            job = server.engine.get("j")
            assert (job.status, job.pid) == (Status.RUNNING, None)
            assert not marker.exists()
            with Store.open(paths.state_file) as reader:  # what a kill -9 now would find
                assert [(j.id, j.status) for j in reader.load().jobs] == [("j", "queued")]

            failing["on"] = False  # the server retries, and the start goes on
            await asyncio.wait_for(server.engine.wait_finished("j"), LIMIT)
            assert marker.exists() and server.store_error is None
            with Store.open(paths.state_file) as reader:
                assert [(j.id, j.status) for j in reader.load().jobs] == [("j", "ok")]
        finally:
            await server.stop()
            store.close()

    run(main())
